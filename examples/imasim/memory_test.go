package main

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// cmdAllocated runs the command line and returns its exit code, stderr and
// the bytes it allocated.
func cmdAllocated(args ...string) (int, string, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc, _, errOut := evCmd(args...)
	runtime.ReadMemStats(&after)
	return rc, errOut, after.TotalAlloc - before.TotalAlloc
}

// TestHugeRecordCLI: issue 11 item 6. verify and parse refuse a record
// claiming 2 GiB of template data at its length field, naming the cap,
// without reading the 4 MiB that follow into memory.
func TestHugeRecordCLI(t *testing.T) {
	le := binary.LittleEndian
	rec := le.AppendUint32(nil, 10)
	rec = append(rec, bytes.Repeat([]byte{1}, 20)...)
	rec = le.AppendUint32(rec, 6)
	rec = append(rec, "ima-ng"...)
	rec = le.AppendUint32(rec, 0x7fffff00)
	rec = append(rec, make([]byte, 4<<20)...)
	dir := t.TempDir()
	log := evWriteFile(t, dir, "huge", rec)
	pcrs := evWriteFile(t, dir, "pcrs", []byte("PCR-10: "+strings.Repeat("00", 20)+"\n"))
	for _, args := range [][]string{{"verify", "--pcrs", "sha1," + pcrs, log}, {"parse", log}} {
		rc, errOut, got := cmdAllocated(args...)
		if rc != 1 || !strings.Contains(errOut, "record 0 at offset 34") || !strings.Contains(errOut, "exceeds the cap") {
			t.Errorf("%s: rc %d, stderr %q; want 1 and the cap at record 0 offset 34", args[0], rc, errOut)
		}
		if got > 2<<20 {
			t.Errorf("%s allocated %d bytes", args[0], got)
		}
	}
}

// TestVerifyWorkersClamped: issue 11 item 6. --workers far over the CPUs
// is clamped: the IBM list verifies at the cost of one worker per CPU.
func TestVerifyWorkersClamped(t *testing.T) {
	args := append([]string{"verify", "--digest-len", "20", "--workers", "200000"}, evAllPCRs[:4]...)
	rc, errOut, got := cmdAllocated(append(args, evIBMSHA1)...)
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut)
	}
	if got > 32<<20 {
		t.Errorf("verify --workers 200000 allocated %d bytes", got)
	}
}
