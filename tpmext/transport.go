package tpmext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Transport is a TPM 2.0 reached through a go-tpm transport.TPM: the one
// back end behind every real or simulated TPM here (the go-tpm-tools
// simulator, swtpm over TCP, a Linux TPM device, or any transport given to
// NewTransport). Each method sends TPM 2.0 commands built with
// github.com/google/go-tpm/tpm2; access is serialised with a mutex, so a
// transport that is not goroutine-safe can be shared.
//
// Nothing is kept loaded in the TPM between calls: Quote creates the
// attestation key (a primary key, so the same key every time for the same
// owner seed), quotes and flushes it. Other clients of the same TPM, such
// as tpm2-tools on swtpm, can therefore use it in between.
//
// The kernel's TPM driver is the counterpart of Extend, send and
// pcrAllocation, which name their C functions; the rest (quotes, resets,
// the openers) has no kernel counterpart: it exists so that the simulated
// kernel and real TPM clients can share one TPM.
type Transport struct {
	banks []Algorithm
	what  string // "swtpm 127.0.0.1:2321", for errors

	mu     sync.Mutex
	tpm    transport.TPM          // protected by mu
	plat   platform               // protected by mu
	fault  func(tpm2.TPMCC) error // protected by mu
	closed bool                   // protected by mu
}

var _ TPM = (*Transport)(nil)

// platform is what an opener adds to a transport beyond TPM commands.
type platform struct {
	// reboot is a host reset: afterwards the TPM has gone through _TPM_Init
	// and TPM2_Startup(CLEAR), PCRs hold their initial values. nil when the
	// platform does not allow it (a real TPM).
	reboot func() error
	// close releases the transport.
	close func() error
}

// ErrNoReset is returned by Reset on a TPM whose platform cannot be reset
// from here (a hardware TPM), and wrapped by openers that would need a
// reset to allocate banks.
var ErrNoReset = errors.New("tpmext: this TPM's platform cannot be reset from here")

// NewTransport uses a TPM reachable through any go-tpm transport: banks are
// read with TPM2_GetCapability(TPM_CAP_PCRS); if banks are given and the TPM
// has a different allocation, NewTransport fails (allocating needs a
// platform reset, which only the openers that can do one perform). Reset
// returns ErrNoReset. Close closes t if it is a transport.TPMCloser.
func NewTransport(t transport.TPM, what string, banks ...Algorithm) (*Transport, error) {
	p := platform{close: func() error { return nil }}
	if c, ok := t.(transport.TPMCloser); ok {
		p.close = c.Close
	}
	return openTransport(t, p, what, banks)
}

