package tpmext

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"

	"github.com/google/go-tpm/tpm2"
)

// Selection names the PCRs of one bank that a quote covers.
type Selection struct {
	Alg  Algorithm
	PCRs []int
}

// Quote is a signed TPM2_Quote as the TPM returns it and tpm2-tools
// stores it: the marshalled TPMS_ATTEST the TPM signed (tpm2_quote -m), the
// marshalled TPMT_SIGNATURE (tpm2_quote -s), and the attestation key. Every
// back end produces the same structure, so verifiers are tested the same
// way with or without cgo, and tpm2_checkquote reads the files.
type Quote struct {
	Attest    []byte
	Signature []byte
	// Key is the attestation key's public key: *ecdsa.PublicKey or
	// *rsa.PublicKey.
	Key crypto.PublicKey
	// Public is the key's TPM2B_PUBLIC (tpm2_createak -u … -f tss), when
	// known.
	Public []byte
}

// QuoteInfo is the content of a quote's TPMS_ATTEST that verifiers check.
type QuoteInfo struct {
	Nonce     []byte
	Selection Selection
	// PCRDigest is SHA-256 over the selected PCR values, in ascending PCR
	// order (the hash of the signing scheme).
	PCRDigest []byte
}

// Errors returned by Quote.Verify; match them with errors.Is.
var (
	ErrQuoteSignature = errors.New("tpmext: quote signature does not verify")
	ErrQuoteNonce     = errors.New("tpmext: quote nonce differs")
	ErrQuotePCRs      = errors.New("tpmext: quote PCR digest differs from the expected PCR values")
	ErrQuoteSelection = errors.New("tpmext: quote covers a different PCR selection")
)

// Info decodes the quote's TPMS_ATTEST without checking the signature.
func (q *Quote) Info() (*QuoteInfo, error) {
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		return nil, fmt.Errorf("tpmext: decoding TPMS_ATTEST: %w", err)
	}
	if att.Magic != tpm2.TPMGeneratedValue {
		return nil, fmt.Errorf("tpmext: TPMS_ATTEST magic %#x is not TPM_GENERATED_VALUE", uint32(att.Magic))
	}
	if att.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("tpmext: TPMS_ATTEST type %#x is not a quote", uint16(att.Type))
	}
	qi, err := att.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("tpmext: %w", err)
	}
	if len(qi.PCRSelect.PCRSelections) != 1 {
		return nil, fmt.Errorf("tpmext: quote selects %d banks, want 1", len(qi.PCRSelect.PCRSelections))
	}
	s := qi.PCRSelect.PCRSelections[0]
	sel := Selection{Alg: Algorithm(s.Hash)}
	for i, b := range s.PCRSelect {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				sel.PCRs = append(sel.PCRs, i*8+bit)
			}
		}
	}
	return &QuoteInfo{Nonce: att.ExtraData.Buffer, Selection: sel, PCRDigest: qi.PCRDigest.Buffer}, nil
}

// Check verifies, in pure Go, the quote's signature against its key
// (ECDSA, RSASSA or RSAPSS over SHA-256), that
// it carries nonce and that it covers exactly sel, and returns its content.
// It does not look at the PCR digest: Verify compares it with expected
// values, and a log verifier can replay a log until it matches.
func (q *Quote) Check(nonce []byte, sel Selection) (*QuoteInfo, error) {
	if err := verifySignature(q.Key, q.Attest, q.Signature); err != nil {
		return nil, err
	}
	info, err := q.Info()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(info.Nonce, nonce) {
		return nil, ErrQuoteNonce
	}
	want := normalizeSelection(sel)
	if info.Selection.Alg != want.Alg || fmt.Sprint(info.Selection.PCRs) != fmt.Sprint(want.PCRs) {
		return nil, fmt.Errorf("%w: quote has %v %v, want %v %v", ErrQuoteSelection, info.Selection.Alg, info.Selection.PCRs, want.Alg, want.PCRs)
	}
	return info, nil
}

// Verify is Check followed by comparing the quote's PCR digest with the
// digest of the expected values (pcrs[i] for every i in sel.PCRs).
// A verifier that trusts the key checks q.Key separately.
func (q *Quote) Verify(nonce []byte, sel Selection, pcrs map[int][]byte) error {
	info, err := q.Check(nonce, sel)
	if err != nil {
		return err
	}
	digest, err := PCRDigest(sel, pcrs)
	if err != nil {
		return err
	}
	if !bytes.Equal(digest, info.PCRDigest) {
		return ErrQuotePCRs
	}
	return nil
}

// PCRDigest returns SHA-256 over the values of the selected PCRs in
// ascending order: the pcrDigest of a TPMS_QUOTE_INFO signed with an
// ECDSA-SHA256 key.
func PCRDigest(sel Selection, pcrs map[int][]byte) ([]byte, error) {
	sel = normalizeSelection(sel)
	h := sha256.New()
	for _, i := range sel.PCRs {
		v, ok := pcrs[i]
		if !ok {
			return nil, fmt.Errorf("tpmext: no value given for PCR %d", i)
		}
		if len(v) != sel.Alg.Size() {
			return nil, fmt.Errorf("tpmext: PCR %d value is %d bytes, want %d for %v", i, len(v), sel.Alg.Size(), sel.Alg)
		}
		h.Write(v)
	}
	return h.Sum(nil), nil
}

// normalizeSelection sorts and deduplicates the PCR list, as a TPM's bitmap
// does.
func normalizeSelection(sel Selection) Selection {
	pcrs := append([]int(nil), sel.PCRs...)
	sort.Ints(pcrs)
	out := pcrs[:0]
	for i, p := range pcrs {
		if i == 0 || p != pcrs[i-1] {
			out = append(out, p)
		}
	}
	return Selection{Alg: sel.Alg, PCRs: out}
}

// checkSelection validates a quote selection against the allocated banks.
func checkSelection(banks []Algorithm, sel Selection) error {
	if !containsAlg(banks, sel.Alg) {
		return fmt.Errorf("tpmext: quote of bank %v, which is not allocated", sel.Alg)
	}
	if len(sel.PCRs) == 0 {
		return fmt.Errorf("tpmext: quote of no PCR")
	}
	for _, p := range sel.PCRs {
		if err := checkPCR(p); err != nil {
			return err
		}
	}
	return nil
}

// tpmSelection converts a Selection to the TPML_PCR_SELECTION of TPM2_Quote.
func tpmSelection(sel Selection) tpm2.TPMLPCRSelection {
	pcrs := make([]uint, len(sel.PCRs))
	for i, p := range sel.PCRs {
		pcrs[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgID(sel.Alg),
		PCRSelect: tpm2.PCClientCompatible.PCRs(pcrs...),
	}}}
}
