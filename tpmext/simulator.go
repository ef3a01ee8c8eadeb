//go:build cgo

package tpmext

import (
	"crypto/ecdsa"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"

	"github.com/google/go-tpm-tools/simulator"
	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// SimulatorAvailable reports whether this build has the simulator back end
// (it needs cgo).
const SimulatorAvailable = true

// Simulator is the Microsoft reference TPM 2.0 from go-tpm-tools/simulator,
// driven with go-tpm's tpm2 commands. Access is serialised with a mutex (the
// simulator is not goroutine-safe). Only one simulator exists per process:
// NewSimulator blocks until any other one is closed.
type Simulator struct {
	banks []Algorithm

	mu     sync.Mutex
	sim    *simulator.Simulator // protected by mu
	tpm    transport.TPM        // protected by mu
	ak     *simAK               // attestation key; protected by mu; flushed by Reset
	closed bool                 // protected by mu
}

type simAK struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    *ecdsa.PublicKey
}

var _ TPM = (*Simulator)(nil)

// NewSimulator manufactures a fresh simulated TPM and allocates the given
// banks with TPM2_PCR_Allocate (followed by a reset, which is when an
// allocation takes effect). Without banks it keeps the simulator's default
// four (SHA1, SHA256, SHA384, SHA512). Banks reports them in the TPM's
// order, which may differ from the order given.
func NewSimulator(banks ...Algorithm) (*Simulator, error) {
	if len(banks) > 0 {
		if err := checkBanks(banks); err != nil {
			return nil, err
		}
	}
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("tpmext: starting the TPM simulator: %w", err)
	}
	s := &Simulator{sim: sim, tpm: transport.FromReadWriter(sim)}
	fail := func(err error) (*Simulator, error) {
		sim.Close()
		return nil, err
	}
	have, err := s.allocatedBanks()
	if err != nil {
		return fail(err)
	}
	if len(banks) > 0 && !sameAlgSet(have, banks) {
		if err := s.allocate(banks); err != nil {
			return fail(err)
		}
		if have, err = s.allocatedBanks(); err != nil {
			return fail(err)
		}
		if !sameAlgSet(have, banks) {
			return fail(fmt.Errorf("tpmext: simulator allocated banks %v, asked for %v", have, banks))
		}
	}
	s.banks = have
	return s, nil
}

func sameAlgSet(a, b []Algorithm) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsAlg(b, x) {
			return false
		}
	}
	return true
}

// allocatedBanks reads TPM_CAP_PCRS and returns the banks with at least one
// PCR allocated, in the TPM's order.
func (s *Simulator) allocatedBanks() ([]Algorithm, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmext: TPM2_GetCapability(TPM_CAP_PCRS): %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("tpmext: %w", err)
	}
	var banks []Algorithm
	for _, b := range sel.PCRSelections {
		for _, v := range b.PCRSelect {
			if v != 0 {
				banks = append(banks, Algorithm(b.Hash))
				break
			}
		}
	}
	return banks, nil
}

// allocate runs TPM2_PCR_Allocate with platform authorisation (empty in the
// simulator): every PCR in the wanted banks, none in the others the TPM
// implements. It takes effect at the reset that follows.
func (s *Simulator) allocate(banks []Algorithm) error {
	var sels []legacy.PCRSelection
	for _, alg := range []Algorithm{SHA1, SHA256, SHA384, SHA512, SM3_256, SHA3_256, SHA3_384, SHA3_512} {
		if containsAlg(banks, alg) {
			all := make([]int, NumPCRs)
			for i := range all {
				all[i] = i
			}
			sels = append(sels, legacy.PCRSelection{Hash: legacy.Algorithm(alg), PCRs: all})
		} else if alg <= SHA512 {
			// The simulator implements these four; deselect them explicitly.
			sels = append(sels, legacy.PCRSelection{Hash: legacy.Algorithm(alg), PCRs: []int{}})
		}
	}
	auth := legacy.AuthCommand{Session: legacy.HandlePasswordSession, Attributes: legacy.AttrContinueSession}
	if err := legacy.PCRAllocate(s.sim, legacy.HandlePlatform, auth, sels); err != nil {
		return fmt.Errorf("tpmext: TPM2_PCR_Allocate(%v): %w", banks, err)
	}
	if err := s.sim.Reset(); err != nil {
		return fmt.Errorf("tpmext: reset after TPM2_PCR_Allocate: %w", err)
	}
	return nil
}