// openTransport reads the TPM's banks and, when banks are given and differ,
// allocates them with TPM2_PCR_Allocate and reboots so that the allocation
// takes effect; it refuses clearly when the TPM cannot have them. On error
// the platform is closed.
func openTransport(t transport.TPM, p platform, what string, banks []Algorithm) (*Transport, error) {
	fail := func(err error) (*Transport, error) {
		p.close()
		return nil, err
	}
	if len(banks) > 0 {
		if err := checkBanks(banks); err != nil {
			return fail(err)
		}
	}
	tr := &Transport{tpm: t, plat: p, what: what}
	have, implemented, err := tr.pcrAllocation()
	if err != nil {
		return fail(err)
	}
	if len(banks) > 0 && !sameAlgSet(have, banks) {
		var missing []Algorithm
		for _, b := range banks {
			if !containsAlg(implemented, b) {
				missing = append(missing, b)
			}
		}
		switch {
		case len(missing) > 0:
			return fail(fmt.Errorf("tpmext: %s has no PCR bank %v (it implements %v)", what, missing, implemented))
		case p.reboot == nil:
			return fail(fmt.Errorf("tpmext: %s has PCR banks %v, not %v, and allocating them needs a platform reset: %w", what, have, banks, ErrNoReset))
		}
		if err := tr.allocate(implemented, banks); err != nil {
			return fail(err)
		}
		if have, _, err = tr.pcrAllocation(); err != nil {
			return fail(err)
		}
		if !sameAlgSet(have, banks) {
			return fail(fmt.Errorf("tpmext: %s allocated PCR banks %v, asked for %v", what, have, banks))
		}
	}
	tr.banks = have
	return tr, nil
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

// String names the TPM ("swtpm 127.0.0.1:2321").
func (t *Transport) String() string { return t.what }

// SetFault makes every later command whose code fault rejects fail without
// reaching the TPM: if fault returns a tpm2.TPMRC, the command gets that
// response code as a TPM in failure mode would answer; any other error is
// returned as a transport failure (a TPM that stopped answering). nil
// removes the hook. No kernel counterpart; exists so that tests can make a
// real or simulated TPM fail on demand.
func (t *Transport) SetFault(fault func(cc tpm2.TPMCC) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fault = fault
}

// send runs one command for the methods of this file: it applies
// the fault hook, forwards to the underlying transport and sends the
// command again while the TPM answers TPM_RC_RETRY or TPM_RC_TESTING,
// waiting 20 ms, then twice as long each time, up to 2 s.
//
// Mirrors drivers/char/tpm/tpm-interface.c:tpm_transmit() (the retry loop;
// TPM2_DURATION_SHORT, TPM2_DURATION_LONG).
//
// Preconditions: t.mu is held, or t is not shared yet.
func (t *Transport) send(cmd []byte) ([]byte, error) {
	if t.fault != nil && len(cmd) >= tpmResponseFixed {
		if err := t.fault(tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))); err != nil {
			var rc tpm2.TPMRC
			if errors.As(err, &rc) {
				return responseWithRC(rc), nil
			}
			return nil, err
		}
	}
	for delay := durationShort; ; delay *= 2 {
		rsp, err := t.tpm.Send(cmd)
		if err != nil || len(rsp) < tpmResponseFixed {
			return rsp, err
		}
		rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10]))
		if rc != tpm2.TPMRCRetry && rc != tpm2.TPMRCTesting || delay > durationLong {
			return rsp, nil
		}
		time.Sleep(delay)
	}
}

// sendFunc makes a function a transport.TPM.
type sendFunc func([]byte) ([]byte, error)

func (f sendFunc) Send(cmd []byte) ([]byte, error) { return f(cmd) }

// cmds is the transport.TPM the go-tpm commands of this file run on.
func (t *Transport) cmds() transport.TPM { return sendFunc(t.send) }

// The kernel's retry delays for TPM_RC_RETRY (include/linux/tpm.h).
const (
	durationShort = 20 * time.Millisecond
	durationLong  = 2000 * time.Millisecond
)

