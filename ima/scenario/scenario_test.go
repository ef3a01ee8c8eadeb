package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScripts runs every script in testdata/. On a failure the transcript
// shows what each command printed up to the mismatch.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(path, src)
			if err != nil {
				t.Fatal(err)
			}
			var transcript strings.Builder
			if err := s.Run(&transcript); err != nil {
				t.Fatalf("%v\n\ntranscript:\n%s", err, transcript.String())
			}
		})
	}
}
