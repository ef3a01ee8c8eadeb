package template

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckFieldLengths(t *testing.T) {
	d20, d16, d32 := strings.Repeat("a", 20), strings.Repeat("a", 16), strings.Repeat("a", 32)
	custom := func(f string) *Descriptor {
		d, err := ParseFmt(f)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		desc   *Descriptor
		fields []string
		bad    int // index of the bad field, -1 for none
	}{
		{IMA, []string{d20, "/bin/x\x00"}, -1},
		{IMA, []string{d20 + "\x05\x00\x00\x00/evil", "/bin/x\x00"}, 0}, // issue 11 item 1
		{IMA, []string{d16, "/bin/x\x00"}, 0},
		{custom("d|n-ng"), []string{d16, "/bin/x\x00"}, -1},
		{IMA, []string{d20, strings.Repeat("x", 255) + "\x00"}, -1},
		{IMA, []string{d20, strings.Repeat("x", 256) + "\x00"}, 1},
		{IMA, []string{d20, "/bin/x"}, 1},
		{IMA, []string{d20, "/bin\x00x\x00"}, 1},
		{IMANG, []string{"sha256:\x00" + d32, strings.Repeat("x", 4096) + "\x00"}, -1},
		{IMANG, []string{"sha256:\x00" + d20, "/x\x00"}, 0},
		{IMANG, []string{"sha256:\x00" + strings.Repeat("\x00", 20), "/x\x00"}, -1}, // pre-fix violation
		{IMANG, []string{"sha257:\x00" + d32, "/x\x00"}, 0},
		{IMANG, []string{d32, "/x\x00"}, 0},
		{custom("d-ngv2|n-ng"), []string{"verity:sha256:\x00" + d32, "/x\x00"}, -1},
		{custom("d-ngv2|n-ng"), []string{"other:sha256:\x00" + d32, "/x\x00"}, 0},
		{custom("d-modsig|iuid|igid|imode|xattrlengths"), []string{"", "", "1234", "12", "12345678"}, -1},
		{custom("d-modsig|iuid"), []string{"", "12"}, 1},
		{custom("imode"), []string{"1234"}, 0},
		{custom("xattrlengths"), []string{"123"}, 0},
	}
	for i, tc := range tests {
		fields := make([][]byte, len(tc.fields))
		for j, f := range tc.fields {
			fields[j] = []byte(f)
		}
		k, err := CheckFieldLengths(tc.desc, fields)
		if k != tc.bad || (err == nil) != (tc.bad < 0) || err != nil && !errors.Is(err, ErrFieldLength) {
			t.Errorf("case %d (%s %q): field %d, %v; want field %d", i, tc.desc, tc.fields, k, err, tc.bad)
		}
	}
}