// responseWithRC is a TPM response without parameters carrying rc.
func responseWithRC(rc tpm2.TPMRC) []byte {
	rsp := make([]byte, tpmResponseFixed)
	binary.BigEndian.PutUint16(rsp, uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(rsp[2:], tpmResponseFixed)
	binary.BigEndian.PutUint32(rsp[6:], uint32(rc))
	return rsp
}

// legacyRW lets go-tpm's legacy commands (TPM2_PCR_Allocate is not in the
// new API) run over a Transport: Write sends, Read returns the response.
// (go-tpm's transport.ToReadWriter answers the last Read with io.EOF,
// which the legacy code takes for a failure.)
type legacyRW struct {
	t   *Transport
	rsp []byte
}

func (rw *legacyRW) Write(b []byte) (int, error) {
	var err error
	rw.rsp, err = rw.t.send(b)
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func (rw *legacyRW) Read(b []byte) (int, error) {
	if len(rw.rsp) == 0 {
		return 0, io.EOF
	}
	n := copy(b, rw.rsp)
	rw.rsp = rw.rsp[n:]
	return n, nil
}

// pcrAllocation reads TPM_CAP_PCRS: the banks with at least one PCR
// allocated, and every bank the TPM implements, in the TPM's order.
//
// Mirrors drivers/char/tpm/tpm2-cmd.c:tpm2_get_pcr_allocation().
func (t *Transport) pcrAllocation() (have, implemented []Algorithm, err error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t.cmds())
	if err != nil {
		return nil, nil, fmt.Errorf("tpmext: %s: TPM2_GetCapability(TPM_CAP_PCRS): %w", t.what, err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, nil, fmt.Errorf("tpmext: %s: %w", t.what, err)
	}
	for _, b := range sel.PCRSelections {
		a := Algorithm(b.Hash)
		if !a.Known() {
			continue
		}
		implemented = append(implemented, a)
		if slices.ContainsFunc(b.PCRSelect, func(v byte) bool { return v != 0 }) {
			have = append(have, a)
		}
	}
	return have, implemented, nil
}

// allocate runs TPM2_PCR_Allocate with platform authorisation (empty, as in
// the simulator and a fresh swtpm): every PCR in the wanted banks, none in
// the other implemented ones; then reboots, which is when an allocation
// takes effect.
func (t *Transport) allocate(implemented, banks []Algorithm) error {
	all := make([]int, NumPCRs)
	for i := range all {
		all[i] = i
	}
	var sels []legacy.PCRSelection
	for _, alg := range implemented {
		s := legacy.PCRSelection{Hash: legacy.Algorithm(alg), PCRs: []int{}}
		if containsAlg(banks, alg) {
			s.PCRs = all
		}
		sels = append(sels, s)
	}
	auth := legacy.AuthCommand{Session: legacy.HandlePasswordSession, Attributes: legacy.AttrContinueSession}
	if err := legacy.PCRAllocate(&legacyRW{t: t}, legacy.HandlePlatform, auth, sels); err != nil {
		return fmt.Errorf("tpmext: %s: TPM2_PCR_Allocate(%v): %w", t.what, banks, err)
	}
	if err := t.plat.reboot(); err != nil {
		return fmt.Errorf("tpmext: %s: reset after TPM2_PCR_Allocate: %w", t.what, err)
	}
	return nil
}

// Banks returns the allocated banks in the TPM's order.
func (t *Transport) Banks() []Algorithm { return append([]Algorithm(nil), t.banks...) }

// Extend sends one TPM2_PCR_Extend carrying every digest.
//
// Mirrors drivers/char/tpm/tpm2-cmd.c:tpm2_pcr_extend(): one command, a
// TPML_DIGEST_VALUES with a TPMT_HA per bank, an empty password session.
func (t *Transport) Extend(pcr int, digests []Digest) error {
	if err := checkExtend(t.banks, pcr, digests); err != nil {
		return err
	}
	vals := make([]tpm2.TPMTHA, len(digests))
	for i, d := range digests {
		vals[i] = tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(d.Alg), Digest: d.Value}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: vals},
	}.Execute(t.cmds())
	if err != nil {
		return fmt.Errorf("tpmext: %s: TPM2_PCR_Extend(PCR %d): %w", t.what, pcr, err)
	}
	return nil
}

