package oracle

import (
	"bytes"
	"strings"
	"testing"
)

// TestScriptsRunOnModel runs every script on the model, without QEMU: each
// step must run (no "!!" line) and the boot aggregate check must pass, so
// that a broken script shows up even where the kernel is not built.
func TestScriptsRunOnModel(t *testing.T) {
	scripts, err := Scripts()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scripts {
		m, err := NewModel(s)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		Run(s, m, &b)
		out := b.String()
		if strings.Contains(out, "\n!! ") || !strings.Contains(out, "# boot_aggregate is the model's") {
			t.Errorf("%s:\n%s", s.Name, out)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		"measure /a a\n",                   // no boot
		"boot\nboot\n",                     // boot twice
		"boot flush=maybe\n",               // bad option
		"boot\nfrobnicate\n",               // unknown command
		"boot\necho A binary_runtime\n",    // no redirection
		"boot\nas 0 cat violations\n",      // bad thread id
		"boot\nas 2:root cat violations\n", // bad option
		"boot\ncat 'violations\n",          // open quote
		"boot\nmeasure /a\n",               // too few arguments
	} {
		if _, err := Parse("t", []byte(src)); err == nil {
			t.Errorf("Parse(%q) succeeded", src)
		}
	}
}

func TestNormalize(t *testing.T) {
	in := "# boot_aggregate sha1=0123456789abcdef01 digest=fedcba9876543210ff\n> 10 x 0123456789abcdef01 fedcba9876543210ff\n"
	want := "# boot_aggregate sha1=<boot_aggregate sha1> digest=<boot_aggregate digest>\n> 10 x <boot_aggregate sha1> <boot_aggregate digest>\n"
	if got := Normalize(in); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDiffLines(t *testing.T) {
	a := "boot\ncat x\n> 1\n> 2\nls\n"
	b := "boot\ncat x\n> 1\n> 3\nls\n> y\n"
	want := "   4 - > 2\n   5 + > 3\n   6 + > y\n"
	if got := diffLines(a, b); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := diffLines(a, a); got != "" {
		t.Errorf("equal inputs: got %q", got)
	}
}
