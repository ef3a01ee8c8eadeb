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
