package tpmext

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
)

// ErrClosed is returned by every method of a TPM after Close.
var ErrClosed = errors.New("tpmext: TPM is closed")

// Software is a pure-Go TPM: PCR banks of any known algorithms, extend,
// read, reset, and quotes signed by an ECDSA P-256 key held in memory. It
// needs no cgo, is safe for concurrent use, and is the oracle the simulator
// back end is compared against.
type Software struct {
	banks []Algorithm

	mu sync.Mutex
	// pcrs[bank index][pcr]; protected by mu.
	pcrs       [][NumPCRs][]byte
	key        *ecdsa.PrivateKey // created at the first quote; protected by mu
	resetCount uint32            // protected by mu
	closed     bool              // protected by mu
}

var _ TPM = (*Software)(nil)

// NewSoftware returns a software TPM with the given banks, in that order,
// every PCR zero. Without banks it has the simulator's default four.
func NewSoftware(banks ...Algorithm) (*Software, error) {
	if len(banks) == 0 {
		banks = DefaultBanks()
	}
	if err := checkBanks(banks); err != nil {
		return nil, err
	}
	s := &Software{banks: append([]Algorithm(nil), banks...)}
	s.pcrs = make([][NumPCRs][]byte, len(banks))
	s.zero()
	return s, nil
}

func (s *Software) zero() {
	for i, alg := range s.banks {
		for p := range s.pcrs[i] {
			s.pcrs[i][p] = InitialPCRValue(p, alg)
		}
	}
}

// Banks returns the bank set in order.
func (s *Software) Banks() []Algorithm { return append([]Algorithm(nil), s.banks...) }

func (s *Software) bankIndex(alg Algorithm) int {
	for i, b := range s.banks {
		if b == alg {
			return i
		}
	}
	return -1
}

// Extend extends pcr in every bank named in digests, as one TPM2_PCR_Extend.
func (s *Software) Extend(pcr int, digests []Digest) error {
	if err := checkExtend(s.banks, pcr, digests); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, d := range digests {
		i := s.bankIndex(d.Alg)
		s.pcrs[i][pcr] = ExtendValue(d.Alg, s.pcrs[i][pcr], d.Value)
	}
	return nil
}

// ReadPCR returns a copy of one PCR of one bank.
func (s *Software) ReadPCR(pcr int, alg Algorithm) ([]byte, error) {
	if err := checkPCR(pcr); err != nil {
		return nil, err
	}
	i := s.bankIndex(alg)
	if i < 0 {
		return nil, fmt.Errorf("tpmext: bank %v is not allocated", alg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return append([]byte(nil), s.pcrs[i][pcr]...), nil
}

// ReadPCRs returns a copy of every PCR of every bank.
func (s *Software) ReadPCRs() (PCRValues, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make(PCRValues, len(s.banks))
	for i, alg := range s.banks {
		vals := make([][]byte, NumPCRs)
		for p := range vals {
			vals[p] = append([]byte(nil), s.pcrs[i][p]...)
		}
		out[alg] = vals
	}
	return out, nil
}

// Reset returns every PCR to its initial value, as a reboot does. The attestation key survives.
func (s *Software) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.zero()
	s.resetCount++
	return nil
}

// Quote signs a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE over the selection
// with the software attestation key.
func (s *Software) Quote(nonce []byte, sel Selection) (*Quote, error) {
	if err := checkSelection(s.banks, sel); err != nil {
		return nil, err
	}
	if len(nonce) > sha256.Size+16 {
		// TPM2B_DATA holds at most sizeof(TPMT_HA) bytes.
		return nil, fmt.Errorf("tpmext: quote nonce of %d bytes is too long", len(nonce))
	}
	sel = normalizeSelection(sel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	ak, err := s.akLocked()
	if err != nil {
		return nil, err
	}
	vals := make(map[int][]byte, len(sel.PCRs))
	bank := s.bankIndex(sel.Alg)
	for _, p := range sel.PCRs {
		vals[p] = s.pcrs[bank][p]
	}
	digest, err := PCRDigest(sel, vals)
	if err != nil {
		return nil, err
	}
	att := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte("imasim software TPM")},
		ExtraData:       tpm2.TPM2BData{Buffer: append([]byte(nil), nonce...)},
		ClockInfo:       tpm2.TPMSClockInfo{ResetCount: s.resetCount, Safe: true},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpmSelection(sel),
			PCRDigest: tpm2.TPM2BDigest{Buffer: digest},
		}),
	}
	attest := tpm2.Marshal(att)
	h := sha256.Sum256(attest)
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, h[:])
	if err != nil {
		return nil, err
	}
	return &Quote{Attest: attest, Signature: ecdsaSignature(r, sv), Key: ak.Key, Public: ak.Public}, nil
}

// AttestationKey returns the public part of the key Quote signs with.
func (s *Software) AttestationKey() (*AttestationKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.akLocked()
}

// akLocked creates the attestation key at first use and returns its public
// part.
//
// Preconditions: s.mu is held.
func (s *Software) akLocked() (*AttestationKey, error) {
	if s.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		s.key = k
	}
	return &AttestationKey{Public: ecdsaPublic(&s.key.PublicKey), Key: &s.key.PublicKey}, nil
}

// Close releases the TPM.
func (s *Software) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	return nil
}
