package harness

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	flagSeeds = flag.Int("harness.seeds", 0, "number of seeded sequences TestSystemSeeded runs (0: 5000, 300 with -short)")
	flagSeed  = flag.Int64("harness.seed", -1, "run only this seed in TestSystemSeeded, printing its script")
)

// storeDir returns a new directory for collector stores, on tmpfs when the
// machine has one (the store fsyncs every batch), removed at the end.
func storeDir(t testing.TB) string {
	t.Helper()
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "imasim-harness-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// seqLength is the number of operations of seeded sequence seed: 10 to 90.
func seqLength(seed uint64) int { return 10 + int(seed*7919%81) }

// runSeed runs one seeded sequence; on a mismatch it fails the test with
// the script and the fuzz input that replays it.
func runSeed(t *testing.T, base string, seed uint64, stats, known map[string]int) int {
	src := newRandSource(seed)
	dir := filepath.Join(base, fmt.Sprint(seed))
	s, err := runSequence(src, dir, seqLength(seed))
	defer os.RemoveAll(dir)
	if err != nil {
		script := "(no script: the system did not boot)"
		if s != nil {
			s.script.input = src.bytes
			script = s.script.String()
		}
		t.Fatalf("seed %d: %v\n%s", seed, err, script)
	}
	if *flagSeed >= 0 {
		t.Logf("seed %d:\n%s", seed, s.script.String())
	}
	for _, l := range s.script.lines {
		if o := outcome(l); o != "" && stats != nil {
			stats[o]++
		}
	}
	for k, v := range s.m.knownBugs {
		known[k] += v
	}
	return s.ops
}

// TestSystemSeeded runs thousands of seeded sequences (a few hundred under
// -short) against the model and the system.
func TestSystemSeeded(t *testing.T) {
	base := storeDir(t)
	if *flagSeed >= 0 {
		runSeed(t, base, uint64(*flagSeed), nil, map[string]int{})
		return
	}
	n := 5000
	if testing.Short() {
		n = 300
	}
	if *flagSeeds > 0 {
		n = *flagSeeds
	}
	start := time.Now()
	ops := 0
	stats, known := map[string]int{}, map[string]int{}
	for seed := range uint64(n) {
		ops += runSeed(t, base, seed, stats, known)
	}
	t.Logf("%d sequences, %d operations, %v", n, ops, time.Since(start).Round(time.Millisecond))
	for k, v := range known {
		t.Logf("known bug or limitation met %d times: %s", v, k)
	}
	if *flagStats {
		logStats(t, stats)
	}
}

// recordSequence returns the fuzz input of seeded sequence seed, without
// running it.
func recordSequence(seed uint64) []byte {
	src := newRandSource(seed)
	genConfig(src)
	for range seqLength(seed) {
		genOp(src)
	}
	return src.bytes
}

// FuzzSystem decodes a configuration and a sequence of operations from the
// fuzzer's bytes and checks it as TestSystemSeeded does.
func FuzzSystem(f *testing.F) {
	for seed := range uint64(16) {
		f.Add(recordSequence(seed))
	}
	base := storeDir(f)
	var n int
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		dir := filepath.Join(base, fmt.Sprintf("%d-%d", os.Getpid(), n))
		defer os.RemoveAll(dir)
		s, err := runSequence(newByteSource(data), dir, 300)
		if err != nil {
			script := "(no script)"
			if s != nil {
				s.script.input = data
				script = s.script.String()
			}
			t.Fatalf("%v\n%s", err, script)
		}
	})
}

var flagStats = flag.Bool("harness.stats", false, "log a histogram of operation outcomes in TestSystemSeeded")

// outcome classifies a script line as "verb -> result" for the histogram.
func outcome(line string) string {
	verb, result, ok := strings.Cut(line, " -> ")
	if !ok {
		if strings.HasPrefix(line, "kexec") || strings.HasPrefix(line, "reboot") {
			return line
		}
		return ""
	}
	if _, v, ok := strings.Cut(verb, ": "); ok && strings.HasPrefix(verb, "as ") || strings.HasPrefix(verb, "fd") {
		verb = v
	}
	fields := strings.Fields(verb)
	switch {
	case len(fields) == 0:
	case fields[0] == "write" || fields[0] == "echo":
		data, _ := strconv.Unquote(strings.SplitN(strings.TrimPrefix(strings.TrimPrefix(verb, "write "), "echo "), " > ", 2)[0])
		class := "junk"
		switch {
		case data == "A\n" || data == "D\n":
			class = strings.TrimSpace(data)
		case len(data) > 0 && data[0] >= '0' && data[0] <= '9':
			class = "N"
		}
		verb = fields[0] + " " + class
	case fields[0] == "measure" || fields[0] == "collector" || fields[0] == "kexec" || fields[0] == "open" || fields[0] == "cat":
		verb = strings.Join(fields[:min(2, len(fields))], " ")
		if fields[0] == "open" {
			verb = "open " + fields[len(fields)-1]
		}
	default:
		verb = fields[0]
	}
	result = regexp.MustCompile(`[0-9]+`).ReplaceAllString(result, "n")
	return verb + " -> " + result
}

func logStats(t *testing.T, stats map[string]int) {
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%7d  %s\n", stats[k], k)
	}
	t.Logf("outcomes:\n%s", b.String())
}

// TestReplayInput checks that the bytes a seeded sequence records replay,
// through the fuzz target's decoder, the same sequence with the same
// results: the replay hint a failing seed prints is exact.
func TestReplayInput(t *testing.T) {
	base := storeDir(t)
	for _, seed := range []uint64{2, 20, 155, 310} {
		src := newRandSource(seed)
		s1, err := runSequence(src, filepath.Join(base, fmt.Sprintf("r%d", seed)), seqLength(seed))
		if err != nil {
			t.Fatal(err)
		}
		s2, err := runSequence(newByteSource(src.bytes), filepath.Join(base, fmt.Sprintf("b%d", seed)), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := s1.script.String(), s2.script.String(); a != b {
			t.Fatalf("seed %d: the recorded input replays another sequence:\n%s\n---\n%s", seed, a, b)
		}
	}
}
