// Package evmctl runs `evmctl ima_measurement` (ima-evm-utils) on a
// measurement list and judges its output, so that tests can use evmctl as
// an external judge of the lists imasim produces.
//
// evmctl is lenient (it stops at the first entry where the PCRs match, and
// exits 0 when it read no PCRs), so its exit code alone says little; Judge
// applies the recipe of the project's docs/SPEC.md §6.2, with
// the per-PCR correction of docs/FINDINGS.md: exit code 0; "Matched per TPM
// bank calculated digest(s)." (or, for pre-5.8 lists, "Matched SHA1 padded
// TPM digest(s)."); for every bank, the last "succeed at entry N" at N
// equal to the number of records; no "Failed to verify template data
// digest".
//
// It follows evmctl 1.4 (Debian bookworm) and 1.6, whose ima_measurement
// reads only the SHA-1-column binary list, host byte order, and sha1 and
// sha256 PCR files.
package evmctl

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// Path returns the evmctl on PATH, or an error saying how to install it.
func Path() (string, error) {
	p, err := exec.LookPath("evmctl")
	if err != nil {
		return "", fmt.Errorf("evmctl not found (apt-get install ima-evm-utils): %w", err)
	}
	return p, nil
}

// Result is one run of evmctl ima_measurement.
type Result struct {
	// RC is the exit code.
	RC int
	// Stderr is everything evmctl printed (it prints only to stderr).
	Stderr string
}

// Run runs `evmctl -v ima_measurement [--ignore-violations] --pcrs
// ALG,FILE... LOG`, with pcrFiles given as "sha1,/path/to/file" (files in
// evmctl's format: "PCR-NN: hex" lines from PCR-00 on, as
// eventlog.AppendPCRFile writes them).
func Run(evmctl, logFile string, pcrFiles []string, ignoreViolations bool) (Result, error) {
	args := []string{"-v", "ima_measurement"}
	if ignoreViolations {
		args = append(args, "--ignore-violations")
	}
	for _, f := range pcrFiles {
		args = append(args, "--pcrs", f)
	}
	args = append(args, logFile)
	cmd := exec.Command(evmctl, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return Result{RC: ee.ExitCode(), Stderr: stderr.String()}, nil
	case err != nil:
		return Result{}, err
	}
	return Result{Stderr: stderr.String()}, nil
}

var succeedRE = regexp.MustCompile(`(?m)^(sha1|sha256) PCR-(\d+): succeed at entry (\d+)$`)

// LastSucceed returns, per bank ("sha1", "sha256"), the last entry number
// evmctl printed in a "succeed at entry N" line. With several PCRs evmctl
// prints "succeed" for a PCR that matches while another PCR of the bank
// does not yet, so a bank succeeds at the last one.
func (r Result) LastSucceed() map[string]int {
	last := map[string]int{}
	for _, m := range succeedRE.FindAllStringSubmatch(r.Stderr, -1) {
		n, _ := strconv.Atoi(m[3])
		last[m[1]] = max(last[m[1]], n)
	}
	return last
}

// Accepts reports whether the run passes the judge recipe for a list of
// records records (padded: a pre-5.8 list, matched as padded SHA-1).
func (r Result) Accepts(records int, padded bool) bool {
	matched := "Matched per TPM bank calculated digest(s)."
	if padded {
		matched = "Matched SHA1 padded TPM digest(s)."
	}
	if r.RC != 0 || !bytes.Contains([]byte(r.Stderr), []byte(matched)) ||
		bytes.Contains([]byte(r.Stderr), []byte("Failed to verify template data digest")) {
		return false
	}
	last := r.LastSucceed()
	return last["sha1"] == records && last["sha256"] == records
}
