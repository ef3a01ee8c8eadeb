package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/eventlog/evmctl"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestExportAcceptedByEvmctl runs `imasim export` in the configurations
// issue 7 names and has evmctl judge each whole log since boot against the
// TPM's final PCRs: rc 0, "Matched per TPM bank", "succeed at entry N" with
// N the record count for both banks. The same seed gives the same log
// whatever the flavour and interval.
func TestExportAcceptedByEvmctl(t *testing.T) {
	path, err := evmctl.Path()
	if err != nil {
		t.Skipf("%v; .ci/run installs it", err)
	}
	records := "1500"
	if testing.Short() {
		records = "400"
	}
	for _, tc := range []struct {
		name       string
		args       []string
		violations bool
	}{
		{"no staging", []string{"--flavour", "none"}, false},
		{"prompt every 100", []string{"--flavour", "prompt", "--stage-every", "100"}, false},
		{"N every 100", []string{"--flavour", "n", "--stage-every", "100"}, false},
		{"both, violations", []string{"--flavour", "both", "--stage-every", "70", "--violations", "9"}, true},
		{"kexec between A and D", []string{"--flavour", "prompt", "--stage-every", "100", "--kexec-after", "250", "--violations", "3"}, true},
		{"N, kexec", []string{"--flavour", "n", "--stage-every", "100", "--kexec-after", "250"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"export", "-q", "--dir", dir, "--records", records, "--seed", "11"}, tc.args...)
			var stderr bytes.Buffer
			require.Equal(t, 0, run(args, io.Discard, &stderr), "imasim %v: %s", args, stderr.String())
			logFile := filepath.Join(dir, "binary_runtime_measurements")
			data, err := os.ReadFile(logFile)
			require.NoError(t, err)
			el, err := eventlog.ParseEventLog(data, eventlog.Options{})
			require.NoError(t, err)
			res, err := evmctl.Run(path, logFile, []string{
				"sha1," + filepath.Join(dir, "pcrs-sha1.txt"),
				"sha256," + filepath.Join(dir, "pcrs-sha256.txt"),
			}, tc.violations)
			require.NoError(t, err)
			require.True(t, res.Accepts(el.Len(), false), "evmctl does not accept the export of %d records: rc %d, last succeed %v\n%s",
				el.Len(), res.RC, res.LastSucceed(), tail(res.Stderr, 600))
		})
	}
}

// TestExportSameLogWhateverTheFlavour: for one seed and workload, every
// flavour and staging interval export the same bytes.
func TestExportSameLogWhateverTheFlavour(t *testing.T) {
	var want []byte
	for _, flavour := range [][]string{{"--flavour", "none"}, {"--flavour", "prompt", "--stage-every", "37"}, {"--flavour", "n", "--stage-every", "50"}, {"--flavour", "both", "--stage-every", "23"}} {
		dir := t.TempDir()
		args := append([]string{"export", "-q", "--dir", dir, "--records", "300", "--violations", "4", "--kexec-after", "120", "--seed", "5"}, flavour...)
		require.Equal(t, 0, run(args, io.Discard, io.Discard), "%v", args)
		got, err := os.ReadFile(filepath.Join(dir, "binary_runtime_measurements"))
		require.NoError(t, err)
		if want == nil {
			want = got
		}
		require.Equal(t, want, got, "flavour %v: the log differs (%d vs %d bytes)", flavour, len(got), len(want))
	}
	require.NotEmpty(t, want)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// TestExportKernelMirrorsSecurityFS: export's kernel/ holds every entry of
// the kernel's securityfs directory, files with their permission bits and
// contents, symlinks with their targets.
func TestExportKernelMirrorsSecurityFS(t *testing.T) {
	dir := t.TempDir()
	require.Equal(t, 0, run([]string{"export", "-q", "--dir", dir, "--records", "30", "--stage-every", "10"}, io.Discard, io.Discard))
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true})
	require.NoError(t, err)
	want := k.SecurityFS().ReadDir()
	got, err := os.ReadDir(filepath.Join(dir, "kernel"))
	require.NoError(t, err)
	require.Len(t, got, len(want))
	links := 0
	for i, e := range want {
		require.Equal(t, e.Name, got[i].Name())
		path := filepath.Join(dir, "kernel", e.Name)
		st, err := os.Lstat(path)
		require.NoError(t, err)
		if e.Target != "" {
			links++
			target, err := os.Readlink(path)
			require.NoError(t, err, e.Name)
			require.Equal(t, e.Target, target, e.Name)
			continue
		}
		require.Equal(t, e.Mode.Perm(), st.Mode().Perm(), e.Name)
	}
	require.NotZero(t, links, "the kernel has no symlinks to mirror")
	count, err := os.ReadFile(filepath.Join(dir, "kernel", "runtime_measurements_count"))
	require.NoError(t, err)
	require.Regexp(t, `^[0-9]+\n$`, string(count))
}
