package eventlog_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/tpmext"
)

// TestErrorsDeterministic: when several PCRs or banks are wrong, the error
// names the same one every time (the lowest), not the one a map iteration
// happens to reach first.
func TestErrorsDeterministic(t *testing.T) {
	var file strings.Builder
	for p := 0; p < tpmext.NumPCRs; p++ {
		fmt.Fprintf(&file, "PCR-%02d: %s\n", p, strings.Repeat("ab", 7)) // 7 bytes: no bank
	}
	const want = "PCR 0 "
	for i := 0; i < 50; i++ {
		_, err := eventlog.ParsePCRFile(strings.NewReader(file.String()), tpmext.SHA256)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("run %d: %v; want it to name %q", i, err, want)
		}
	}

	var banks []tpmext.Algorithm
	for _, a := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512} {
		banks = append(banks, a)
	}
	wrong := eventlog.Expected{}
	for _, a := range banks {
		wrong[a] = map[int][]byte{10: make([]byte, 3)} // the wrong size in every bank
	}
	l, err := eventlog.ParseEventLog(nil, eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for i := 0; i < 50; i++ {
		_, err := l.Verify(wrong, eventlog.ReplayOptions{})
		if err == nil {
			t.Fatal("a 3-byte expected value verified")
		}
		if i == 0 {
			first = err.Error()
			if !strings.Contains(first, "sha1 PCR 10") {
				t.Fatalf("%v; want the first bank, sha1, named", err)
			}
		} else if err.Error() != first {
			t.Fatalf("run %d: %q, run 0: %q", i, err, first)
		}
	}
}
