package tpmext

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext/swtpmtest"
	"github.com/stretchr/testify/require"
)

// newSwtpm starts swtpm with the given banks (none: all it implements) and
// opens it, asking for the same banks.
func newSwtpm(t testing.TB, banks ...Algorithm) *Transport {
	t.Helper()
	var names []string
	for _, b := range banks {
		names = append(names, b.String())
	}
	srv := swtpmtest.Start(t, names...)
	tr, err := Open(srv.Spec(), banks...)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr.(*Transport)
}

// backends returns a software TPM with the given banks (none: the default
// four) and the simulator and swtpm with the same banks.
func backends(t *testing.T, banks ...Algorithm) map[string]TPM {
	t.Helper()
	sw, err := NewSoftware(banks...)
	require.NoError(t, err)
	out := map[string]TPM{"software": sw, "swtpm": newSwtpm(t, banks...)}
	if SimulatorAvailable {
		out["simulator"] = newSimulator(t, banks...)
	}
	return out
}

// newSimulator returns a fresh simulator for one test, or skips the test
// when this build has no cgo.
func newSimulator(t testing.TB, banks ...Algorithm) *Simulator {
	t.Helper()
	if !SimulatorAvailable {
		t.Skip("TPM simulator back end not built: needs cgo (CGO_ENABLED=1, gcc, OpenSSL headers)")
	}
	s, err := NewSimulator(banks...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func randomDigests(r *rand.Rand, banks []Algorithm) []Digest {
	var ds []Digest
	for _, alg := range banks {
		v := make([]byte, alg.Size())
		r.Read(v)
		ds = append(ds, Digest{Alg: alg, Value: v})
	}
	return ds
}

// TestBackendsAgree extends the software banks, the simulator and swtpm
// with the same 10,000 random extends and compares every PCR of every bank.
func TestBackendsAgree(t *testing.T) {
	sw, err := NewSoftware()
	require.NoError(t, err)
	others := map[string]TPM{"swtpm": newSwtpm(t, DefaultBanks()...)}
	if SimulatorAvailable {
		others["simulator"] = newSimulator(t)
	}
	for name, tpm := range others {
		require.Equal(t, DefaultBanks(), tpm.Banks(), name)
	}
	n := 10000
	if testing.Short() {
		n = 1000
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < n; i++ {
		pcr := r.Intn(NumPCRs)
		ds := randomDigests(r, sw.Banks())
		// Sometimes leave banks out: they must stay unextended everywhere.
		if r.Intn(4) == 0 {
			ds = ds[:r.Intn(len(ds)+1)]
		}
		// PCRs 17-22 refuse locality 0 on every back end.
		errSw := sw.Extend(pcr, ds)
		require.Equal(t, pcr >= 17 && pcr <= 22, errSw != nil, "PCR %d: %v", pcr, errSw)
		for name, tpm := range others {
			err := tpm.Extend(pcr, ds)
			require.Equal(t, errSw == nil, err == nil, "PCR %d: software %v, %s %v", pcr, errSw, name, err)
		}
	}
	want, err := sw.ReadPCRs()
	require.NoError(t, err)
	for name, tpm := range others {
		got, err := tpm.ReadPCRs()
		require.NoError(t, err)
		require.True(t, want.Equal(got), "%s PCRs differ from the software banks", name)
		// The comparison can fail: one further extend on one side breaks it.
		require.NoError(t, tpm.Extend(3, randomDigests(r, sw.Banks())[:1]))
		got, _ = tpm.ReadPCRs()
		require.False(t, want.Equal(got), name)
	}
}

// readIBMLog parses the minimal ima-sig binary layout of sha1.log: u32 pcr,
// 20-byte digest, u32 name length, name, u32 data length, data.
func readIBMLog(t *testing.T, path string) (datas [][]byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	u32 := func() uint32 {
		require.GreaterOrEqual(t, len(b), 4)
		v := binary.LittleEndian.Uint32(b)
		b = b[4:]
		return v
	}
	for len(b) > 0 {
		require.EqualValues(t, 10, u32())
		b = b[20:]
		name := int(u32())
		b = b[name:]
		n := int(u32())
		datas = append(datas, b[:n])
		b = b[n:]
	}
	return datas
}

// readPCR10File parses imakvtpcr10.txt: " PCR 10: aa bb …" per bank, in the
// order sha1, sha256, sha384, sha512.
func readPCR10File(t *testing.T, path string) map[Algorithm][]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[Algorithm][]byte{}
	order := DefaultBanks()
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		hexStr := strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "PCR 10:"), " ", "")
		v, err := hex.DecodeString(hexStr)
		require.NoError(t, err)
		out[order[i]] = v
	}
	require.Len(t, out, 4)
	return out
}

