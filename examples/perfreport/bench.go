package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark line of `go test -bench` output: the name
// without the -GOMAXPROCS suffix, the iteration count, and every value
// with its unit (ns/op, B/op, and the b.ReportMetric units).
type result struct {
	Name    string
	N       int
	Metrics map[string]float64
}

// benchRun is one `go test -bench` subprocess and what it printed.
type benchRun struct {
	Pkg, Pattern, Benchtime string
	Results                 []result
	CPU                     string // the "cpu:" line go test prints
	Elapsed                 time.Duration
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads the standard benchmark lines: "BenchmarkX/sub-2  N
// v1 unit1 v2 unit2 ...".
func parseBench(out []byte) (rs []result, cpu string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = strings.TrimSpace(c)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		r := result{Name: procSuffix.ReplaceAllString(f[0], ""), N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			r.Metrics[f[i+1]] = v
		}
		rs = append(rs, r)
	}
	return rs, cpu
}

// runBench runs the benchmarks matching pattern in pkg (relative to the
// module root) with the given benchtime ("" for the default), as a
// subprocess, and parses its output.
func runBench(root, pkg, pattern, benchtime string) (*benchRun, error) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-timeout", "30m"}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	args = append(args, pkg)
	logf("go %s", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	br := &benchRun{Pkg: pkg, Pattern: pattern, Benchtime: benchtime, Elapsed: time.Since(start)}
	if err != nil {
		return br, fmt.Errorf("go test -bench %s %s: %v\n%s", pattern, pkg, err, out)
	}
	br.Results, br.CPU = parseBench(out)
	if len(br.Results) == 0 {
		return br, fmt.Errorf("go test -bench %s %s: no benchmark lines in\n%s", pattern, pkg, out)
	}
	return br, nil
}

// get returns the result named name (without the -GOMAXPROCS suffix).
func (br *benchRun) get(name string) (result, bool) {
	if br == nil {
		return result{}, false
	}
	for _, r := range br.Results {
		if r.Name == name {
			return r, true
		}
	}
	return result{}, false
}

// cmdline is how the run is reproduced by hand.
func (br *benchRun) cmdline() string {
	s := fmt.Sprintf("go test -run '^$' -bench '%s'", br.Pattern)
	if br.Benchtime != "" {
		s += " -benchtime " + br.Benchtime
	}
	return s + " " + br.Pkg
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "perfreport: "+format+"\n", args...)
}
