package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/tpmext"
)

const (
	evIBMDir   = "../../testdata/ibmtss/"
	evIBMSHA1  = evIBMDir + "sha1.log"
	evIBMSHA2  = evIBMDir + "sha256.log"
	evIBMPCR10 = evIBMDir + "imakvtpcr10.txt"
)

// runCmd runs the command line and returns its exit code and outputs.
func evCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := run(args, &out, &errb)
	return rc, out.String(), errb.String()
}

func evReadFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func evWriteFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// evAllPCRs passes imakvtpcr10.txt for the four banks.
var evAllPCRs = []string{"--pcrs", "sha1," + evIBMPCR10, "--pcrs", "sha256," + evIBMPCR10, "--pcrs", "sha384," + evIBMPCR10, "--pcrs", "sha512," + evIBMPCR10}

// evmctlFiles writes imakvtpcr10.txt's values as evmctl PCR files
// (PCR-00..PCR-23, zeros but PCR 10) and returns the --pcrs arguments.
func evEvmctlFiles(t *testing.T, dir string, banks ...tpmext.Algorithm) []string {
	var args []string
	for _, b := range banks {
		f, _ := os.Open(evIBMPCR10)
		vals, err := eventlog.ParsePCRFile(f, b)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		all := make([][]byte, tpmext.NumPCRs)
		for i := range all {
			all[i] = make([]byte, b.Size())
		}
		all[10] = vals[10]
		args = append(args, "--pcrs", b.String()+","+evWriteFile(t, dir, "pcrs-"+b.String(), eventlog.AppendPCRFile(nil, all)))
	}
	return args
}

func TestVerifyIBMTSS(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		append(append([]string{"verify"}, evAllPCRs...), evIBMSHA1),
		append(append([]string{"verify", "--digest-len", "32"}, evAllPCRs...), evIBMSHA2),
		append([]string{"verify", evIBMSHA1}, evEvmctlFiles(t, dir, tpmext.SHA1, tpmext.SHA256)...), // flags after LOG
		{"verify", "--pcrs", evEvmctlFiles(t, dir, tpmext.SHA1)[1][len("sha1,"):], evIBMSHA1},       // FILE alone: sha1
		append(append([]string{"verify", "--digest-len=32", "--column-alg", "sha256", "--workers", "1"}, evEvmctlFiles(t, dir, tpmext.SHA384)...), evIBMSHA2),
	}
	for _, args := range cases {
		rc, out, errs := evCmd(args...)
		if rc != 0 || !strings.Contains(out, "verified 362 records") || errs != "" {
			t.Errorf("%v: rc %d\nstdout %q\nstderr %q", args, rc, out, errs)
		}
	}
}

// TestVerifyFails checks exit 1 with one line naming the record.
func TestVerifyFails(t *testing.T) {
	dir := t.TempDir()
	orig := evReadFile(t, evIBMSHA1)
	log, err := eventlog.ParseEventLog(orig, eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r100 := log.Record(100)
	changed := bytes.Clone(orig)
	changed[r100.Offset+7] ^= 1
	appended := append(bytes.Clone(orig), log.Record(3).Binary()...)
	truncated := orig[:log.Record(361).Offset+50]
	cases := []struct {
		name, data, want string
		flags            []string
	}{
		{"changed", string(changed), fmt.Sprintf("record 100 at offset %d: template digest does not match", r100.Offset), nil},
		{"appended", string(appended), fmt.Sprintf("record 362 at offset %d: not covered by the expected PCR values: they match after 362 records, but the list has 363", len(orig)), nil},
		{"truncated", string(truncated), fmt.Sprintf("record 361 at offset %d (the record starts at offset %d): truncated record", log.Record(361).Offset+39, log.Record(361).Offset), nil},
		{"wrong column width", string(orig), "record 0 at offset 36 (the record starts at offset 0): template name too long: template name length 671088640 exceeds 255; LOG reads as a list with --digest-len 20", []string{"--digest-len", "32"}},
	}
	for _, c := range cases {
		f := evWriteFile(t, dir, c.name, []byte(c.data))
		args := append(append(append([]string{"verify"}, c.flags...), evAllPCRs...), f)
		rc, out, errs := evCmd(args...)
		want := strings.ReplaceAll(c.want, "LOG", f)
		if rc != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) {
			t.Errorf("%s: rc %d, stdout %q\nstderr %q\nwant one line with %q", c.name, rc, out, errs, want)
		}
	}
	// A PCR value that the list does not reach.
	wrong := evWriteFile(t, dir, "wrong-pcr", []byte("PCR-10: "+strings.Repeat("ab", 32)+"\n"))
	rc, out, errs := evCmd("verify", "--pcrs", "sha1,"+evIBMPCR10, "--pcrs", "sha256,"+wrong, evIBMSHA1)
	if rc != 1 || out != "" || !strings.HasPrefix(errs, "imasim verify: ") || !strings.Contains(errs, "after all 362 records: sha256 PCR 10: replayed 7fac48c8") {
		t.Errorf("wrong PCR value: rc %d %q", rc, errs)
	}
	// --prefix finds the 362 records the values cover.
	f := evWriteFile(t, dir, "appended", appended)
	rc, out, _ = evCmd(append(append([]string{"verify", "--prefix"}, evAllPCRs...), f)...)
	if rc != 0 || !strings.Contains(out, "N = 362 records") {
		t.Errorf("--prefix: rc %d, %q", rc, out)
	}
}

