package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/tpmext"
)

// errQuoteRejected wraps a quote that does not verify (signature, nonce,
// selection): verify exits 1 for it, as for a list that does not verify.
var errQuoteRejected = errors.New("the quote does not verify")

// quoteFlags are verify's flags for a TPM quote as tpm2_quote writes it
// (and imasim export): the TPMS_ATTEST message, the TPMT_SIGNATURE, the
// attestation key and the nonce.
type quoteFlags struct {
	msg, sig, akPub, nonce string
}

func (qf *quoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&qf.msg, "quote", "", "check LOG against the TPM quote whose TPMS_ATTEST is in `MSG` (tpm2_quote -m) and print N, the records it covers; needs --sig, --ak-pub and --nonce; the quote must select the PCRs of --pcr in one bank; --pcrs is then optional")
	fs.StringVar(&qf.sig, "sig", "", "the quote's TPMT_SIGNATURE `FILE` (tpm2_quote -s)")
	fs.StringVar(&qf.akPub, "ak-pub", "", "the attestation key `FILE`: TPM2B_PUBLIC (tpm2_createak -u) or PEM (-f pem); the caller decides whether to trust it")
	fs.StringVar(&qf.nonce, "nonce", "", "the quote's qualifying data in `HEX` (tpm2_quote -q)")
}

func (qf *quoteFlags) given() bool { return qf.msg != "" }

// target reads and checks the quote (signature, nonce, selection of the
// PCRs in check) and returns what the replay must reach and the selection.
// A quote that does not verify is errQuoteRejected; other errors (files
// unreadable or malformed) are usage errors.
func (qf *quoteFlags) target(check []int) ([]eventlog.QuoteDigest, tpmext.Selection, error) {
	var sel tpmext.Selection
	if qf.sig == "" || qf.akPub == "" || qf.nonce == "" {
		return nil, sel, fmt.Errorf("--quote needs --sig, --ak-pub and --nonce")
	}
	nonce, err := hex.DecodeString(qf.nonce)
	if err != nil {
		return nil, sel, fmt.Errorf("--nonce %q is not hex", qf.nonce)
	}
	var files [3][]byte
	for i, name := range []string{qf.msg, qf.sig, qf.akPub} {
		if files[i], err = os.ReadFile(name); err != nil {
			return nil, sel, err
		}
	}
	ak, err := tpmext.ParseAttestationKey(files[2])
	if err != nil {
		return nil, sel, fmt.Errorf("%s: %v", qf.akPub, err)
	}
	q, err := tpmext.ParseQuote(files[0], files[1], ak)
	if err != nil {
		return nil, sel, fmt.Errorf("%s, %s: %v", qf.msg, qf.sig, err)
	}
	info, err := q.Info()
	if err != nil {
		return nil, sel, err
	}
	sel = tpmext.Selection{Alg: info.Selection.Alg, PCRs: check}
	t, err := eventlog.QuoteTarget(q, nonce, sel)
	if err != nil {
		return nil, sel, fmt.Errorf("%w: %v", errQuoteRejected, err)
	}
	return t.Quotes, sel, nil
}

// writeQuote quotes PCR 10 of the SHA-256 bank (else the TPM's first bank)
// with nonce and writes the files tpm2_checkquote and imasim verify
// --quote read: quote.msg (TPMS_ATTEST), quote.sig (TPMT_SIGNATURE),
// quote.nonce (hex), ak.pub (TPM2B_PUBLIC) and ak.pem.
func writeQuote(dir string, tpm tpmext.TPM, nonce []byte) (tpmext.Selection, error) {
	sel := tpmext.Selection{Alg: tpm.Banks()[0], PCRs: []int{10}}
	for _, b := range tpm.Banks() {
		if b == tpmext.SHA256 {
			sel.Alg = b
		}
	}
	q, err := tpm.Quote(nonce, sel)
	if err != nil {
		return sel, err
	}
	ak := q.AttestationKey()
	p, err := ak.PEM()
	if err != nil {
		return sel, err
	}
	for name, b := range map[string][]byte{
		"quote.msg": q.Attest, "quote.sig": q.Signature, "quote.nonce": []byte(hex.EncodeToString(nonce) + "\n"),
		"ak.pub": ak.Public, "ak.pem": p,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return sel, err
		}
	}
	return sel, nil
}