// ReadPCR reads one PCR of one bank with TPM2_PCR_Read.
func (t *Transport) ReadPCR(pcr int, alg Algorithm) ([]byte, error) {
	if err := checkPCR(pcr); err != nil {
		return nil, err
	}
	if !containsAlg(t.banks, alg) {
		return nil, fmt.Errorf("tpmext: bank %v is not allocated", alg)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	v, err := t.readLocked(alg, []int{pcr})
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// readLocked reads the given PCRs (at most 8, the reference TPM's limit per
// response) of one bank.
//
// Preconditions: t.mu is held.
func (t *Transport) readLocked(alg Algorithm, pcrs []int) ([][]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpmSelection(Selection{Alg: alg, PCRs: pcrs})}.Execute(t.cmds())
	if err != nil {
		return nil, fmt.Errorf("tpmext: %s: TPM2_PCR_Read(%v %v): %w", t.what, alg, pcrs, err)
	}
	if len(rsp.PCRValues.Digests) != len(pcrs) {
		return nil, fmt.Errorf("tpmext: %s: TPM2_PCR_Read(%v %v) returned %d values", t.what, alg, pcrs, len(rsp.PCRValues.Digests))
	}
	out := make([][]byte, len(pcrs))
	for i, d := range rsp.PCRValues.Digests {
		out[i] = append([]byte(nil), d.Buffer...)
	}
	return out, nil
}

// ReadPCRs reads every PCR of every bank.
func (t *Transport) ReadPCRs() (PCRValues, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	out := make(PCRValues, len(t.banks))
	for _, alg := range t.banks {
		vals := make([][]byte, 0, NumPCRs)
		for first := 0; first < NumPCRs; first += 8 {
			v, err := t.readLocked(alg, []int{first, first + 1, first + 2, first + 3, first + 4, first + 5, first + 6, first + 7})
			if err != nil {
				return nil, err
			}
			vals = append(vals, v...)
		}
		out[alg] = vals
	}
	return out, nil
}

// Reset reboots the host: PCRs return to their initial values; seeds,
// allocation and NV survive. It returns ErrNoReset on a TPM whose platform
// cannot be reset from here.
func (t *Transport) Reset() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.plat.reboot == nil {
		return fmt.Errorf("tpmext: %s: %w", t.what, ErrNoReset)
	}
	if err := t.plat.reboot(); err != nil {
		return fmt.Errorf("tpmext: %s: reset: %w", t.what, err)
	}
	return nil
}

// akTemplate is a restricted ECDSA P-256 signing key with SHA-256, the usual
// attestation key (tpm2_createak -G ecc -g sha256 -s ecdsa makes the same
// kind, under the EK).
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

// akLocked creates the attestation key as a primary key of the owner
// hierarchy and returns its handle, name and public area; the caller
// flushes the handle.
//
// Preconditions: t.mu is held.
func (t *Transport) akLocked() (*tpm2.CreatePrimaryResponse, *AttestationKey, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(t.cmds())
	if err != nil {
		return nil, nil, fmt.Errorf("tpmext: %s: creating the attestation key: %w", t.what, err)
	}
	ak, err := ParseAttestationKey(tpm2.Marshal(rsp.OutPublic))
	if err != nil {
		t.flushLocked(rsp.ObjectHandle)
		return nil, nil, fmt.Errorf("tpmext: %s: %w", t.what, err)
	}
	return rsp, ak, nil
}

// flushLocked unloads a transient object; a failure leaves it for the
// TPM's next reset.
//
// Preconditions: t.mu is held.
func (t *Transport) flushLocked(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.cmds())
}

// AttestationKey returns the public part of the key Quote signs with.
func (t *Transport) AttestationKey() (*AttestationKey, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	rsp, ak, err := t.akLocked()
	if err != nil {
		return nil, err
	}
	t.flushLocked(rsp.ObjectHandle)
	return ak, nil
}

// Quote runs TPM2_Quote with the attestation key.
func (t *Transport) Quote(nonce []byte, sel Selection) (*Quote, error) {
	if err := checkSelection(t.banks, sel); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	key, ak, err := t.akLocked()
	if err != nil {
		return nil, err
	}
	defer t.flushLocked(key.ObjectHandle)
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: key.ObjectHandle, Name: key.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      tpmSelection(normalizeSelection(sel)),
	}.Execute(t.cmds())
	if err != nil {
		return nil, fmt.Errorf("tpmext: %s: TPM2_Quote: %w", t.what, err)
	}
	return &Quote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature), Key: ak.Key, Public: ak.Public}, nil
}

// Close releases the transport. Later calls fail with ErrClosed.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.closed = true
	return t.plat.close()
}
