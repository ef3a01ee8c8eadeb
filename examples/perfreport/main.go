// Command perfreport runs the project's benchmarks as subprocesses and
// writes docs/PERFORMANCE.md and the plots under docs/perf/: every figure
// next to its floor or peer measured in the same run, as a ratio, and the
// modelled kernel memory that staging frees.
//
// From the module root:
//
//	go run ./examples/perfreport            # full run, a few minutes
//	go run ./examples/perfreport -quick     # smoke run: 1x benchtimes, small sizes
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

type config struct {
	root, out, pngDir string
	quick             bool
}

func main() {
	var c config
	flag.StringVar(&c.root, "root", ".", "module root (where go.mod is)")
	flag.StringVar(&c.out, "out", "docs/PERFORMANCE.md", "report path, relative to -root unless absolute")
	flag.StringVar(&c.pngDir, "png", "docs/perf", "plot directory, relative to -root unless absolute")
	flag.BoolVar(&c.quick, "quick", false, "smoke run: every benchmark once, small sizes (figures mean little)")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "perfreport:", err)
		os.Exit(1)
	}
}

func abspath(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

type report struct {
	bytes.Buffer
}

func (r *report) f(format string, args ...any) { fmt.Fprintf(&r.Buffer, format, args...) }

func run(c config) error {
	start := time.Now()
	if _, err := os.Stat(filepath.Join(c.root, "go.mod")); err != nil {
		return fmt.Errorf("-root %s: %w", c.root, err)
	}
	out, pngDir := abspath(c.root, c.out), abspath(c.root, c.pngDir)
	if err := os.MkdirAll(pngDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(out), pngDir)
	if err != nil {
		rel = pngDir
	}
	rel = filepath.ToSlash(rel)

	// Benchtimes: the default (1s) where the benchmark's own loop makes
	// the figure (Add, TemplateDigest, Decode, Verify), a fixed count
	// where each iteration takes several samples and reports medians.
	bt := func(full string) string {
		if c.quick {
			return "1x"
		}
		return full
	}
	lockPattern := "^BenchmarkLockHold$"
	releasePattern := "^BenchmarkAddDuringRelease$"
	evmRecords, evmRounds := "100000", "7"
	memN, memK := 20000, 1000
	if c.quick {
		lockPattern = "^BenchmarkLockHold$/^op=/^records=(1000|10000)$"
		releasePattern = "^BenchmarkAddDuringRelease$/^tpm=none$/^op=D$"
		evmRecords, evmRounds = "2000", "1"
		memN, memK = 2000, 100
	}
	env := machine(c.root)

	add, addErr := runBench(c.root, "./measlist/", "^BenchmarkAdd$", bt(""))
	lock, lockErr := runBench(c.root, "./measlist/", lockPattern, bt("5x"))
	rel2, relErr := runBench(c.root, "./measlist/", releasePattern, bt("5x"))
	mem, memErr := runBench(c.root, "./measlist/", "^BenchmarkMemory$", "1x")
	tdig, tdigErr := runBench(c.root, "./ima/template/", "^(BenchmarkTemplateDigest|BenchmarkDecode|BenchmarkDecoder)$", bt(""))
	var ver *benchRun
	var verErr error
	if hasBenchmark(c.root, "ima/eventlog", "BenchmarkVerify") {
		ver, verErr = runBench(c.root, "./ima/eventlog/", "^BenchmarkVerify$", bt(""))
	}
	evm, evmErr := compareEvmctl(c.root, evmRecords, evmRounds)

	fps, err := footprints()
	if err != nil {
		return fmt.Errorf("kernel footprints: %w", err)
	}
	var memRuns []*memRun
	for _, v := range []struct {
		name         string
		stage, flush bool
	}{
		{"no staging", false, false},
		{fmt.Sprintf("A+D every %d, no flush", memK), true, false},
		{fmt.Sprintf("A+D every %d, ima_flush_htable", memK), true, true},
	} {
		logf("kernel memory over time: %s", v.name)
		m, err := memoryOverTime(memN, memK, v.stage, v.flush)
		if err != nil {
			return fmt.Errorf("kernel memory over time (%s): %w", v.name, err)
		}
		m.Name = v.name
		memRuns = append(memRuns, m)
	}

	// Plots.
	lockPNG, memPNG := "lockhold.png", "kernel-memory.png"
	if err := lockChart(lock).save(filepath.Join(pngDir, lockPNG)); err != nil {
		return err
	}
	if err := memChart(memRuns, memN, memK).save(filepath.Join(pngDir, memPNG)); err != nil {
		return err
	}

	// The report.
	var r report
	cmd := "go run ./examples/perfreport"
	if c.quick {
		cmd += " -quick"
	}
	r.f("# Performance\n\n")
	r.f("<!-- Generated file: do not edit. Regenerate with `%s` from the module root. -->\n\n", cmd)
	r.f("**Generated** by `%s` (examples/perfreport) on %s, from the project's own benchmarks run as subprocesses in this one run; every figure below is parsed from their output, none is typed by hand.", cmd, start.UTC().Format("2006-01-02 15:04 MST"))
	if c.quick {
		r.f(" **This is a -quick smoke run: every benchmark ran once with small sizes; its figures mean little.**")
	}
	r.f("\n\nMachine: %s; GOMAXPROCS %d; `nproc` %s; CPU %s (go test reports %q); load average at start %s. The machine is shared, so timings are noisy: ratios against a floor measured in the same run are the figures to read.\n\n",
		env.goVersion, runtime.GOMAXPROCS(0), env.nproc, env.cpuModel, firstCPU(add, lock, tdig), env.load)

	r.f("## Summary\n\n| figure | measured | floor or peer | ratio | target |\n|---|---|---|---|---|\n")
	summary(&r, add, lock, rel2, mem, tdig, evm, fps)

	r.f("\n## Add path against the hashing floor\n\n")
	secAdd(&r, add, addErr)
	r.f("\n## Lock hold of A, D and N against list size\n\n")
	secLock(&r, lock, lockErr, rel+"/"+lockPNG)
	r.f("\n## Adders' throughput while records are released\n\n")
	secRelease(&r, rel2, relErr)
	r.f("\n## Memory per record: Go heap against the kernel's footprint\n\n")
	secMemory(&r, mem, memErr)
	r.f("\n## Kernel memory that staging frees\n\n")
	secFootprints(&r, fps)
	r.f("\n## Kernel memory over time\n\n")
	secMemOverTime(&r, memRuns, memN, memK, rel+"/"+memPNG)
	r.f("\n## Template digest and decoding\n\n")
	secTemplate(&r, tdig, tdigErr)
	r.f("\n## Verification against evmctl\n\n")
	secVerify(&r, evm, evmErr, ver, verErr)
	r.f("\n## How to regenerate\n\n```\n%s\n```\n\nfrom the module root (`-quick` for a smoke run in well under a minute). It runs, one after another:\n\n", "go run ./examples/perfreport")
	for _, br := range []*benchRun{add, lock, rel2, mem, tdig, ver} {
		if br != nil {
			r.f("- `%s` (%.0f s)\n", br.cmdline(), br.Elapsed.Seconds())
		}
	}
	r.f("- `scripts/compare-evmctl.sh %s %s`\n", evmRecords, evmRounds)
	r.f("- the kernel-memory model (measlist.RecordFootprint) and a %d-measurement run through the public API (ima.New, Kernel.Measure, staging.WriteFile), in process.\n", memN)
	r.f("\nTotal generator run time: %.0f s.\n", time.Since(start).Seconds())

	old, _ := os.ReadFile(out)
	if err := os.WriteFile(out, keepHandWritten(r.Bytes(), old), 0o644); err != nil {
		return err
	}
	logf("wrote %s and %s/{%s,%s} in %s", out, pngDir, lockPNG, memPNG, time.Since(start).Round(time.Second))
	return nil
}

// handWritten marks the start of the sections of docs/PERFORMANCE.md that
// are not generated (figures measured once, by hand, with the command they
// name); a regeneration keeps them as they are.
const handWritten = "<!-- Hand-written sections follow: not generated; perfreport keeps them as they are. -->"

// keepHandWritten appends to the generated report whatever the previous
// report had from the handWritten marker on.
func keepHandWritten(report, old []byte) []byte {
	i := bytes.Index(old, []byte(handWritten))
	if i < 0 {
		return report
	}
	return append(append(report, '\n'), old[i:]...)
}

type env struct{ goVersion, nproc, cpuModel, load string }

func machine(root string) env {
	e := env{goVersion: "?", nproc: "?", cpuModel: "?", load: "?"}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		e.goVersion = "`" + strings.TrimSpace(string(out)) + "`"
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		e.nproc = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.*)$`).FindSubmatch(b); m != nil {
			e.cpuModel = fmt.Sprintf("%q (/proc/cpuinfo)", strings.TrimSpace(string(m[1])))
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return e
}

func firstCPU(brs ...*benchRun) string {
	for _, br := range brs {
		if br != nil && br.CPU != "" {
			return br.CPU
		}
	}
	return "?"
}

// hasBenchmark says whether dir's test files declare func name.
func hasBenchmark(root, dir, name string) bool {
	files, _ := filepath.Glob(filepath.Join(root, dir, "*_test.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte("func "+name+"(")) {
			return true
		}
	}
	return false
}
