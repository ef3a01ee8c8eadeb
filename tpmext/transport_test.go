package tpmext

import (
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/imasim/imasim/tpmext/swtpmtest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestSimulatorBusy: a second NewSimulator while one is open fails at once
// instead of blocking in go-tpm-tools' simulator.Get.
func TestSimulatorBusy(t *testing.T) {
	first := newSimulator(t)
	_, err := NewSimulator()
	require.ErrorIs(t, err, ErrSimulatorBusy)
	_, err = Open("simulator")
	require.ErrorIs(t, err, ErrSimulatorBusy)
	require.NoError(t, first.Close())
	second, err := NewSimulator()
	require.NoError(t, err, "closing the first one frees the simulator")
	require.NoError(t, second.Close())
}

// freePort returns a loopback port where nothing listens.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSwtpmNotListening: one line naming the address.
func TestSwtpmNotListening(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, err := Open("swtpm:" + addr)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "\n")
	require.Contains(t, err.Error(), "swtpm at "+addr)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}

// TestSwtpmBanks: a swtpm set up with SHA-256 only gets SHA-1 and SHA-256
// allocated through TPM2_PCR_Allocate and a reset on its control port; a
// bank swtpm does not implement, or an allocation without a platform reset,
// is refused clearly.
func TestSwtpmBanks(t *testing.T) {
	srv := swtpmtest.Start(t, "sha256")
	tpm, err := Open(srv.Spec())
	require.NoError(t, err)
	require.Equal(t, []Algorithm{SHA256}, tpm.Banks(), "swtpm_setup --pcr-banks sha256")
	require.NoError(t, tpm.Close())

	_, err = Open(srv.Spec(), SHA256, SM3_256)
	require.ErrorContains(t, err, "has no PCR bank [sm3_256]")
	require.NotContains(t, err.Error(), "\n")

	// A transport without a platform reset (as a hardware TPM) cannot
	// allocate.
	conn := &swtpm{cmd: srv.Addr()}
	_, err = NewTransport(conn, "no-reset TPM", SHA1, SHA256)
	require.ErrorIs(t, err, ErrNoReset)
	require.ErrorContains(t, err, "has PCR banks [sha256], not [sha1 sha256]")

	tpm, err = Open(srv.Spec(), SHA1, SHA256)
	require.NoError(t, err)
	require.ElementsMatch(t, []Algorithm{SHA1, SHA256}, tpm.Banks())
	sw, err := NewSoftware(tpm.Banks()...)
	require.NoError(t, err)
	for _, x := range []TPM{tpm, sw} {
		require.NoError(t, x.Extend(10, []Digest{{SHA1, SHA1.Sum([]byte("a"))}, {SHA256, SHA256.Sum([]byte("a"))}}))
	}
	got, err := tpm.ReadPCRs()
	require.NoError(t, err)
	want, _ := sw.ReadPCRs()
	require.True(t, want.Equal(got))
	require.NoError(t, tpm.Close())
}

// TestSwtpmKilled: commands to a dead swtpm fail at once with one line
// naming the address; nothing hangs.
func TestSwtpmKilled(t *testing.T) {
	srv := swtpmtest.Start(t)
	tpm, err := Open(srv.Spec())
	require.NoError(t, err)
	d := []Digest{{SHA256, SHA256.Sum(nil)}}
	require.NoError(t, tpm.Extend(10, d))
	srv.Kill()
	err = tpm.Extend(10, d)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.Equal(t, "tpmext: swtpm "+srv.Addr()+": TPM2_PCR_Extend(PCR 10): dial tcp "+srv.Addr()+": connect: connection refused", err.Error())
	_, err = tpm.ReadPCRs()
	require.Error(t, err)
	require.Error(t, tpm.Reset())
}

