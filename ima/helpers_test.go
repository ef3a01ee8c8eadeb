package ima

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// twoBanks is the bank set most tests use.
var twoBanks = []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}

// newSoftware returns a fresh software TPM with banks.
func newSoftware(t testing.TB, banks ...tpmext.Algorithm) *tpmext.Software {
	t.Helper()
	tpm, err := tpmext.NewSoftware(banks...)
	require.NoError(t, err)
	return tpm
}

// boot boots a kernel and fails the test on error.
func mustNew(t testing.TB, cfg Config) *Kernel {
	t.Helper()
	k, err := New(cfg)
	require.NoError(t, err)
	return k
}

// firmware extends PCRs 0-7 of every bank as a boot chain would, and counts
// its runs.
type firmware struct{ runs int }

func (fw *firmware) run(tpm tpmext.TPM) error {
	fw.runs++
	for pcr := 0; pcr < 8; pcr++ {
		var ds []tpmext.Digest
		for _, alg := range tpm.Banks() {
			ds = append(ds, tpmext.Digest{Alg: alg, Value: alg.Sum([]byte(fmt.Sprintf("firmware component %d", pcr)))})
		}
		if err := tpm.Extend(pcr, ds); err != nil {
			return err
		}
	}
	return nil
}

// file returns the i-th test file measurement of a series.
func file(series string, i int) File {
	path := fmt.Sprintf("/usr/bin/%s-%d", series, i)
	return NewFile(path, []byte(path+" content"))
}

// measure measures n new files of a series and fails the test on error.
func measure(t testing.TB, k *Kernel, series string, n int) {
	t.Helper()
	for i := range n {
		require.NoError(t, k.Measure(file(series, i)))
	}
}

// read reads a securityfs file as root.
func read(t testing.TB, k *Kernel, name string) []byte {
	t.Helper()
	b, err := staging.ReadFile(k.FS(staging.Root(1)), name)
	require.NoError(t, err, name)
	return b
}

// write writes a request as root in one write(), as echo does.
func write(k *Kernel, name, req string) error {
	return staging.WriteFile(k.FS(staging.Root(1)), name, []byte(req))
}

// bankFile returns the binary list file name of bank alg (original, or
// _staged).
func bankFile(t testing.TB, k *Kernel, alg tpmext.Algorithm, staged bool) string {
	t.Helper()
	for _, lf := range k.Layout().ListFiles() {
		s := k.Layout().Slot(lf.Slot)
		if s.IsBank && s.Bank == alg {
			name := "binary_runtime_measurements_" + lf.Suffix
			if staged {
				name += "_staged"
			}
			return name
		}
	}
	t.Fatalf("no list file for bank %v", alg)
	return ""
}

// decode decodes a binary list with the given digest column width.
func decode(t testing.TB, data []byte, digestSize int) []*template.Entry {
	t.Helper()
	es, err := template.DecodeAll(data, template.DecodeOptions{Order: template.LittleEndian, DigestSize: digestSize})
	require.NoError(t, err)
	return es
}

// raw re-encodes a decoded record (one digest column) to its bytes.
func raw(t testing.TB, e *template.Entry) []byte {
	t.Helper()
	b, err := e.AppendBinary(nil, 0, template.LittleEndian)
	require.NoError(t, err)
	return b
}

// names returns the event names (the n-ng field without its NUL) of
// entries.
func names(es []*template.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, eventName(e))
	}
	return out
}

func eventName(e *template.Entry) string {
	for i, f := range e.Desc.Fields() {
		if f == template.FieldNNG || f == template.FieldN {
			return string(bytes.TrimRight(e.Fields[i], "\x00"))
		}
	}
	return ""
}

// replay extends PCR pcr of bank alg, from zero, with every record of a
// binary list of that bank's column that targets pcr: the record's digest,
// or 0xFF over the bank's size for a violation (all-zero digest).
func replay(t testing.TB, list []byte, alg tpmext.Algorithm, pcr uint32) []byte {
	t.Helper()
	v := make([]byte, alg.Size())
	for _, e := range decode(t, list, alg.Size()) {
		if e.PCR != pcr {
			continue
		}
		d := e.Digests[0].Value
		if bytes.Equal(d, make([]byte, len(d))) {
			d = bytes.Repeat([]byte{0xff}, len(d))
		}
		v = tpmext.ExtendValue(alg, v, d)
	}
	return v
}

// requireReplays checks that the history (for each bank, the bytes given
// by hist) replays to the TPM's PCR pcr in every bank.
func requireReplays(t testing.TB, tpm tpmext.TPM, pcr uint32, hist func(alg tpmext.Algorithm) []byte) {
	t.Helper()
	for _, alg := range tpm.Banks() {
		got, err := tpm.ReadPCR(int(pcr), alg)
		require.NoError(t, err)
		require.Equal(t, replay(t, hist(alg), alg, pcr), got, "PCR %d of bank %v", pcr, alg)
	}
}

// requireErrno checks that err wraps want; for file operations (op != "")
// it must be a *fs.PathError for op.
func requireErrno(t testing.TB, err error, want syscall.Errno, op string) {
	t.Helper()
	require.True(t, errors.Is(err, want), "got %v, want %v", err, want)
	if op != "" {
		var pe *fs.PathError
		require.True(t, errors.As(err, &pe), "got %T, want *fs.PathError", err)
		require.Equal(t, op, pe.Op)
	}
}

// pcr reads PCR i of bank alg.
func pcr(t testing.TB, tpm tpmext.TPM, i int, alg tpmext.Algorithm) []byte {
	t.Helper()
	v, err := tpm.ReadPCR(i, alg)
	require.NoError(t, err)
	return v
}
