package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
	"github.com/imasim/imasim/tpmext/swtpmtest"
	"github.com/stretchr/testify/require"
)

// tpm2Tool runs a tpm2-tools command on srv in dir and returns its output;
// transient objects are flushed afterwards, as nothing manages them
// between tpm2-tools runs on a bare swtpm.
func tpm2Tool(t *testing.T, srv *swtpmtest.Server, dir string, args ...string) string {
	t.Helper()
	run := func(args ...string) string {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+srv.TCTI())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	out := run(args...)
	run("tpm2_flushcontext", "-t")
	run("tpm2_flushcontext", "-s")
	return out
}

// TestRoundTripTPM2Tools is the attestation an agent does against the TPM
// the simulated kernel extends: the kernel measures on swtpm with staging
// cycles (both flavours) and a kexec; tpm2_pcrread shows PCR 10 of every
// bank at the replay of the whole log since boot; tpm2_createek,
// tpm2_createak and tpm2_quote make quotes of PCR 10 with a nonce (ECDSA,
// RSASSA and RSAPSS keys), which tpm2_checkquote accepts; after more measurements, imasim verify --quote
// accepts the collector's whole log and reports the N records the quote
// covers.
func TestRoundTripTPM2Tools(t *testing.T) {
	for _, tool := range []string{"tpm2_pcrread", "tpm2_createek", "tpm2_createak", "tpm2_quote", "tpm2_checkquote", "tpm2_flushcontext"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install tpm2-tools)", tool)
		}
	}
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	srv := swtpmtest.Start(t, "sha1", "sha256")
	dir := t.TempDir()
	w := &workload{
		Records: 600, Flavour: "both", StageEvery: 50, Banks: banks, Template: "ima-ng",
		Violations: 10, KexecAfter: 300, Seed: 3, TPMKind: srv.Spec(), StoreDir: filepath.Join(dir, "store"),
	}
	require.NoError(t, w.run())
	defer w.tpm.Close()
	defer w.coll.Close()
	require.Positive(t, w.stats.cycles)
	require.Positive(t, w.stats.saved)
	require.Equal(t, 1, w.stats.kexecs)

	wholeLog := func() ([]byte, int) {
		var b bytes.Buffer
		n, err := w.coll.WriteLog(&b, 0, collector.Binary, w.kernel.Layout().SHA1Index())
		require.NoError(t, err)
		return b.Bytes(), n
	}
	log, n := wholeLog()
	el, err := eventlog.ParseEventLog(log, eventlog.Options{})
	require.NoError(t, err)
	st, err := el.Replay(eventlog.ReplayOptions{Banks: banks})
	require.NoError(t, err)
	require.Equal(t, n, st.Records)

	// tpm2_pcrread reads the replay of the whole log in every bank.
	pcrread := tpm2Tool(t, srv, dir, "tpm2_pcrread", "sha1:10+sha256:10")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pcrread.yaml"), []byte(pcrread), 0o644))
	for _, b := range banks {
		vals, err := eventlog.ParsePCRFile(strings.NewReader(pcrread), b)
		require.NoError(t, err, pcrread)
		require.Equal(t, hex.EncodeToString(st.PCRs[b][10]), hex.EncodeToString(vals[10]), "tpm2_pcrread %v PCR 10 against the replay", b)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "log"), log, 0o644))
	code, out, errOut := evCmd("verify", "--pcrs", "sha1,"+filepath.Join(dir, "pcrread.yaml"), "--pcrs", "sha256,"+filepath.Join(dir, "pcrread.yaml"), filepath.Join(dir, "log"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, fmt.Sprintf("verified %d records", n))

	// An EK, an AK under it, and a quote of PCR 10 with a nonce.
	tpm2Tool(t, srv, dir, "tpm2_createek", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub")
	nonce := "1f2e3d4c5b6a79880011"
	schemes := [][2]string{{"ecc", "ecdsa"}, {"rsa", "rsassa"}, {"rsa", "rsapss"}}
	for _, sc := range schemes {
		ak, quote := "ak-"+sc[1], "quote-"+sc[1]
		tpm2Tool(t, srv, dir, "tpm2_createak", "-C", "ek.ctx", "-c", ak+".ctx", "-G", sc[0], "-g", "sha256", "-s", sc[1], "-u", ak+".pub")
		tpm2Tool(t, srv, dir, "tpm2_quote", "-c", ak+".ctx", "-l", "sha256:10", "-q", nonce, "-m", quote+".msg", "-s", quote+".sig", "-g", "sha256", "--scheme", sc[1])
		if sc[1] != "rsapss" { // tpm2_checkquote 5.x rejects RSAPSS quotes: tpm2-software/tpm2-tools#3283
			tpm2Tool(t, srv, dir, "tpm2_checkquote", "-u", ak+".pub", "-m", quote+".msg", "-s", quote+".sig", "-g", "sha256", "-q", nonce)
		}
	}

	// The kernel goes on: the quote now lags the list.
	for i := 0; i < 40; i++ {
		f := ima.NewFile(fmt.Sprintf("/opt/after-quote-%d", i), fmt.Appendf(nil, "after %d", i))
		f.Mode = 0o100755
		require.NoError(t, w.kernel.Measure(f))
	}
	require.NoError(t, w.cycle(collector.DeleteN, nil))
	log, total := wholeLog()
	require.Equal(t, n+40, total)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "log"), log, 0o644))
	quoteArgs := func(scheme string) []string {
		return []string{"verify", "--quote", filepath.Join(dir, "quote-"+scheme+".msg"), "--sig", filepath.Join(dir, "quote-"+scheme+".sig"),
			"--ak-pub", filepath.Join(dir, "ak-"+scheme+".pub")}
	}
	q := func(args ...string) (int, string, string) { return evCmd(append(quoteArgs("ecdsa"), args...)...) }
	for _, sc := range schemes {
		code, out, errOut = evCmd(append(quoteArgs(sc[1]), "--nonce", nonce, filepath.Join(dir, "log"))...)
		require.Equal(t, 0, code, "%s: %s", sc[1], errOut)
		require.Contains(t, out, fmt.Sprintf("quote of sha256 PCR 10 (signature and nonce checked) covers N = %d records", n), sc[1])
	}
	// An RSA quote checked with the ECDSA key, and the reverse.
	code, _, errOut = evCmd(append(quoteArgs("rsassa")[:5], "--ak-pub", filepath.Join(dir, "ak-ecdsa.pub"), "--nonce", nonce, filepath.Join(dir, "log"))...)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "but the key is *ecdsa.PublicKey")

	// What must fail: another nonce (exit 1), another key (exit 1), a log
	// that never reaches the quote (exit 1).
	code, _, errOut = q("--nonce", "00", filepath.Join(dir, "log"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "quote nonce differs")
	other, err := tpmext.NewSoftware()
	require.NoError(t, err)
	otherAK, err := other.AttestationKey()
	require.NoError(t, err)
	otherPEM, err := otherAK.PEM()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.pem"), otherPEM, 0o644))
	code, _, errOut = evCmd(append(quoteArgs("ecdsa")[:5], "--ak-pub", filepath.Join(dir, "other.pem"), "--nonce", nonce, filepath.Join(dir, "log"))...)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "quote signature does not verify")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "head"), log[:len(log)/3], 0o644))
	code, _, errOut = q("--nonce", nonce, filepath.Join(dir, "head"))
	require.Equal(t, 1, code, errOut)
}

