package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// exportFixture runs imasim export of records records into a temporary
// directory and returns that directory, the export's folder in it, and
// the --pcrs arguments for the export's two banks.
func exportFixture(t *testing.T, records int) (dir, exp string, pcrs []string) {
	t.Helper()
	dir = t.TempDir()
	exp = filepath.Join(dir, "exp")
	if rc, _, errs := evCmd("export", "--dir", exp, "--records", strconv.Itoa(records), "--stage-every", "10", "-q"); rc != 0 {
		t.Fatalf("export: %d %s", rc, errs)
	}
	pcrs = []string{"--pcrs", "sha1," + filepath.Join(exp, "pcrs-sha1.txt"), "--pcrs", "sha256," + filepath.Join(exp, "pcrs-sha256.txt")}
	return dir, exp, pcrs
}

// TestExitCodes: every command answers 0 for success and -h, 1 for a
// verification or scenario mismatch, 2 for a usage error or input that
// cannot be read; each usage error is one line on stderr.
func TestExitCodes(t *testing.T) {
	dir, exp, pcrs := exportFixture(t, 40)
	log := filepath.Join(exp, "binary_runtime_measurements")
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	cut := evWriteFile(t, dir, "cut", data[:len(data)-3])
	wrongPCR := evWriteFile(t, dir, "wrong-pcrs", []byte("PCR-10: "+strings.Repeat("11", 20)+"\n"))
	good := evWriteFile(t, dir, "good.txt", []byte("boot\ncat runtime_measurements_count\n> 1\n"))
	mismatch := evWriteFile(t, dir, "mismatch.txt", []byte("boot\ncat runtime_measurements_count\n> 5\n"))
	unparsable := evWriteFile(t, dir, "unparsable.txt", []byte("boot\nfrobnicate the kernel\n"))
	notDir := evWriteFile(t, dir, "file", nil)
	verify := func(args ...string) []string { return append(append([]string{"verify"}, pcrs...), args...) }

	cases := []struct {
		args  []string
		want  int
		usage bool // a one-line usage error on stderr
	}{
		{args: nil, want: 2},
		{args: []string{"help"}, want: 0},
		{args: []string{"-h"}, want: 0},
		{args: []string{"frobnicate"}, want: 2, usage: true},

		{args: []string{"demo", "--records", "30", "--tpm", "software"}, want: 0},
		{args: []string{"demo", "extra"}, want: 2, usage: true},
		{args: []string{"demo", "--records", "x"}, want: 2, usage: true},

		{args: []string{"export", "--dir", filepath.Join(dir, "e2"), "--records", "5", "-q"}, want: 0},
		{args: []string{"export", "--dir", exp, "extra"}, want: 2, usage: true},
		{args: []string{"export"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--records", "0"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--stage-every", "0"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--records", "5", "--violations", "6"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--records", "5", "--kexec-after", "6"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--flavour", "n", "--flush"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--banks", "sha9"}, want: 2, usage: true},
		{args: []string{"export", "--dir", exp, "--template", "ima"}, want: 2, usage: true},
		{args: []string{"export", "--dir", filepath.Join(dir, "e3"), "--records", "5", "--template", "ima", "--hash", "sha1", "-q"}, want: 0},

		{args: []string{"parse", log}, want: 0},
		{args: []string{"parse", cut}, want: 1},
		{args: []string{"parse", dir}, want: 2, usage: true},
		{args: []string{"parse", filepath.Join(dir, "missing")}, want: 2, usage: true},
		{args: []string{"parse", "--format", "xml", log}, want: 2, usage: true},

		{args: verify(log), want: 0},
		{args: verify(cut), want: 1},
		{args: []string{"verify", "--pcrs", "sha1," + wrongPCR, log}, want: 1},
		{args: verify(dir), want: 2, usage: true},
		{args: verify(filepath.Join(dir, "missing")), want: 2, usage: true},
		{args: []string{"verify", "--pcrs", "sha9," + wrongPCR, log}, want: 2, usage: true},
		{args: []string{"verify", "--pcrs", "sha1," + filepath.Join(dir, "missing"), log}, want: 2, usage: true},

		{args: []string{"run", good}, want: 0},
		{args: []string{"run", mismatch}, want: 1},
		{args: []string{"run", unparsable}, want: 2},
		{args: []string{"run", dir}, want: 2},
		{args: []string{"run", filepath.Join(dir, "missing")}, want: 2},
		{args: []string{"run"}, want: 2, usage: true},
		{args: []string{"run", "--bogus"}, want: 2, usage: true},

		{args: []string{"mount"}, want: 2, usage: true},
		{args: []string{"mount", "--bogus", dir}, want: 2, usage: true},
		{args: []string{"mount", filepath.Join(dir, "missing")}, want: 2, usage: true},
		{args: []string{"mount", notDir}, want: 2, usage: true},

		{args: []string{"ctl"}, want: 2, usage: true},
		{args: []string{"ctl", dir}, want: 2, usage: true},
		{args: []string{"ctl", dir, "frobnicate"}, want: 2, usage: true},
		{args: []string{"ctl", dir, "status"}, want: 2, usage: true}, // no live mount

		{args: []string{"collect", "extra"}, want: 2, usage: true},
		{args: []string{"collect", "--bogus"}, want: 2, usage: true},
		{args: []string{"collect", "--once", "--securityfs", dir, "--store", filepath.Join(dir, "st")}, want: 2, usage: true}, // no IMA files
		{args: []string{"log", "--from", "-1"}, want: 2, usage: true},
		{args: []string{"log", "--format", "xml"}, want: 2, usage: true},
		{args: []string{"log", "--securityfs", dir, "--store", filepath.Join(dir, "st")}, want: 2, usage: true}, // no IMA files
	}
	tested := map[string]bool{}
	for _, c := range cases {
		if len(c.args) > 0 {
			tested[c.args[0]] = true
		}
		rc, _, errs := evCmd(c.args...)
		if rc != c.want {
			t.Errorf("imasim %s: exit %d, want %d; stderr %q", strings.Join(c.args, " "), rc, c.want, errs)
		}
		if c.usage && strings.Count(errs, "\n") != 1 {
			t.Errorf("imasim %s: want one line on stderr, got %q", strings.Join(c.args, " "), errs)
		}
	}
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !tested[name] {
			t.Errorf("imasim %s has no exit-code case", name)
		}
		for _, h := range []string{"-h", "--help"} {
			rc, out, errs := evCmd(name, h)
			if rc != 0 || !strings.Contains(out, "usage: imasim "+name) || errs != "" {
				t.Errorf("imasim %s %s: exit %d, stdout %.40q, stderr %q; want 0 and the help on stdout", name, h, rc, out, errs)
			}
		}
	}
}

// TestExitCodesDocumented: imasim -h and the README state the exit codes
// in the same words.
func TestExitCodesDocumented(t *testing.T) {
	rc, out, _ := evCmd("-h")
	if rc != 0 || !strings.Contains(out, exitCodesHelp) {
		t.Errorf("imasim -h: exit %d, the exit codes missing:\n%s", rc, out)
	}
	readme := string(evReadFile(t, "../../README.md"))
	if !strings.Contains(readme, "```\n"+exitCodesHelp+"```\n") {
		t.Errorf("README.md does not show the exit codes as imasim -h does:\n%s", exitCodesHelp)
	}
}