// TestFault: SetFault fails commands on demand, with a TPM response code or
// as a dead transport; the PCRs do not move; removing the hook heals.
func TestFault(t *testing.T) {
	tpms := map[string]*Transport{"swtpm": newSwtpm(t)}
	if SimulatorAvailable {
		tpms["simulator"] = newSimulator(t)
	}
	for name, tpm := range tpms {
		d := []Digest{{SHA256, SHA256.Sum([]byte(name))}}
		before, err := tpm.ReadPCR(10, SHA256)
		require.NoError(t, err)
		dead := errors.New("TPM gone")
		var fail error = tpm2.TPMRCFailure
		tpm.SetFault(func(cc tpm2.TPMCC) error {
			if cc == tpm2.TPMCCPCRExtend {
				return fail
			}
			return nil
		})
		require.ErrorIs(t, tpm.Extend(10, d), tpm2.TPMRCFailure, name)
		fail = dead
		require.ErrorIs(t, tpm.Extend(10, d), dead, name)
		after, err := tpm.ReadPCR(10, SHA256)
		require.NoError(t, err, "only TPM2_PCR_Extend fails")
		require.Equal(t, before, after, name)
		tpm.SetFault(nil)
		require.NoError(t, tpm.Extend(10, d))
		after, _ = tpm.ReadPCR(10, SHA256)
		require.Equal(t, ExtendValue(SHA256, before, d[0].Value), after, name)
	}
}

func TestOpenSpec(t *testing.T) {
	notDevice := filepath.Join(t.TempDir(), "tpm0")
	require.NoError(t, os.WriteFile(notDevice, nil, 0o644))
	for _, tc := range []struct{ spec, want string }{
		{"", "want software, simulator"},
		{"hardware", "want software, simulator"},
		{"software:x", "want software, simulator"},
		{"device:", "want software, simulator"},
		{"swtpm:localhost", "want HOST:PORT"},
		{"swtpm:127.0.0.1:0", "is not a TCP port"},
		{"swtpm:127.0.0.1:70000", "is not a TCP port"},
		{"swtpm:127.0.0.1:65535", "give ctrl=PORT"},
		{"swtpm:127.0.0.1:2321,ctl=2", "unknown option"},
		{"swtpm:127.0.0.1:2321,ctrl=x", "control port"},
		{"device:/nonexistent/tpm", "no such file"},
		{"device:" + os.DevNull, "TPM device /dev/null: TPM2_GetCapability(TPM_CAP_PCRS): EOF"},
		{"device:" + notDevice, "not a device"},
	} {
		_, err := Open(tc.spec)
		require.ErrorContains(t, err, tc.want, tc.spec)
	}
	for spec, want := range map[string][2]string{
		"127.0.0.1:2321":             {"127.0.0.1:2321", "127.0.0.1:2322"},
		"localhost:9,ctrl=7":         {"localhost:9", "localhost:7"},
		"[::1]:2321":                 {"[::1]:2321", "[::1]:2322"},
		"host.example:2321,ctrl=100": {"host.example:2321", "host.example:100"},
	} {
		cmd, ctrl, err := parseSwtpmSpec(spec)
		require.NoError(t, err, spec)
		require.Equal(t, want, [2]string{cmd, ctrl}, spec)
	}
	sw, err := Open("software", SHA256)
	require.NoError(t, err)
	require.Equal(t, []Algorithm{SHA256}, sw.Banks())
}

