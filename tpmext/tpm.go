package tpmext

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/go-tpm/tpm2"
)

// Errors of NewSimulator.
var (
	// ErrNoSimulator is returned in builds without cgo.
	ErrNoSimulator = errors.New("tpmext: the TPM simulator back end needs cgo (CGO_ENABLED=1, gcc and OpenSSL headers)")
	// ErrSimulatorBusy is returned while another simulator is open in the
	// process (the go-tpm-tools simulator is one per process); close it
	// first.
	ErrSimulatorBusy = errors.New("tpmext: a TPM simulator is already open in this process (there is one per process); close it first")
)

// Simulator is the Transport of the go-tpm-tools simulator (NewSimulator).
type Simulator = Transport

// NumPCRs is the number of PCRs in every bank (TPM 2.0 PC Client profile).
const NumPCRs = 24

// Digest is one bank's digest in an extend: a TPMT_HA.
type Digest struct {
	Alg   Algorithm
	Value []byte
}

// TPM is the part of a TPM 2.0 that IMA and its verifiers use: PCR banks,
// extend, read, quote and reset. Implementations are safe for concurrent use.
type TPM interface {
	// Banks returns the allocated PCR banks in the order the TPM reports
	// them (TPM2_GetCapability(TPM_CAP_PCRS)). The kernel builds its digest
	// slots in this order.
	Banks() []Algorithm
	// Extend runs one TPM2_PCR_Extend of pcr with every digest in
	// digests (a TPML_DIGEST_VALUES): PCR_b = H_b(PCR_b || d_b) for each
	// bank b named. Banks left out are not extended. A digest for a bank
	// that is not allocated, a digest of the wrong size, a bank named
	// twice or a PCR out of range is refused and nothing is extended.
	Extend(pcr int, digests []Digest) error
	// ReadPCR returns the value of one PCR of one bank.
	ReadPCR(pcr int, alg Algorithm) ([]byte, error)
	// ReadPCRs returns every PCR of every allocated bank.
	ReadPCRs() (PCRValues, error)
	// Quote returns a TPM2_Quote over the selection, with nonce as the
	// qualifying data, signed by the TPM's attestation key.
	Quote(nonce []byte, sel Selection) (*Quote, error)
	// Reset models a host reboot: TPM2_Shutdown(CLEAR), a platform reset
	// and TPM2_Startup(CLEAR). PCRs return to zero; keys survive.
	Reset() error
	// Close releases the TPM. Later calls fail.
	Close() error
}

// PCRValues holds PCR values by bank: PCRValues[alg][pcr].
type PCRValues map[Algorithm][][]byte

// Equal reports whether both hold the same banks with the same values.
func (v PCRValues) Equal(w PCRValues) bool {
	if len(v) != len(w) {
		return false
	}
	for alg, pcrs := range v {
		other, ok := w[alg]
		if !ok || len(other) != len(pcrs) {
			return false
		}
		for i := range pcrs {
			if !bytes.Equal(pcrs[i], other[i]) {
				return false
			}
		}
	}
	return true
}

// checkPCR refuses an index outside 0..NumPCRs-1.
func checkPCR(pcr int) error {
	if pcr < 0 || pcr >= NumPCRs {
		return fmt.Errorf("tpmext: PCR index %d out of range 0..%d", pcr, NumPCRs-1)
	}
	return nil
}

// The PC Client platform profile gives PCRs 17 to 22 (the dynamic root of
// trust) an initial value of all ones and lets only localities 2 to 4
// extend them. Callers here are at locality 0, like the kernel's IMA.
const (
	firstDRTMPCR = 17
	lastDRTMPCR  = 22
)

// InitialPCRValue returns the value a PCR holds after TPM2_Startup(CLEAR):
// zeros, or all ones for PCRs 17 to 22.
func InitialPCRValue(pcr int, alg Algorithm) []byte {
	v := make([]byte, alg.Size())
	if pcr >= firstDRTMPCR && pcr <= lastDRTMPCR {
		for i := range v {
			v[i] = 0xff
		}
	}
	return v
}

// checkExtend validates an extend request against the allocated banks, so
// that both back ends refuse the same requests before touching any PCR.
func checkExtend(banks []Algorithm, pcr int, digests []Digest) error {
	if err := checkPCR(pcr); err != nil {
		return err
	}
	if pcr >= firstDRTMPCR && pcr <= lastDRTMPCR {
		return fmt.Errorf("tpmext: PCR %d cannot be extended from locality 0 (TPM_RC_LOCALITY)", pcr)
	}
	seen := make(map[Algorithm]bool, len(digests))
	for _, d := range digests {
		if !containsAlg(banks, d.Alg) {
			return fmt.Errorf("tpmext: extend of PCR %d: bank %v is not allocated", pcr, d.Alg)
		}
		if seen[d.Alg] {
			return fmt.Errorf("tpmext: extend of PCR %d: bank %v given twice", pcr, d.Alg)
		}
		seen[d.Alg] = true
		if len(d.Value) != d.Alg.Size() {
			return fmt.Errorf("tpmext: extend of PCR %d: %v digest is %d bytes, want %d", pcr, d.Alg, len(d.Value), d.Alg.Size())
		}
	}
	return nil
}

func containsAlg(banks []Algorithm, a Algorithm) bool {
	for _, b := range banks {
		if b == a {
			return true
		}
	}
	return false
}

// ExtendValue returns H_alg(old || digest), the value a PCR takes when it
// is extended. It is the oracle both back ends are compared against.
func ExtendValue(alg Algorithm, old, digest []byte) []byte {
	return alg.Sum(old, digest)
}

// Result returns what the kernel's tpm_pcr_extend() returns for the outcome
// err of a TPM command: 0 for success, the TPM's response code for an
// error the TPM answered, and a negative errno when the command did not
// complete (the errno of the failure when there is one, else -EIO).
//
// Mirrors drivers/char/tpm/tpm-interface.c:tpm_transmit_cmd(), which
// returns the response header's return_code, and tpm_try_transmit(),
// whose failures are negative errnos.
func Result(err error) int {
	if err == nil {
		return 0
	}
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return int(rc)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return -int(errno)
	}
	return -int(syscall.EIO)
}
