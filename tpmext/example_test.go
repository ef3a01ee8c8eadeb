package tpmext_test

import (
	"fmt"

	"github.com/imasim/imasim/tpmext"
)

// Open takes the spelling of imasim's --tpm flag; a quote round-trips
// through the files tpm2_quote writes and tpm2_checkquote reads.
func ExampleOpen() {
	tpm, err := tpmext.Open("software", tpmext.SHA256) // or "swtpm:127.0.0.1:2321", "device:/dev/tpmrm0"
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tpm.Close()
	tpm.Extend(10, []tpmext.Digest{{Alg: tpmext.SHA256, Value: tpmext.SHA256.Sum([]byte("record"))}})
	pcr10, _ := tpm.ReadPCR(10, tpmext.SHA256) // SHA-256(32 zero bytes || SHA-256("record"))
	fmt.Printf("PCR 10: %x\n", pcr10)

	nonce, sel := []byte("nonce"), tpmext.Selection{Alg: tpmext.SHA256, PCRs: []int{10}}
	q, _ := tpm.Quote(nonce, sel)
	// Write q.Attest (quote.msg), q.Signature (quote.sig) and
	// q.AttestationKey().Public (ak.pub) for tpm2_checkquote; read them back:
	ak, _ := tpmext.ParseAttestationKey(q.AttestationKey().Public)
	back, _ := tpmext.ParseQuote(q.Attest, q.Signature, ak)
	fmt.Println("quote verifies:", back.Verify(nonce, sel, map[int][]byte{10: pcr10}) == nil)

	_, err = tpmext.Open("swtpm:localhost")
	fmt.Println(err)
	// Output:
	// PCR 10: 3d90ee444549f5da5a9e40d8f44605f55f1f861d8f459849765e14bca8f4fedb
	// quote verifies: true
	// tpmext: TPM "swtpm:localhost": want HOST:PORT, got "localhost"
}
