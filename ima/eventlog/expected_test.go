package eventlog

import (
	"bytes"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

func TestExpectedFrom(t *testing.T) {
	vals := tpmext.PCRValues{}
	for _, alg := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256} {
		for p := range tpmext.NumPCRs {
			vals[alg] = append(vals[alg], []byte{byte(alg), byte(p)})
		}
	}
	want, err := ExpectedFrom(vals, 10, 11)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 2 {
		t.Fatalf("got %d banks, want 2", len(want))
	}
	for alg, m := range want {
		if len(m) != 2 || !bytes.Equal(m[11], []byte{byte(alg), 11}) || !bytes.Equal(m[10], []byte{byte(alg), 10}) {
			t.Errorf("bank %v: got %x, want PCRs 10 and 11 of that bank", alg, m)
		}
	}
	def, _ := ExpectedFrom(vals)
	if len(def[tpmext.SHA1]) != 1 || def[tpmext.SHA1][10] == nil {
		t.Errorf("no PCRs given: got %x, want PCR 10 only", def[tpmext.SHA1])
	}
	if _, err := ExpectedFrom(vals, 24); err == nil {
		t.Error("PCR 24: got no error")
	}
}
