package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestFormatDetection: parse and verify read ASCII and binary lists of any
// column width without format flags; a flag that names the wrong format
// gets an error that names the right one, a list that fits no format says
// so, and no error echoes raw bytes.
func TestFormatDetection(t *testing.T) {
	dir, exp, pcrs := exportFixture(t, 60)
	file := func(name string) string { return filepath.Join(exp, name) }
	for _, name := range []string{"binary_runtime_measurements", "binary_runtime_measurements_sha256", "ascii_runtime_measurements", "ascii_runtime_measurements_sha256"} {
		if rc, _, errs := evCmd(append(append([]string{"verify"}, pcrs...), file(name))...); rc != 0 {
			t.Errorf("verify %s without format flags: exit %d, %s", name, rc, errs)
		}
	}
	ascii256 := string(evReadFile(t, file("ascii_runtime_measurements_sha256")))
	if rc, out, errs := evCmd("parse", file("binary_runtime_measurements_sha256")); rc != 0 || out != ascii256 {
		t.Errorf("parse of the sha256 binary list without flags: exit %d, %s", rc, errs)
	}
	bin := evReadFile(t, file("binary_runtime_measurements_sha256"))
	if rc, out, errs := evCmd("parse", "--format", "binary", file("ascii_runtime_measurements_sha256")); rc != 0 || out != string(bin) {
		t.Errorf("parse of the sha256 ASCII list without --ascii: exit %d, %s", rc, errs)
	}

	// A list longer than the detection window: the record cut at the
	// window's end does not stop detection.
	long := bytes.Repeat(bin, (detectWindow/len(bin))*3/2+1)
	longFile := evWriteFile(t, dir, "long", long)
	if rc, out, errs := evCmd("parse", longFile); rc != 0 || out != strings.Repeat(ascii256, (detectWindow/len(bin))*3/2+1) {
		t.Errorf("parse of a %d-byte list: exit %d, %s", len(long), rc, errs)
	}

	rc, _, errs := evCmd("parse", "--digest-len", "20", file("binary_runtime_measurements_sha256"))
	if rc != 1 || !strings.Contains(errs, "reads as a list with --digest-len 32") || strings.Count(errs, "\n") != 1 {
		t.Errorf("--digest-len 20 on a sha256 list: exit %d, %q; want 1 and the flag that reads it", rc, errs)
	}
	rc, _, errs = evCmd(append(append([]string{"verify"}, pcrs...), "--ascii", file("binary_runtime_measurements"))...)
	if rc != 1 || !strings.Contains(errs, "reads as a list with --digest-len 20") {
		t.Errorf("--ascii on a binary list: exit %d, %q", rc, errs)
	}

	garbage := evWriteFile(t, dir, "garbage", []byte("\x0a\x00\x00\x00"+strings.Repeat("\x01", 20)+"\x06\x00\x00\x00\x00\xffab\x1b[\x00\x00\x00\x00"))
	rc, _, errs = evCmd("parse", garbage)
	if rc != 1 || !strings.Contains(errs, "no list format fits") {
		t.Errorf("garbage: exit %d, %q", rc, errs)
	}
	for _, c := range strings.TrimSuffix(errs, "\n") {
		if c < ' ' || c == 0x7f || c == '\uFFFD' {
			t.Errorf("the error echoes a raw byte %q: %q", c, errs)
		}
	}
}
