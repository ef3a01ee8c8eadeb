package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const base = `# a comment
boot banks=sha1
measure /usr/bin/a a
cat binary_runtime_measurements
> 10 ima-ng boot_aggregate
> 10 ima-ng /usr/bin/a
`

// TestMismatch checks that a wrong expectation fails the script at the
// right line, saying what was expected and what happened, and that the
// transcript stops after that command.
func TestMismatch(t *testing.T) {
	tests := []struct {
		name    string
		tail    string
		line    int
		wantErr syscall.Errno
		gotErr  syscall.Errno
		msg     []string
	}{
		{"wrong output", "cat runtime_measurements_count\n> 3\n", 7, 0, 0,
			[]string{"output differs", "\twant:\n\t> 3\n\tgot:\n\t> 2"}},
		{"missing output", "cat runtime_measurements_count\n", 7, 0, 0,
			[]string{"output differs", "\t(nothing)\n\tgot:\n\t> 2"}},
		{"extra output", "echo D > binary_runtime_measurements_staged\n! ENOENT\nmeasure /b b\n> added\n", 9, 0, 0,
			[]string{"output differs", "want:\n\t> added\n\tgot:\n\t(nothing)"}},
		{"wrong errno", "echo D > binary_runtime_measurements_staged\n! EBUSY\n", 7, syscall.EBUSY, syscall.ENOENT,
			[]string{"want EBUSY, got ENOENT", "no such file or directory"}},
		{"unexpected failure", "echo D > binary_runtime_measurements_staged\n", 7, 0, syscall.ENOENT,
			[]string{"want success, got ENOENT"}},
		{"unexpected success", "echo A > binary_runtime_measurements_staged\n! EEXIST\n", 7, syscall.EEXIST, 0,
			[]string{"want EEXIST, got success"}},
		{"errno and output", "cat binary_runtime_measurements_staged\n> x\n! EBUSY\n", 7, syscall.EBUSY, 0,
			[]string{"want EBUSY, got success; output differs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.tail + "cat violations\n> 0\n"
			s, err := Parse("m.txt", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			var tr strings.Builder
			err = s.Run(&tr)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Run = %v, want an *Error", err)
			}
			if e.Line != tt.line || e.WantErr != tt.wantErr || e.GotErr != tt.gotErr {
				t.Errorf("error at line %d want %v got %v; want line %d, want %v got %v\n%v",
					e.Line, e.WantErr, e.GotErr, tt.line, tt.wantErr, tt.gotErr, err)
			}
			prefix := "m.txt:" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if strings.Contains(tr.String(), "cat violations") {
				t.Errorf("the transcript goes on after the failing command:\n%s", tr.String())
			}
		})
	}
}

// TestRuntimeErrors checks commands that cannot run: they stop the script
// with an *Error at their line, not an errno outcome.
func TestRuntimeErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"before boot", "# nothing\ncat violations\n", 2, "must boot first"},
		{"old before kexec", "boot\nold cat violations\n", 2, "no previous kernel"},
		{"fd open twice", "boot\nopen 3 violations r\nopen 3 violations r\n", 3, "already open"},
		{"discard without save", "boot\ndiscard\n", 2, "nothing saved"},
		{"save too many", "boot\nsave 5\n", 2, "only 1 record"},
		{"pcr without TPM", "boot banks=none\npcr\n", 2, "no TPM"},
		{"replay without TPM", "boot banks=none\nreplay\n", 2, "no TPM"},
		{"pcr bank not in TPM", "boot banks=sha1\npcr 10 sha256\n", 2, "pcr 10 sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("r.txt", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			err = s.Run(nil)
			var e *Error
			if !errors.As(err, &e) || e.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Run = %v, want an error at r.txt:%d mentioning %q", err, tt.line, tt.msg)
			}
		})
	}
}

// TestEBADF checks that an fd that is not open is EBADF, as in a shell.
func TestEBADF(t *testing.T) {
	src := "boot\nread 3\n! EBADF\nwrite 4 'A\\n'\n! EBADF\nseek 5 0\n! EBADF\nclose 6\n! EBADF\n"
	s, err := Parse("b.txt", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(nil); err != nil {
		t.Fatal(err)
	}
}

// TestTranscript checks that the transcript of a passing script is the
// script itself (modulo trailing blanks and a final newline).
func TestTranscript(t *testing.T) {
	for _, path := range scripts(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Parse(path, src)
		if err != nil {
			t.Fatal(err)
		}
		var tr strings.Builder
		if err := s.Run(&tr); err != nil {
			t.Fatal(err)
		}
		if got, want := tr.String(), normalize(string(src)); got != want {
			t.Errorf("%s: the transcript differs from the script:\n%s", path, firstDiff(want, got))
		}
	}
}

// TestUpdate checks that Update, given a script with its expectations
// stripped, writes back the script: Run and Update agree, and a reviewer
// can generate the expectations of a new case.
func TestUpdate(t *testing.T) {
	for _, path := range scripts(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var bare []string
		for _, l := range strings.Split(string(src), "\n") {
			if l := strings.TrimSpace(l); strings.HasPrefix(l, ">") || strings.HasPrefix(l, "!") {
				continue
			}
			bare = append(bare, l)
		}
		s, err := Parse(path, []byte(strings.Join(bare, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Update()
		if err != nil {
			t.Fatal(err)
		}
		if want := normalize(string(src)); string(got) != want {
			t.Errorf("%s: Update of the bare script differs from the script:\n%s", path, firstDiff(want, string(got)))
		}
	}
}

// TestUpdateMismatch checks that Update replaces wrong expectations
// instead of stopping, and stops at a command that cannot run.
func TestUpdateMismatch(t *testing.T) {
	s, err := Parse("u.txt", []byte("boot\ncat runtime_measurements_count\n> 7\n! EBUSY\necho A > binary_runtime_measurements_staged\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Update()
	if err != nil {
		t.Fatal(err)
	}
	if want := "boot\ncat runtime_measurements_count\n> 1\necho A > binary_runtime_measurements_staged\n"; string(got) != want {
		t.Errorf("Update = %q, want %q", got, want)
	}
	s, _ = Parse("u.txt", []byte("boot\nold ls\nls\n"))
	got, err = s.Update()
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || string(got) != "boot\nold ls\n" {
		t.Errorf("Update = %q, %v; want the text up to line 2 and an error there", got, err)
	}
}

func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.txt")
	if err := os.WriteFile(path, []byte("boot\ncat runtime_measurements_count\n> 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := RunFile(path, nil)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("RunFile = %v, want a mismatch at %s:2", err, path)
	}
	if err := RunFile(filepath.Join(dir, "missing.txt"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("RunFile(missing) = %v, want ErrNotExist", err)
	}
}

func scripts(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/ (%v)", err)
	}
	return files
}

func normalize(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.Join(lines, "\n") + "\n"
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n\twant " + a + "\n\tgot  " + b
		}
	}
	return "(no difference)"
}
