package staging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// fixtureConfig describes one simulated kernel for the tests of this
// package: the TPM's banks (nil for TPM-bypass), ima_hash, and the knobs of
// the queue and of the files.
type fixtureConfig struct {
	Banks               []tpmext.Algorithm
	Hash                template.HashAlgo // ima_hash; the zero value (MD4, unusable) means SHA-256
	Staging             bool
	NDeleteNeedsStaging bool
	FlushHtable         bool
	HtableDisabled      bool
	Kexec               bool
	PageSize            int
	Records             int // records added before the files are created
}

type fixture struct {
	t      testing.TB
	tpm    tpmext.TPM
	layout *template.Layout
	q      *measlist.Queue
	s      *SecurityFS
	next   int // number of the next record addRecords makes
}

func newFixture(t testing.TB, cfg fixtureConfig) *fixture {
	t.Helper()
	f := &fixture{t: t}
	var banks []tpmext.Algorithm
	if cfg.Banks != nil {
		tpm, err := tpmext.NewSoftware(cfg.Banks...)
		require.NoError(t, err)
		f.tpm = tpm
		banks = tpm.Banks()
	}
	hash := cfg.Hash
	if hash == 0 {
		hash = template.HashSHA256
	}
	var err error
	f.layout, err = template.NewLayout(banks, hash, template.LittleEndian)
	require.NoError(t, err)
	f.q, err = measlist.New(measlist.Config{Layout: f.layout, TPM: f.tpm, FlushHtable: cfg.FlushHtable,
		HtableDisabled: cfg.HtableDisabled, Kexec: cfg.Kexec})
	require.NoError(t, err)
	f.addRecords(cfg.Records)
	f.s, err = New(Config{Queue: f.q, Staging: cfg.Staging, NDeleteNeedsStaging: cfg.NDeleteNeedsStaging, PageSize: cfg.PageSize})
	require.NoError(t, err)
	return f
}

// newEntry builds the i-th test record: an ima-ng file measurement whose
// name length varies with i, so that records have different sizes.
func newEntry(t testing.TB, l *template.Layout, i int) *template.Entry {
	t.Helper()
	path := fmt.Sprintf("/usr/lib/file-%d%s", i, bytes.Repeat([]byte{'x'}, i%7*5))
	ev, err := template.NewFileEvent(path, &template.File{Content: []byte(path)}, l.HashAlgo(), nil)
	require.NoError(t, err)
	e, err := l.NewEntry(template.Builtin("ima-ng"), 10, ev)
	require.NoError(t, err)
	return e
}

// addRecords measures n new files.
func (f *fixture) addRecords(n int) {
	f.t.Helper()
	for range n {
		require.NoError(f.t, f.q.Add(newEntry(f.t, f.layout, f.next)))
		f.next++
	}
}

// addViolation records a violation as ima_add_violation() does: the
// counter first, then the record.
func (f *fixture) addViolation() {
	f.t.Helper()
	f.q.AddViolation()
	e, err := f.layout.NewEntry(template.Builtin("ima-ng"), 10, template.NewViolationEvent("/tmp/v", nil, "ToMToU"))
	require.NoError(f.t, err)
	require.NoError(f.t, f.q.Add(e))
}

// state returns the reader/writer bookkeeping with Writer cleared when
// there is no writer (measure_writer = NULL), so that states compare.
func (f *fixture) state() MeasureState {
	st := f.s.MeasureState()
	if !st.HasWriter {
		st.Writer = 0
	}
	return st
}

func (f *fixture) root() FS { return f.s.As(Root(1)) }

// open opens name as task t and fails the test on error.
func (f *fixture) open(t Task, name string, flag int) *SimFile {
	f.t.Helper()
	sf, err := f.s.Open(t, name, flag)
	require.NoError(f.t, err, "open %s", name)
	return sf
}

// counter reads a counter file as root.
func (f *fixture) counter(name string) string {
	f.t.Helper()
	b, err := ReadFile(f.root(), name)
	require.NoError(f.t, err)
	return string(b)
}

// render returns what a list file of slot shows for list h, built from the
// entries with template.Entry.AppendASCII or AppendBinary: the oracle for
// reads.
func (f *fixture) render(h measlist.Head, slot int, ascii bool) []byte {
	f.t.Helper()
	var out []byte
	var err error
	for _, e := range f.q.Entries(h) {
		if ascii {
			out, err = e.AppendASCII(out, slot, f.layout.Order())
		} else {
			out, err = e.AppendBinary(out, slot, f.layout.Order())
		}
		require.NoError(f.t, err)
	}
	return out
}

// requireErrno checks that err is a *fs.PathError for operation op that
// wraps want.
func requireErrno(t testing.TB, err error, want syscall.Errno, op string) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errors.Is(err, want), "got %v, want %v", err, want)
	var pe *fs.PathError
	require.True(t, errors.As(err, &pe), "got %T, want *fs.PathError", err)
	require.Equal(t, op, pe.Op)
}

// readAllWith reads r to EOF with a buffer of size bytes.
func readAllWith(t testing.TB, r io.Reader, size int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		require.LessOrEqual(t, n, size)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			require.Zero(t, n, "EOF comes with no data")
			return out
		}
		require.NoError(t, err)
		require.NotZero(t, n, "a read of a non-empty buffer returned 0 bytes without EOF")
	}
}

// Open flags a shell uses.
const (
	rdonly = os.O_RDONLY
	wronly = os.O_WRONLY
	rdwr   = os.O_RDWR
	echo   = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
)
