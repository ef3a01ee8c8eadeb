package main

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// TestVerifyASCIIForgedIMALine: issue 11 item 1. An "ima"-template line
// whose d field hides the binary form of another name after its 20 bytes
// must not verify, whatever its name column shows.
func TestVerifyASCIIForgedIMALine(t *testing.T) {
	d := sha1.Sum([]byte("content"))
	hidden := "/usr/bin/evil"
	in := make([]byte, 20+256)
	copy(in, d[:])
	copy(in[20:], hidden)
	digest := sha1.Sum(in)
	field := binary.LittleEndian.AppendUint32(d[:], uint32(len(hidden)))
	field = append(field, hidden...)
	pcr := sha1.Sum(append(make([]byte, 20), digest[:]...))
	line := fmt.Sprintf("10 %x ima %x /usr/bin/innocent\n", digest, field)

	dir := t.TempDir()
	log := evWriteFile(t, dir, "ascii", []byte(line))
	pcrs := evWriteFile(t, dir, "pcrs", []byte(fmt.Sprintf("PCR-10: %x\n", pcr)))
	rc, out, errOut := evCmd("verify", "--ascii", "--pcrs", "sha1,"+pcrs, log)
	if rc != 1 || !strings.Contains(errOut, "line 1, column") {
		t.Fatalf("verify --ascii of a forged line: rc %d, stdout %q, stderr %q; want 1 naming line 1 and a column", rc, out, errOut)
	}
}
