package measlist

import (
	"bytes"
	"fmt"
	"github.com/imasim/imasim/measlist/measlisttest"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// fixture is a queue with a software TPM (SHA-1 and SHA-256 banks,
// ima_hash=sha256, little-endian records) and the history of every record
// the test added successfully, in add order: the oracle for PCR replays.
type fixture struct {
	t       testing.TB
	q       *Queue
	tpm     tpmext.TPM // nil in TPM-bypass fixtures
	l       *template.Layout
	history []*template.Entry
	// added is the sum of sz(r) of the history, taken at add time (a
	// deleted record's size is 0 once its template data is freed).
	added uint64
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	f := newFixtureWith(t, cfg, tpm, template.LittleEndian)
	return f
}

// newFixtureWith builds a fixture with the given TPM (nil for TPM bypass,
// which still gets a SHA-1 and SHA-256 layout) and byte order.
func newFixtureWith(t testing.TB, cfg Config, tpm tpmext.TPM, o template.Order) *fixture {
	t.Helper()
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	if tpm != nil {
		banks = tpm.Banks()
		cfg.TPM = tpm
	}
	l, err := template.NewLayout(banks, template.HashSHA256, o)
	require.NoError(t, err)
	cfg.Layout = l
	q, err := New(cfg)
	require.NoError(t, err)
	return &fixture{t: t, q: q, tpm: tpm, l: l}
}

// file builds an ima-ng record for a file with the given content.
func (f *fixture) file(path, content string, pcr uint32) *template.Entry {
	f.t.Helper()
	return fileEntry(f.t, f.l, path, content, pcr)
}

func fileEntry(t testing.TB, l *template.Layout, path, content string, pcr uint32) *template.Entry {
	t.Helper()
	ev, err := template.NewFileEvent(path, &template.File{Content: []byte(content)}, template.HashSHA256, nil)
	require.NoError(t, err)
	e, err := l.NewEntry(template.Builtin("ima-ng"), pcr, ev)
	require.NoError(t, err)
	return e
}

// violation builds an ima-ng ToMToU violation record in PCR 10.
func (f *fixture) violation(path string) *template.Entry {
	f.t.Helper()
	e, err := f.l.NewEntry(template.Builtin("ima-ng"), 10, template.NewViolationEvent(path, nil, "ToMToU"))
	require.NoError(f.t, err)
	require.True(f.t, e.Violation)
	return e
}

// add adds e, requires success and records it in the history.
func (f *fixture) add(e *template.Entry) *template.Entry {
	f.t.Helper()
	require.NoError(f.t, f.q.Add(e))
	f.history = append(f.history, e)
	f.added += uint64(e.BinaryRuntimeSize())
	return e
}

// fullSize is what BinaryRuntimeSize(BinaryFull) must be for the history.
func (f *fixture) fullSize() uint64 { return KexecHeaderSize + f.added }

// addFiles adds n distinct files named prefix0, prefix1, ... to PCR 10.
func (f *fixture) addFiles(prefix string, n int) []*template.Entry {
	f.t.Helper()
	out := make([]*template.Entry, n)
	for i := range out {
		out[i] = f.add(f.file(fmt.Sprintf("%s%d", prefix, i), prefix, 10))
	}
	return out
}

// wantLists checks both lists by identity.
func (f *fixture) wantLists(current, staged []*template.Entry) {
	f.t.Helper()
	requireSameEntries(f.t, "current", current, f.q.Entries(Current))
	requireSameEntries(f.t, "staged", staged, f.q.Entries(Staged))
}

func requireSameEntries(t testing.TB, what string, want, got []*template.Entry) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s list: got %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("%s list: record %d is %s, want %s", what, i, describe(got[i]), describe(want[i]))
		}
	}
}

func describe(e *template.Entry) string {
	if e == nil {
		return "<nil>"
	}
	name := "<freed>"
	if len(e.Fields) > 1 && e.Fields[1] != nil {
		name = string(bytes.TrimRight(e.Fields[1], "\x00"))
	}
	return fmt.Sprintf("%p{pcr %d %s violation=%v}", e, e.PCR, name, e.Violation)
}

// wantCounts checks BINARY, BINARY_STAGED and BINARY_FULL.
func (f *fixture) wantCounts(binary, staged, full int64) {
	f.t.Helper()
	require.Equal(f.t, [3]int64{binary, staged, full},
		[3]int64{f.q.NumRecords(Binary), f.q.NumRecords(BinaryStaged), f.q.NumRecords(BinaryFull)},
		"counters BINARY, BINARY_STAGED, BINARY_FULL")
}

// wantSizes checks the three ima_get_binary_runtime_size() values.
func (f *fixture) wantSizes(binary, staged, full uint64) {
	f.t.Helper()
	require.Equal(f.t, [3]uint64{binary, staged, full},
		[3]uint64{f.q.BinaryRuntimeSize(Binary), f.q.BinaryRuntimeSize(BinaryStaged), f.q.BinaryRuntimeSize(BinaryFull)},
		"binary runtime sizes of BINARY, BINARY_STAGED, BINARY_FULL")
}

