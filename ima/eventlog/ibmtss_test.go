package eventlog

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// The IBM TSS sample lists (kgoldman/ibmtss utils/, BSD-3-Clause, see
// testdata/ibmtss/LICENSE at the module root): 362 ima-sig records with a
// SHA-1 (sha1.log) and a SHA-256 (sha256.log) column, and PCR 10 of four
// banks after all of them (imakvtpcr10.txt).
const (
	ibmDir   = "../../testdata/ibmtss/"
	ibmSHA1  = ibmDir + "sha1.log"
	ibmSHA2  = ibmDir + "sha256.log"
	ibmPCR10 = ibmDir + "imakvtpcr10.txt"
	ibmCount = 362
)

var allBanks = []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ibmExpected returns PCR 10 of the given banks from imakvtpcr10.txt.
func ibmExpected(t testing.TB, banks ...tpmext.Algorithm) Expected {
	t.Helper()
	want := Expected{}
	for _, b := range banks {
		vals, err := ParsePCRFile(bytes.NewReader(readFile(t, ibmPCR10)), b)
		if err != nil {
			t.Fatal(err)
		}
		want[b] = map[int][]byte{10: vals[10]}
	}
	return want
}

var ibmLists = []struct {
	file string
	opts Options
}{
	{ibmSHA1, Options{}},
	{ibmSHA2, Options{DigestSize: 32}},
}

func TestIBMTSSVerify(t *testing.T) {
	want := ibmExpected(t, allBanks...)
	for _, l := range ibmLists {
		for _, workers := range []int{1, 2, 4} {
			log, err := ParseEventLog(readFile(t, l.file), l.opts)
			if err != nil {
				t.Fatal(err)
			}
			if log.Len() != ibmCount {
				t.Fatalf("%s: %d records, want %d", l.file, log.Len(), ibmCount)
			}
			st, err := log.Verify(want, ReplayOptions{Workers: workers})
			if err != nil {
				t.Fatalf("%s workers %d: %v", l.file, workers, err)
			}
			if st.Records != ibmCount {
				t.Errorf("%s: state after %d records, want %d", l.file, st.Records, ibmCount)
			}
			// The same through the streaming reader.
			rd, err := NewReader(bytes.NewReader(readFile(t, l.file)), l.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rd.Verify(want, ReplayOptions{Workers: workers}); err != nil {
				t.Fatalf("%s reader workers %d: %v", l.file, workers, err)
			}
		}
	}
	_ = errors.Is
	_ = template.ErrTruncated
}
