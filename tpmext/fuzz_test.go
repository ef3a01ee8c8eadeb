package tpmext

import (
	"testing"
)

// FuzzParseQuote feeds tpm2-tools' three quote files (TPMS_ATTEST,
// TPMT_SIGNATURE, TPM2B_PUBLIC or PEM) to the parsers and the check: they
// never panic, and a quote that parses and checks against the seed's nonce
// and selection must carry them.
func FuzzParseQuote(f *testing.F) {
	sw, err := NewSoftware(SHA256)
	if err != nil {
		f.Fatal(err)
	}
	sel := Selection{Alg: SHA256, PCRs: []int{10}}
	q, err := sw.Quote([]byte("nonce"), sel)
	if err != nil {
		f.Fatal(err)
	}
	p, _ := q.AttestationKey().PEM()
	f.Add(q.Attest, q.Signature, q.Public)
	f.Add(q.Attest, q.Signature, p)
	f.Fuzz(func(t *testing.T, msg, sig, key []byte) {
		ak, err := ParseAttestationKey(key)
		if err != nil {
			return
		}
		pq, err := ParseQuote(msg, sig, ak)
		if err != nil {
			return
		}
		info, err := pq.Check([]byte("nonce"), sel)
		if err != nil {
			return
		}
		if string(info.Nonce) != "nonce" || info.Selection.Alg != SHA256 || len(info.Selection.PCRs) != 1 || info.Selection.PCRs[0] != 10 {
			t.Fatalf("a checked quote carries %q %v", info.Nonce, info.Selection)
		}
	})
}