// sizeOf is the kexec header plus the serialized size of the records, what
// ima_get_binary_runtime_size() returns for a list holding them.
func sizeOf(es ...*template.Entry) uint64 {
	n := uint64(KexecHeaderSize)
	for _, e := range es {
		n += uint64(e.BinaryRuntimeSize())
	}
	return n
}

// wantPCRs checks every PCR of every bank of the software TPM against the
// replay of the fixture's history.
func (f *fixture) wantPCRs() {
	f.t.Helper()
	if f.tpm == nil {
		return
	}
	got, err := f.tpm.ReadPCRs()
	require.NoError(f.t, err)
	require.Equal(f.t, replay(f.tpm.Banks(), f.history), got, "PCRs against the replay of every added record")
}

// replay computes the PCR banks a fresh TPM holds after extending every
// record of history in order, the way ima_add_template_entry() extends
// them: each bank's template digest, or 0xFF over the bank's size for a
// violation. Records whose PCR the TPM refuses (17 to 22 at locality 0,
// or out of range) leave the PCRs unchanged. It is written from the
// kernel's rules, without Layout.ExtendDigests, so that it is an
// independent oracle.
func replay(banks []tpmext.Algorithm, history []*template.Entry) tpmext.PCRValues {
	out := make(tpmext.PCRValues, len(banks))
	for _, alg := range banks {
		vals := make([][]byte, tpmext.NumPCRs)
		for p := range vals {
			vals[p] = tpmext.InitialPCRValue(p, alg)
		}
		out[alg] = vals
	}
	for _, e := range history {
		if !tpmAccepts(e.PCR) {
			continue
		}
		for _, alg := range banks {
			out[alg][e.PCR] = tpmext.ExtendValue(alg, out[alg][e.PCR], extendDigest(e, alg))
		}
	}
	return out
}

func tpmAccepts(pcr uint32) bool { return pcr < tpmext.NumPCRs && (pcr < 17 || pcr > 22) }

// extendDigest is what the kernel extends into bank alg for e.
func extendDigest(e *template.Entry, alg tpmext.Algorithm) []byte {
	if e.Violation {
		return bytes.Repeat([]byte{0xff}, alg.Size())
	}
	for _, d := range e.Digests {
		if d.Alg == alg {
			return d.Value
		}
	}
	panic(fmt.Sprintf("entry has no %v digest", alg))
}

// state is everything the queue lets a caller observe, for "nothing
// changed" checks, in the reference model's shape (its kernel-memory
// figures left zero).
func (f *fixture) state() measlisttest.Snapshot {
	f.t.Helper()
	q := f.q
	s := measlisttest.Snapshot{
		Current:    q.Entries(Current),
		Staged:     q.Entries(Staged),
		Counts:     [3]int64{q.NumRecords(Binary), q.NumRecords(BinaryStaged), q.NumRecords(BinaryFull)},
		Sizes:      [3]uint64{q.BinaryRuntimeSize(Binary), q.BinaryRuntimeSize(BinaryStaged), q.BinaryRuntimeSize(BinaryFull)},
		Violations: q.NumViolations(),
		Generation: q.Generation(),
		HtableLen:  q.HtableLen(),
		Suspended:  q.Suspended(),
	}
	s.TPMErrors, _ = q.TPMErrors()
	if f.tpm != nil {
		var err error
		s.PCRs, err = f.tpm.ReadPCRs()
		require.NoError(f.t, err)
	}
	return s
}

// key returns the hash-table key of e: its ima_hash template digest.
func (f *fixture) key(e *template.Entry) []byte { return e.Digests[f.l.HashIndex()].Value }

// inHtable reports whether e's (digest, pcr) is in the hash table.
func (f *fixture) inHtable(e *template.Entry) bool { return f.q.InHtable(f.key(e), e.PCR) }

// requireFreed checks that the template data of every entry was released
// (the kernel's kfree(template_data[i].data)).
func requireFreed(t testing.TB, es ...*template.Entry) {
	t.Helper()
	for i, e := range es {
		for j, fd := range e.Fields {
			if fd != nil {
				t.Fatalf("record %d (%p): field %d still holds %d bytes after deletion", i, e, j, len(fd))
			}
		}
	}
}

// requireLive checks that every entry still has its template data.
func requireLive(t testing.TB, es ...*template.Entry) {
	t.Helper()
	for i, e := range es {
		for j, fd := range e.Fields {
			if fd == nil {
				t.Fatalf("record %d (%s): field %d was released", i, describe(e), j)
			}
		}
	}
}

// binarySHA1 is the record as the kexec dump writes it.
func binarySHA1(t testing.TB, l *template.Layout, es ...*template.Entry) []byte {
	t.Helper()
	var out []byte
	for _, e := range es {
		var err error
		out, err = e.AppendBinary(out, l.SHA1Index(), l.Order())
		require.NoError(t, err)
	}
	return out
}