func TestVerifyUsage(t *testing.T) {
	dir := t.TempDir()
	noPCR10 := evWriteFile(t, dir, "pcr0", []byte("PCR-00: "+strings.Repeat("00", 20)+"\n"))
	junk := evWriteFile(t, dir, "junk", []byte("hello\n"))
	cases := [][]string{
		{"verify"},
		{"verify", evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10},
		{"verify", "--pcrs", "md4," + evIBMPCR10, evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, "--pcrs", "sha1," + evIBMPCR10, evIBMSHA1},
		{"verify", "--pcrs", "sha1,", evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, "--digest-len", "21", evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, "--violations", "maybe", evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, "--pcr", "10,x", evIBMSHA1},
		{"verify", "--pcrs", "sha1," + filepath.Join(dir, "missing"), evIBMSHA1},
		{"verify", "--pcrs", "sha1," + noPCR10, evIBMSHA1},
		{"verify", "--pcrs", "sha1," + junk, evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, evIBMSHA1, evIBMSHA2},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, filepath.Join(dir, "missing.log")},
		{"verify", "--bogus", evIBMSHA1},
		{"verify", "--pcrs", "sha1," + evIBMPCR10, "--first-record", "3", evIBMSHA1},
	}
	for _, args := range cases {
		if rc, out, errs := evCmd(args...); rc != 2 || out != "" || errs == "" {
			t.Errorf("%v: rc %d, stdout %q, stderr %q; want 2 and a message", args, rc, out, errs)
		}
	}
	rc, out, errs := evCmd("verify", "-h")
	if rc != 0 || !strings.Contains(out, "usage: imasim verify") || !strings.Contains(out, "Exit status") || errs != "" {
		t.Errorf("-h: rc %d, %q", rc, out)
	}
	if _, ok := commands["verify"]; !ok {
		t.Error("verify is not registered")
	}
}

// TestVerifyResume saves the state after a prefix and verifies the rest
// of the list from it, as an incremental verifier does.
func TestVerifyResume(t *testing.T) {
	dir := t.TempDir()
	orig := evReadFile(t, evIBMSHA1)
	log, _ := eventlog.ParseEventLog(orig, eventlog.Options{})
	st, err := eventlog.ParseEventLog(orig[:log.Record(200).Offset], eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prefixState, err := st.Replay(eventlog.ReplayOptions{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(prefixState)
	state := evWriteFile(t, dir, "state.json", b)
	tail := evWriteFile(t, dir, "tail", orig[prefixState.Offset:])
	pcrs := []string{"--pcrs", "sha1," + evIBMPCR10, "--pcrs", "sha256," + evIBMPCR10}
	saved := filepath.Join(dir, "after.json")
	for _, args := range [][]string{
		append([]string{"verify", "--resume", state, "--save-state", saved, evIBMSHA1}, pcrs...),
		append([]string{"verify", "--resume", state, "--first-record", "200", tail}, pcrs...),
	} {
		rc, out, errs := evCmd(args...)
		if rc != 0 || !strings.Contains(out, "verified 362 records") {
			t.Errorf("%v: rc %d %q %q", args, rc, out, errs)
		}
	}
	var after eventlog.State
	if err := json.Unmarshal(evReadFile(t, saved), &after); err != nil || after.Records != 362 || after.Offset != int64(len(orig)) {
		t.Errorf("saved state %+v, %v", after, err)
	}
	// The tail without the right record number is refused.
	rc, _, errs := evCmd(append([]string{"verify", "--resume", state, "--first-record", "201", tail}, pcrs...)...)
	if rc != 2 || !strings.Contains(errs, "state") {
		t.Errorf("wrong --first-record: rc %d %q", rc, errs)
	}
}