// TestAttestationKey: every back end's key reads back from its TPM2B_PUBLIC
// and its PEM, and is the key its quotes carry.
func TestAttestationKey(t *testing.T) {
	for name, tpm := range backends(t) {
		ak, err := tpm.(interface {
			AttestationKey() (*AttestationKey, error)
		}).AttestationKey()
		require.NoError(t, err, name)
		fromPub, err := ParseAttestationKey(ak.Public)
		require.NoError(t, err, name)
		require.Equal(t, ak.Key, fromPub.Key, name)
		p, err := ak.PEM()
		require.NoError(t, err)
		fromPEM, err := ParseAttestationKey(p)
		require.NoError(t, err, name)
		require.Equal(t, ak.Key, fromPEM.Key, name)
		require.Nil(t, fromPEM.Public)
		q, err := tpm.Quote(nil, Selection{Alg: SHA256, PCRs: []int{10}})
		require.NoError(t, err, name)
		require.Equal(t, ak.Key, q.Key, "%s: the quote is signed by the exported key", name)
		require.Equal(t, ak.Public, q.Public, name)
	}
	_, err := ParseAttestationKey([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	require.ErrorContains(t, err, "want PUBLIC KEY")
	_, err = ParseAttestationKey([]byte{0, 200, 1})
	require.ErrorContains(t, err, "neither PEM nor a TPM2B_PUBLIC")
	_, err = ParseAttestationKey(nil)
	require.Error(t, err)
}

// TestCheckquoteAcceptsImasimQuotes: tpm2_checkquote accepts the quote
// files of every back end, with the key as TPM2B_PUBLIC and as PEM, and
// rejects them with another nonce.
func TestCheckquoteAcceptsImasimQuotes(t *testing.T) {
	if _, err := exec.LookPath("tpm2_checkquote"); err != nil {
		t.Skip("tpm2_checkquote not installed (apt-get install tpm2-tools)")
	}
	nonce := []byte("imasim nonce")
	for name, tpm := range backends(t) {
		dir := t.TempDir()
		require.NoError(t, tpm.Extend(10, []Digest{{SHA256, SHA256.Sum([]byte("x"))}}))
		q, err := tpm.Quote(nonce, Selection{Alg: SHA256, PCRs: []int{10}})
		require.NoError(t, err)
		p, err := q.AttestationKey().PEM()
		require.NoError(t, err)
		files := map[string][]byte{"msg": q.Attest, "sig": q.Signature, "ak.pub": q.Public, "ak.pem": p}
		for f, b := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
		}
		for _, key := range []string{"ak.pub", "ak.pem"} {
			for _, n := range [][]byte{nonce, []byte("other nonce")} {
				cmd := exec.Command("tpm2_checkquote", "-u", key, "-m", "msg", "-s", "sig", "-g", "sha256", "-q", hex.EncodeToString(n))
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if string(n) == string(nonce) {
					require.NoError(t, err, "%s %s: %s", name, key, out)
				} else {
					require.Error(t, err, "%s %s: another nonce must fail: %s", name, key, out)
					require.True(t, strings.Contains(string(out), "nonce"), "%s", out)
				}
			}
		}
		// ParseQuote reads the files back.
		ak, err := ParseAttestationKey(files["ak.pub"])
		require.NoError(t, err)
		back, err := ParseQuote(files["msg"], files["sig"], ak)
		require.NoError(t, err)
		v, _ := tpm.ReadPCR(10, SHA256)
		require.NoError(t, back.Verify(nonce, Selection{Alg: SHA256, PCRs: []int{10}}, map[int][]byte{10: v}), name)
		_, err = ParseQuote(files["msg"], append(files["sig"], 0), ak)
		require.ErrorContains(t, err, "followed by 1 more")
	}
}

// TestConcurrentUse: goroutines extend their own PCR and read the others
// at once on every back end; each PCR ends where the same sequence leaves
// the software banks (run under -race in CI).
func TestConcurrentUse(t *testing.T) {
	all := backends(t, SHA1, SHA256)
	oracle, err := NewSoftware(SHA1, SHA256)
	require.NoError(t, err)
	const workers, perWorker = 4, 50
	for w := 0; w < workers; w++ {
		for i := 0; i < perWorker; i++ {
			require.NoError(t, oracle.Extend(w, []Digest{{SHA1, SHA1.Sum([]byte{byte(w), byte(i)})}, {SHA256, SHA256.Sum([]byte{byte(w), byte(i)})}}))
		}
	}
	want, _ := oracle.ReadPCRs()
	for name, tpm := range all {
		var g errgroup.Group
		for w := 0; w < workers; w++ {
			g.Go(func() error {
				for i := 0; i < perWorker; i++ {
					if err := tpm.Extend(w, []Digest{{SHA1, SHA1.Sum([]byte{byte(w), byte(i)})}, {SHA256, SHA256.Sum([]byte{byte(w), byte(i)})}}); err != nil {
						return err
					}
					if _, err := tpm.ReadPCR((w+1)%workers, SHA256); err != nil {
						return err
					}
				}
				return nil
			})
		}
		require.NoError(t, g.Wait(), name)
		got, err := tpm.ReadPCRs()
		require.NoError(t, err)
		require.True(t, want.Equal(got), name)
	}
}