// Banks returns the allocated banks in the TPM's order.
func (s *Simulator) Banks() []Algorithm { return append([]Algorithm(nil), s.banks...) }

// Extend sends one TPM2_PCR_Extend carrying every digest.
func (s *Simulator) Extend(pcr int, digests []Digest) error {
	if err := checkExtend(s.banks, pcr, digests); err != nil {
		return err
	}
	vals := make([]tpm2.TPMTHA, len(digests))
	for i, d := range digests {
		vals[i] = tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(d.Alg), Digest: d.Value}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: vals},
	}.Execute(s.tpm)
	if err != nil {
		return fmt.Errorf("tpmext: TPM2_PCR_Extend(PCR %d): %w", pcr, err)
	}
	return nil
}

// ReadPCR reads one PCR of one bank with TPM2_PCR_Read.
func (s *Simulator) ReadPCR(pcr int, alg Algorithm) ([]byte, error) {
	if err := checkPCR(pcr); err != nil {
		return nil, err
	}
	if !containsAlg(s.banks, alg) {
		return nil, fmt.Errorf("tpmext: bank %v is not allocated", alg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	v, err := s.readLocked(alg, []int{pcr})
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// readLocked reads the given PCRs (at most 8, the simulator's limit per
// response) of one bank.
//
// Preconditions: s.mu is held.
func (s *Simulator) readLocked(alg Algorithm, pcrs []int) ([][]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpmSelection(Selection{Alg: alg, PCRs: pcrs})}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmext: TPM2_PCR_Read(%v %v): %w", alg, pcrs, err)
	}
	if len(rsp.PCRValues.Digests) != len(pcrs) {
		return nil, fmt.Errorf("tpmext: TPM2_PCR_Read(%v %v) returned %d values", alg, pcrs, len(rsp.PCRValues.Digests))
	}
	out := make([][]byte, len(pcrs))
	for i, d := range rsp.PCRValues.Digests {
		out[i] = append([]byte(nil), d.Buffer...)
	}
	return out, nil
}

// ReadPCRs reads every PCR of every bank.
func (s *Simulator) ReadPCRs() (PCRValues, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make(PCRValues, len(s.banks))
	for _, alg := range s.banks {
		vals := make([][]byte, 0, NumPCRs)
		for first := 0; first < NumPCRs; first += 8 {
			v, err := s.readLocked(alg, []int{first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7})
			if err != nil {
				return nil, err
			}
			vals = append(vals, v...)
		}
		out[alg] = vals
	}
	return out, nil
}

// Reset reboots the simulated host: PCRs return to zero, the transient
// attestation key is gone (a new one is created at the next quote), the
// allocation and seeds survive.
func (s *Simulator) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.ak = nil
	if err := s.sim.Reset(); err != nil {
		return fmt.Errorf("tpmext: simulator reset: %w", err)
	}
	return nil
}

// akTemplate is a restricted ECDSA P-256 signing key with SHA-256, the usual
// attestation key.
var akTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

// akLocked creates the attestation key in the owner hierarchy if needed.
//
// Preconditions: s.mu is held.
func (s *Simulator) akLocked() (*simAK, error) {
	if s.ak != nil {
		return s.ak, nil
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmext: creating the attestation key: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpmext: attestation key: %w", err)
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("tpmext: attestation key: %w", err)
	}
	ecKey, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("tpmext: attestation key is %T, want ECDSA", key)
	}
	s.ak = &simAK{handle: rsp.ObjectHandle, name: rsp.Name, pub: ecKey}
	return s.ak, nil
}

// Quote runs TPM2_Quote with the simulator's attestation key.
func (s *Simulator) Quote(nonce []byte, sel Selection) (*Quote, error) {
	if err := checkSelection(s.banks, sel); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	ak, err := s.akLocked()
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      tpmSelection(normalizeSelection(sel)),
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmext: TPM2_Quote: %w", err)
	}
	ecc, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpmext: quote signature: %w", err)
	}
	sig, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(ecc.SignatureR.Buffer),
		new(big.Int).SetBytes(ecc.SignatureS.Buffer),
	})
	if err != nil {
		return nil, err
	}
	return &Quote{Attest: rsp.Quoted.Bytes(), Signature: sig, Key: ak.pub}, nil
}

// Close shuts the simulator down and lets the next NewSimulator proceed.
func (s *Simulator) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	return s.sim.Close()
}
