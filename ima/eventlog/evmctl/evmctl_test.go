package evmctl

import "testing"

func TestAccepts(t *testing.T) {
	ok := "sha1 PCR-10: succeed at entry 5\nsha256 PCR-10: succeed at entry 4\nsha256 PCR-11: succeed at entry 5\nMatched per TPM bank calculated digest(s).\n"
	for _, tc := range []struct {
		name    string
		r       Result
		records int
		want    bool
	}{
		{"all banks at the last record", Result{Stderr: ok}, 5, true},
		{"stops early (trailing records)", Result{Stderr: ok}, 6, false},
		{"non-zero rc", Result{RC: 1, Stderr: ok}, 5, false},
		{"no match line", Result{Stderr: "sha1 PCR-10: succeed at entry 5\nsha256 PCR-10: succeed at entry 5\n"}, 5, false},
		{"template digest failure", Result{Stderr: ok + "Failed to verify template data digest.\n"}, 5, false},
		{"one bank missing", Result{Stderr: "sha1 PCR-10: succeed at entry 5\nMatched per TPM bank calculated digest(s).\n"}, 5, false},
	} {
		if got := tc.r.Accepts(tc.records, false); got != tc.want {
			t.Errorf("%s: Accepts(%d) = %v, want %v", tc.name, tc.records, got, tc.want)
		}
	}
	if got := (Result{Stderr: ok}).LastSucceed()["sha256"]; got != 5 {
		t.Errorf("LastSucceed sha256 = %d, want 5 (the last line, not the first)", got)
	}
}