// TestExportQuoteOnSwtpm: imasim export --tpm swtpm:… writes a quote that
// tpm2_checkquote and imasim verify --quote accept; the bad cases are one
// line each: nothing listening at the address, a bank swtpm lacks, a bad
// spelling.
func TestExportQuoteOnSwtpm(t *testing.T) {
	srv := swtpmtest.Start(t, "sha256")
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"export", "--dir", dir, "--records", "200", "--stage-every", "30", "--banks", "sha1,sha256",
		"--tpm", srv.Spec(), "--nonce", "abcdef"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	if _, err := exec.LookPath("tpm2_checkquote"); err == nil {
		cmd := exec.Command("tpm2_checkquote", "-u", "ak.pub", "-m", "quote.msg", "-s", "quote.sig", "-g", "sha256", "-q", "abcdef")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	nonce, err := os.ReadFile(filepath.Join(dir, "quote.nonce"))
	require.NoError(t, err)
	require.Equal(t, "abcdef\n", string(nonce))
	code, out, errOut := evCmd("verify", "--quote", filepath.Join(dir, "quote.msg"), "--sig", filepath.Join(dir, "quote.sig"),
		"--ak-pub", filepath.Join(dir, "ak.pem"), "--nonce", "abcdef", filepath.Join(dir, "binary_runtime_measurements"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "quote of sha256 PCR 10")

	// A second run on the same swtpm boots a new kernel: the TPM is reset
	// first, so its log replays from zero to the new quote.
	dir2 := t.TempDir()
	code = run([]string{"export", "--dir", dir2, "--records", "50", "--seed", "9", "--banks", "sha1,sha256",
		"--tpm", srv.Spec(), "--nonce", "abcdef", "-q"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	code, _, errOut = evCmd("verify", "--quote", filepath.Join(dir2, "quote.msg"), "--sig", filepath.Join(dir2, "quote.sig"),
		"--ak-pub", filepath.Join(dir2, "ak.pub"), "--nonce", "abcdef", filepath.Join(dir2, "binary_runtime_measurements"))
	require.Equal(t, 0, code, errOut)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	free := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tpm", "swtpm:" + free}, "swtpm at " + free + ": dial tcp " + free + ": connect: connection refused"},
		{[]string{"--tpm", srv.Spec(), "--banks", "sha256,sm3"}, "has no PCR bank [sm3_256]"},
		{[]string{"--tpm", "swtpm:nowhere"}, "want HOST:PORT"},
	} {
		stderr.Reset()
		code := run(append([]string{"export", "--dir", t.TempDir(), "--records", "10"}, tc.args...), io.Discard, &stderr)
		require.Equal(t, 1, code, tc.args)
		require.Contains(t, stderr.String(), tc.want)
		require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
	}
}

// TestWorkloadSwtpmKilled: swtpm dies at the kexec in the middle of a
// workload; the kernel model goes on measuring and collecting without
// hanging, and the run reports the failed extends with the kernel's audit
// cause.
func TestWorkloadSwtpmKilled(t *testing.T) {
	srv := swtpmtest.Start(t, "sha1", "sha256")
	dir := t.TempDir()
	w := &workload{
		Records: 200, Flavour: "prompt", StageEvery: 20, Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Template: "ima-ng",
		KexecAfter: 100, Seed: 5, TPMKind: srv.Spec(), StoreDir: filepath.Join(dir, "store"),
		progress: func(string) { srv.Kill() },
	}
	err := w.run()
	require.ErrorContains(t, err, "TPM extends failed (the kernel kept the records, audited the failure and did not extend PCR 10)")
	require.ErrorContains(t, err, fmt.Sprintf("TPM_error(%d)", -int(syscall.ECONNREFUSED)))
	require.Equal(t, 1, w.stats.kexecs)
	require.Greater(t, w.stats.tpmErrors, int64(50))
	var b bytes.Buffer
	n, err := w.coll.WriteLog(&b, 0, collector.Binary, w.kernel.Layout().SHA1Index())
	require.NoError(t, err)
	require.Greater(t, n, 150, "the records stay in the log")
	w.coll.Close()
	w.tpm.Close()
}
