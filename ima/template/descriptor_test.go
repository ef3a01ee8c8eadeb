package template

import (
	"errors"
	"strings"
	"testing"
)

func TestBuiltins(t *testing.T) {
	want := []struct{ name, fmt string }{
		{"ima", "d|n"},
		{"ima-ng", "d-ng|n-ng"},
		{"ima-sig", "d-ng|n-ng|sig"},
		{"ima-ngv2", "d-ngv2|n-ng"},
		{"ima-sigv2", "d-ngv2|n-ng|sig"},
		{"ima-buf", "d-ng|n-ng|buf"},
		{"ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"},
		{"evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"},
	}
	b := Builtins()
	if len(b) != len(want) {
		t.Fatalf("%d builtins, want %d", len(b), len(want))
	}
	for i, w := range want {
		d := b[i]
		if d.Name() != w.name || d.Fmt() != w.fmt || d.DisplayName() != w.name || d.String() != w.name {
			t.Errorf("builtin %d = %q %q, want %q %q", i, d.Name(), d.Fmt(), w.name, w.fmt)
		}
		var ids []string
		for _, f := range d.Fields() {
			ids = append(ids, f.String())
		}
		if got := strings.Join(ids, "|"); got != w.fmt {
			t.Errorf("%s fields %q", w.name, got)
		}
		if Builtin(w.name) != d || Lookup(w.name) != d || Lookup(w.fmt) != d {
			t.Errorf("%s: Builtin/Lookup do not find it", w.name)
		}
		if d.HasModsig() != (w.name == "ima-modsig") {
			t.Errorf("%s: HasModsig = %v", w.name, d.HasModsig())
		}
		if d.IsIMA() != (w.name == "ima") {
			t.Errorf("%s: IsIMA = %v", w.name, d.IsIMA())
		}
	}
	if Builtin("d-ng|n-ng") != nil || Lookup("") != nil || Lookup("nope") != nil {
		t.Error("Builtin/Lookup found something they should not")
	}
}

func TestParseFmt(t *testing.T) {
	ok := []string{
		"d-ng|n-ng|iuid",
		"d|n",
		"buf",
		strings.Repeat("n-ng|", 14) + "n-ng", // 15 fields
		"xattrlengths|xattrvalues",
	}
	for _, s := range ok {
		d, err := ParseFmt(s)
		if err != nil {
			t.Errorf("ParseFmt(%q): %v", s, err)
			continue
		}
		if d.Name() != "" || d.Fmt() != s || d.DisplayName() != s || d.NumFields() != strings.Count(s, "|")+1 {
			t.Errorf("ParseFmt(%q) = %q %q %d fields", s, d.Name(), d.Fmt(), d.NumFields())
		}
		if d.IsIMA() {
			t.Errorf("custom %q claims to be the ima template", s)
		}
	}
	bad := []struct{ fmt, want string }{
		{"", "invalid field with length 0"},
		{"d-ng|", "invalid field with length 0"},
		{"d-ng||n-ng", "invalid field with length 0"},
		{strings.Repeat("n-ng|", 15) + "n-ng", "too many fields (16, at most 15)"},
		{"abcdefghijklmnopq", "invalid field with length 17"},
		{"d-ng|foo|n-ng", `field "foo": field not found`},
		{"ima-ng", `field "ima-ng": field not found`},
		{"D-NG", `field "D-NG"`},
	}
	for _, tc := range bad {
		_, err := ParseFmt(tc.fmt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFmt(%q) = %v, want error containing %q", tc.fmt, err, tc.want)
		}
	}
	if _, err := ParseFmt("d-ng|bogus"); !errors.Is(err, ErrUnknownField) {
		t.Errorf("unknown field error %v does not wrap ErrUnknownField", err)
	}
	if d, err := LookupOrParse("d-ng|n-ng"); err != nil || d != IMANG {
		t.Errorf("LookupOrParse(d-ng|n-ng) = %v, %v", d, err)
	}
	if d, err := LookupOrParse("d-ng|n-ng|buf|iuid"); err != nil || d.Name() != "" {
		t.Errorf("LookupOrParse(custom) = %v, %v", d, err)
	}
}

func TestSetupParameters(t *testing.T) {
	if d, err := TemplateSetup("ima-sig", HashSHA256); err != nil || d != IMASig {
		t.Errorf("ima_template=ima-sig: %v, %v", d, err)
	}
	if d, err := TemplateSetup("d-ng|n-ng|sig", HashSHA256); err != nil || d != IMASig {
		t.Errorf("ima_template=<ima-sig fmt>: %v, %v", d, err)
	}
	if _, err := TemplateSetup("ima", HashSHA256); err == nil {
		t.Error("ima_template=ima accepted with sha256")
	}
	for _, h := range []HashAlgo{HashSHA1, HashMD5} {
		if d, err := TemplateSetup("ima", h); err != nil || d != IMA {
			t.Errorf("ima_template=ima with %v: %v, %v", h, d, err)
		}
	}
	// The kernel checks the parameter text: "d|n" is not refused.
	if d, err := TemplateSetup("d|n", HashSHA256); err != nil || d != IMA {
		t.Errorf("ima_template=d|n: %v, %v", d, err)
	}
	if _, err := TemplateSetup("ima-nope", HashSHA1); err == nil {
		t.Error("unknown template accepted")
	}
	d, err := TemplateFmtSetup("d-ng|n-ng")
	if err != nil || d == IMANG || d.Name() != "" || d.DisplayName() != "d-ng|n-ng" {
		t.Errorf("ima_template_fmt=d-ng|n-ng: %v, %v (must stay custom)", d, err)
	}
	if _, err := TemplateFmtSetup("d-ng|what"); err == nil {
		t.Error("ima_template_fmt with an unknown field accepted")
	}

	hash := []struct {
		str  string
		tmpl *Descriptor
		want HashAlgo
		ok   bool
	}{
		{"sha256", IMANG, HashSHA256, true},
		{"sm3", IMANG, HashSM3_256, true},
		{"sha3-512", IMANG, HashSHA3_512, true},
		{"md4", IMANG, HashMD4, true},
		{"SHA256", IMANG, 0, false},
		{"sha256", IMA, 0, false},
		{"sha1", IMA, HashSHA1, true},
		{"sha1-whatever", IMA, HashSHA1, true}, // strncmp
		{"md5", IMA, HashMD5, true},
		{"sha1", nil, HashSHA1, true},
	}
	for _, tc := range hash {
		got, err := HashSetup(tc.str, tc.tmpl)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ima_hash=%s with %v: %v, %v", tc.str, tc.tmpl, got, err)
		}
	}
}
