package sm3

import (
	"encoding/hex"
	"strings"
	"testing"
)

// Vectors from GB/T 32905-2016 appendix A.
func TestVectors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{strings.Repeat("abcd", 16), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
	} {
		got := Sum([]byte(tc.in))
		if hex.EncodeToString(got[:]) != tc.want {
			t.Errorf("Sum(%q) = %x, want %s", tc.in, got, tc.want)
		}
		// Byte-by-byte writes must agree with one write.
		h := New()
		for i := 0; i < len(tc.in); i++ {
			h.Write([]byte{tc.in[i]})
		}
		if s := hex.EncodeToString(h.Sum(nil)); s != tc.want {
			t.Errorf("incremental %q = %s, want %s", tc.in, s, tc.want)
		}
	}
}

func TestSumDoesNotChangeState(t *testing.T) {
	h := New()
	h.Write([]byte("ab"))
	_ = h.Sum(nil)
	h.Write([]byte("c"))
	if got := hex.EncodeToString(h.Sum(nil)); got != "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" {
		t.Errorf("got %s", got)
	}
}
