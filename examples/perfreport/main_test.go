package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickReport runs the generator with -quick into a temporary
// directory (about half a minute: it runs every benchmark once) and checks
// that the report has every section and that the plots decode.
func TestQuickReport(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark once as a subprocess (about 30 s)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "PERFORMANCE.md")
	pngDir := filepath.Join(dir, "perf")
	if err := run(config{root: "../..", out: out, pngDir: pngDir, quick: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	for _, want := range []string{
		"Generated", "GOMAXPROCS", "nproc", "CPU",
		"## Summary",
		"## Add path against the hashing floor",
		"## Lock hold of A, D and N against list size",
		"## Adders' throughput while records are released",
		"## Memory per record: Go heap against the kernel's footprint",
		"## Kernel memory that staging frees",
		"| ima-sig | sha1+sha256+sha384+sha512 |",
		"## Kernel memory over time",
		"## Template digest and decoding",
		"## Verification against evmctl",
		"## How to regenerate",
		"](perf/lockhold.png)", "](perf/kernel-memory.png)",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(report, "not measured: go test") {
		t.Errorf("a benchmark run failed:\n%s", report)
	}
	for _, name := range []string{"lockhold.png", "kernel-memory.png"} {
		f, err := os.Open(filepath.Join(pngDir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
			t.Errorf("%s: %v, too small", name, b)
		}
	}
}

// TestKeepHandWritten: a regeneration keeps the hand-written sections after
// the marker, and a report without the marker is written as generated.
func TestKeepHandWritten(t *testing.T) {
	gen := []byte("# Performance\n\nnew figures\n")
	tail := handWritten + "\n\n## By hand\n\nmeasured once\n"
	old := []byte("# Performance\n\nold figures\n\n" + tail)
	if got, want := string(keepHandWritten(gen, old)), string(gen)+"\n"+tail; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := string(keepHandWritten(gen, []byte("# Performance\n\nold figures\n"))); got != string(gen) {
		t.Errorf("without the marker: got %q, want the generated report", got)
	}
}