// TestReplayIBMTSS replays the real list record by record, extending each
// bank with H_bank(template data), and reaches the published PCR 10 values
// on both back ends.
func TestReplayIBMTSS(t *testing.T) {
	datas := readIBMLog(t, "../testdata/ibmtss/sha1.log")
	require.Len(t, datas, 362)
	want := readPCR10File(t, "../testdata/ibmtss/imakvtpcr10.txt")
	for name, tpm := range backends(t) {
		for _, data := range datas {
			var ds []Digest
			for _, alg := range tpm.Banks() {
				ds = append(ds, Digest{Alg: alg, Value: alg.Sum(data)})
			}
			require.NoError(t, tpm.Extend(10, ds))
		}
		for alg, v := range want {
			got, err := tpm.ReadPCR(10, alg)
			require.NoError(t, err)
			require.Equal(t, hex.EncodeToString(v), hex.EncodeToString(got), "%s bank %v", name, alg)
		}
	}
}

func TestBadInput(t *testing.T) {
	d20 := make([]byte, 20)
	for name, tpm := range backends(t, SHA1, SHA256) {
		for _, tc := range []struct {
			what    string
			pcr     int
			digests []Digest
			want    string
		}{
			{"pcr -1", -1, []Digest{{SHA1, d20}}, "out of range"},
			{"pcr 24", 24, []Digest{{SHA1, d20}}, "out of range"},
			{"wrong size", 10, []Digest{{SHA256, d20}}, "is 20 bytes, want 32"},
			{"unallocated", 10, []Digest{{SHA384, make([]byte, 48)}}, "not allocated"},
			{"twice", 10, []Digest{{SHA1, d20}, {SHA1, d20}}, "twice"},
		} {
			err := tpm.Extend(tc.pcr, tc.digests)
			require.ErrorContains(t, err, tc.want, "%s: %s", name, tc.what)
		}
		pcrs, err := tpm.ReadPCRs()
		require.NoError(t, err)
		for i, v := range pcrs[SHA1] {
			require.Equal(t, InitialPCRValue(i, SHA1), v, "%s: a refused extend changed PCR %d", name, i)
		}
		require.ErrorContains(t, tpm.Extend(17, []Digest{{SHA1, d20}}), "locality", name)
		_, err = tpm.ReadPCR(0, SHA512)
		require.ErrorContains(t, err, "not allocated")
		_, err = tpm.Quote(nil, Selection{Alg: SHA384, PCRs: []int{10}})
		require.ErrorContains(t, err, "not allocated")
		_, err = tpm.Quote(nil, Selection{Alg: SHA256, PCRs: []int{24}})
		require.ErrorContains(t, err, "out of range")
	}
	_, err := NewSoftware(Algorithm(0x1234))
	require.ErrorContains(t, err, "unknown bank algorithm")
	_, err = NewSoftware(SHA1, SHA1)
	require.ErrorContains(t, err, "twice")
	_, err = ParseAlgorithm("md2")
	require.ErrorContains(t, err, `unknown hash algorithm "md2"`)
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{
		"sha1": SHA1, "SHA256": SHA256, "sha384": SHA384, "sha512": SHA512,
		"sm3": SM3_256, "sm3_256": SM3_256, "sha3-256": SHA3_256, "sha3_384": SHA3_384, "0x000b": SHA256,
	} {
		got, err := ParseAlgorithm(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	banks, err := ParseBanks("sha256,sha1")
	require.NoError(t, err)
	require.Equal(t, []Algorithm{SHA256, SHA1}, banks)
	require.Equal(t, "alg_0x1234", Algorithm(0x1234).String())
}

func TestResetAndClose(t *testing.T) {
	all := backends(t)
	for name, tpm := range all {
		alg := SHA256
		require.NoError(t, tpm.Extend(10, []Digest{{alg, alg.Sum([]byte("x"))}}))
		v, err := tpm.ReadPCR(10, alg)
		require.NoError(t, err)
		require.NotEqual(t, make([]byte, 32), v, name)
		require.NoError(t, tpm.Reset(), name)
		all, err := tpm.ReadPCRs()
		require.NoError(t, err)
		for i, got := range all[alg] {
			require.Equal(t, InitialPCRValue(i, alg), got, "%s: reset must restore PCR %d", name, i)
		}
		v = all[alg][10]
		// A quote still works after a reset.
		q, err := tpm.Quote([]byte("n"), Selection{Alg: alg, PCRs: []int{10}})
		require.NoError(t, err)
		require.NoError(t, q.Verify([]byte("n"), Selection{Alg: alg, PCRs: []int{10}}, map[int][]byte{10: v}))
	}
	for name, tpm := range all {
		require.NoError(t, tpm.Close(), name)
		require.ErrorIs(t, tpm.Extend(10, nil), ErrClosed, name)
		require.ErrorIs(t, tpm.Close(), ErrClosed, name)
	}
}

// TestSimulatorAllocation allocates a sha256-only TPM, as on machines without
// a SHA-1 bank, and a two-bank one.
func TestSimulatorAllocation(t *testing.T) {
	for _, banks := range [][]Algorithm{{SHA256}, {SHA256, SHA1}, {SHA384}} {
		func() {
			sim := newSimulator(t, banks...)
			require.ElementsMatch(t, banks, sim.Banks())
			pcrs, err := sim.ReadPCRs()
			require.NoError(t, err)
			require.Len(t, pcrs, len(banks))
			err = sim.Extend(10, []Digest{{SHA512, make([]byte, 64)}})
			require.ErrorContains(t, err, "not allocated")
			require.NoError(t, sim.Close())
		}()
	}
}

func TestQuote(t *testing.T) {
	for name, tpm := range backends(t) {
		r := rand.New(rand.NewSource(2))
		for i := 0; i < 20; i++ {
			require.NoError(t, tpm.Extend(r.Intn(17), randomDigests(r, tpm.Banks())))
		}
		sel := Selection{Alg: SHA256, PCRs: []int{10, 0, 7, 17}}
		nonce := []byte("fresh nonce")
		q, err := tpm.Quote(nonce, sel)
		require.NoError(t, err, name)
		vals := map[int][]byte{}
		for _, p := range sel.PCRs {
			vals[p], err = tpm.ReadPCR(p, SHA256)
			require.NoError(t, err)
		}
		require.NoError(t, q.Verify(nonce, sel, vals), name)
		info, err := q.Info()
		require.NoError(t, err)
		require.Equal(t, []int{0, 7, 10, 17}, info.Selection.PCRs)

		require.ErrorIs(t, q.Verify([]byte("other nonce"), sel, vals), ErrQuoteNonce, name)
		bad := map[int][]byte{0: vals[0], 7: vals[7], 10: bytes.Repeat([]byte{1}, 32), 17: vals[17]}
		require.ErrorIs(t, q.Verify(nonce, sel, bad), ErrQuotePCRs, name)
		require.ErrorIs(t, q.Verify(nonce, Selection{Alg: SHA256, PCRs: []int{10}}, vals), ErrQuoteSelection, name)
		forged := *q
		forged.Signature = append([]byte(nil), q.Signature...)
		forged.Signature[len(forged.Signature)-1] ^= 1
		require.ErrorIs(t, forged.Verify(nonce, sel, vals), ErrQuoteSignature, name)
		tampered := *q
		tampered.Attest = append([]byte(nil), q.Attest...)
		tampered.Attest[len(tampered.Attest)-1] ^= 1
		require.ErrorIs(t, tampered.Verify(nonce, sel, vals), ErrQuoteSignature, name)
	}
}

// BenchmarkExtend: one TPM2_PCR_Extend of PCR 10 with the four default
// banks on each back end; the software banks are the floor the others are
// compared with (docs/PERFORMANCE.md).
func BenchmarkExtend(b *testing.B) {
	run := func(b *testing.B, tpm TPM) {
		ds := randomDigests(rand.New(rand.NewSource(3)), tpm.Banks())
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := tpm.Extend(10, ds); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "extends/s")
	}
	b.Run("software", func(b *testing.B) {
		sw, err := NewSoftware()
		if err != nil {
			b.Fatal(err)
		}
		run(b, sw)
	})
	b.Run("simulator", func(b *testing.B) {
		run(b, newSimulator(b))
	})
	b.Run("swtpm", func(b *testing.B) {
		run(b, newSwtpm(b, DefaultBanks()...))
	})
}
