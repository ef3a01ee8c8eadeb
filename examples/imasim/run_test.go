package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"run"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRunScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "ima", "scenario", "testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario scripts (%v)", err)
	}
	code, out, errOut := runCmd(t, files...)
	if code != 0 {
		t.Fatalf("imasim run = %d\n%s%s", code, out, errOut)
	}
	if got := strings.Count(out, "PASS "); got != len(files) {
		t.Errorf("%d PASS lines for %d files:\n%s", got, len(files), out)
	}
}

func TestRunFailure(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(good, []byte("boot\ncat runtime_measurements_count\n> 1\n"), 0o644)
	os.WriteFile(bad, []byte("boot\n\necho D > binary_runtime_measurements_staged\n"), 0o644)
	code, out, _ := runCmd(t, good, bad)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, want := range []string{"PASS " + good, "FAIL " + bad, bad + ":3: echo D > binary_runtime_measurements_staged: want success, got ENOENT"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
}

func TestRunVerbose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.txt")
	os.WriteFile(path, []byte("# hello\nboot\ncat runtime_measurements_count\n> 1\n"), 0o644)
	code, out, _ := runCmd(t, "-v", path)
	if code != 0 {
		t.Fatalf("exit status %d:\n%s", code, out)
	}
	want := "=== " + path + "\n# hello\nboot\ncat runtime_measurements_count\n> 1\nPASS " + path + " (2 commands)\n"
	if out != want {
		t.Errorf("output = %q, want %q", out, want)
	}
}

func TestRunUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u.txt")
	os.WriteFile(path, []byte("boot\nmeasure /a a\ncat binary_runtime_measurements\n> wrong\necho A > binary_runtime_measurements\n"), 0o644)
	code, out, _ := runCmd(t, "-update", path)
	if code != 0 {
		t.Fatalf("exit status %d:\n%s", code, out)
	}
	got, _ := os.ReadFile(path)
	want := "boot\nmeasure /a a\ncat binary_runtime_measurements\n> 10 ima-ng boot_aggregate\n> 10 ima-ng /a\necho A > binary_runtime_measurements\n! EINVAL\n"
	if string(got) != want {
		t.Errorf("rewritten file = %q, want %q", got, want)
	}
	if code, out, _ := runCmd(t, path); code != 0 {
		t.Errorf("the rewritten file fails:\n%s", out)
	}
}

func TestRunUsage(t *testing.T) {
	if code, _, errOut := runCmd(t); code != 2 || !strings.Contains(errOut, "imasim run: no FILE given") {
		t.Errorf("no files: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ := runCmd(t, "-h"); code != 0 || !strings.Contains(out, "! ERRNO") {
		t.Errorf("-h: exit %d, stdout %q", code, out)
	}
	if code, out, _ := runCmd(t, filepath.Join(t.TempDir(), "missing.txt")); code != 2 || !strings.Contains(out, "FAIL") {
		t.Errorf("missing file: exit %d, output %q", code, out)
	}
}
