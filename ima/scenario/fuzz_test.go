package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedFuzz adds the testdata scripts and a few hand-written fragments.
func seedFuzz(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	for _, s := range []string{
		"",
		"boot\n",
		"> x\n",
		"boot\necho A > binary_runtime_measurements_staged\n! EINVAL\n",
		"boot\nas 2:uid=0,nocap,cap=sys_admin old echo 'a\\\"b' >> x\n",
		"boot pagesize=16\nmeasure /a a\nopen 3 binary_runtime_measurements r\nread 3 7\nseek 3 5\nread 3\n",
		"boot\nopen 3 binary_runtime_measurements_staged rw\nwrite 3 '5\\0junk\\n'\nkexec\nwrite 3 'D\\n'\nas 9 close 3\n",
		"printf '%s%b%d%%\\x4\\0101' a 'b\\n' 3\n",
		"echo \"unterminated\n",
		"boot\r\ncat violations\r\n> 0\r\n",
	} {
		f.Add(s)
	}
}

// FuzzParse checks that Parse never panics, and that its errors are
// *Error values naming a line of the input.
func FuzzParse(f *testing.F) {
	seedFuzz(f)
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse("fuzz.txt", []byte(src))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %v (%T) is not an *Error", err, err)
			}
			if n := strings.Count(src, "\n") + 1; e.Line < 1 || e.Line > n {
				t.Fatalf("error at line %d of a %d-line input: %v", e.Line, n, err)
			}
			return
		}
		if s.Len() > strings.Count(src, "\n")+1 {
			t.Fatalf("%d commands in %d lines", s.Len(), strings.Count(src, "\n")+1)
		}
	})
}

// FuzzRun runs whatever parses (up to 64 commands) and checks that the
// machine and the simulated kernel never panic: a script either runs or
// stops with an *Error at one of its lines.
func FuzzRun(f *testing.F) {
	seedFuzz(f)
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse("fuzz.txt", []byte(src))
		if err != nil || s.Len() > 64 {
			return
		}
		if _, err := s.Update(); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 {
				t.Fatalf("Update error %v (%T) is not an *Error at a line", err, err)
			}
		}
	})
}
