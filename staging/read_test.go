package staging

import (
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// listFiles returns every list file of f with the head and slot it shows.
func (f *fixture) listFiles() []struct {
	name  string
	head  measlist.Head
	slot  int
	ascii bool
} {
	var out []struct {
		name  string
		head  measlist.Head
		slot  int
		ascii bool
	}
	for _, e := range f.s.ReadDir() {
		n := f.s.nodes[e.Name]
		if n.kind != listFile {
			continue
		}
		h := measlist.Current
		if n.staged {
			h = measlist.Staged
		}
		out = append(out, struct {
			name  string
			head  measlist.Head
			slot  int
			ascii bool
		}{e.Name, h, n.slot, n.ascii})
	}
	return out
}

// TestReadMatchesEntries checks every list file, original and staged,
// against the oracle: the concatenation of template.Entry.AppendASCII (or
// AppendBinary) of the records of its list, for its slot.
func TestReadMatchesEntries(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA3_256}, Staging: true, Records: 6})
	f.addViolation()
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("A\n")))
	f.addRecords(4)
	files := f.listFiles()
	require.Len(t, files, 12)
	for _, lf := range files {
		got, err := ReadFile(f.root(), lf.name)
		require.NoError(t, err)
		want := f.render(lf.head, lf.slot, lf.ascii)
		require.NotEmpty(t, want)
		require.Equal(t, want, got, lf.name)
	}
}

// TestReadEveryBufferSize reads each list file with every buffer size from
// 1 byte to beyond the whole list, with the kernel's page size and with a
// tiny one that makes the seq_file buffer grow: every read gives the same
// bytes.
func TestReadEveryBufferSize(t *testing.T) {
	for _, page := range []int{4096, 64} {
		t.Run(fmt.Sprintf("page %d", page), func(t *testing.T) {
			f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Staging: true, Records: 4, PageSize: page})
			f.addViolation()
			require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("A\n")))
			f.addRecords(3)
			for _, lf := range f.listFiles() {
				want := f.render(lf.head, lf.slot, lf.ascii)
				step := 1
				if testing.Short() {
					step = 7
				}
				for size := 1; size <= len(want)+2; size += step {
					r := f.open(Root(1), lf.name, rdonly)
					got := readAllWith(t, r, size)
					require.NoError(t, r.Close())
					require.Equal(t, want, got, "%s read %d bytes at a time", lf.name, size)
				}
			}
		})
	}
}

// TestReadEmptyListIsEOF checks that an empty list reads as 0 bytes and
// io.EOF, with no error: the staged files before A and after D, the
// original files right after A.
func TestReadEmptyListIsEOF(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 3})
	empty := func(name string) {
		t.Helper()
		r := f.open(Root(1), name, rdonly)
		n, err := r.Read(make([]byte, 100))
		require.Zero(t, n)
		require.ErrorIs(t, err, io.EOF)
		require.NoError(t, r.Close())
		b, err := ReadFile(f.root(), name)
		require.NoError(t, err)
		require.Empty(t, b)
	}
	empty(BinaryRuntimeMeasurementsStaged)
	empty(ASCIIRuntimeMeasurementsStaged)
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("A\n")))
	empty(BinaryRuntimeMeasurements)
	empty(ASCIIRuntimeMeasurements)
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("D\n")))
	empty(BinaryRuntimeMeasurementsStaged)
	// A zero-length read is not EOF.
	r := f.open(Root(1), BinaryRuntimeMeasurementsStaged, rdonly)
	n, err := r.Read(nil)
	require.Zero(t, n)
	require.NoError(t, err)
	require.NoError(t, r.Close())
}

// TestSeekThenRead checks seq_lseek(): a read after seeking to any offset
// (from the start or from the current offset) returns the suffix of a full
// read; past the end it is EOF; a negative offset is EINVAL.
func TestSeekThenRead(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Records: 5, PageSize: 128})
	for _, name := range []string{BinaryRuntimeMeasurements, "ascii_runtime_measurements_sha256"} {
		full, err := ReadFile(f.root(), name)
		require.NoError(t, err)
		r := f.open(Root(1), name, rdonly)
		for off := 0; off <= len(full)+3; off++ {
			pos, err := r.Seek(int64(off), io.SeekStart)
			require.NoError(t, err)
			require.Equal(t, int64(off), pos)
			got := readAllWith(t, r, 5+off%13)
			if off >= len(full) {
				require.Empty(t, got)
			} else {
				require.Equal(t, full[off:], got, "%s from %d", name, off)
			}
		}
		// SeekCurrent: read a bit, skip a bit.
		_, err = r.Seek(0, io.SeekStart)
		require.NoError(t, err)
		head := make([]byte, 10)
		_, err = io.ReadFull(r, head)
		require.NoError(t, err)
		pos, err := r.Seek(7, io.SeekCurrent)
		require.NoError(t, err)
		require.Equal(t, int64(17), pos)
		require.Equal(t, full[17:], readAllWith(t, r, 33))
		_, err = r.Seek(-1, io.SeekStart)
		requireErrno(t, err, syscall.EINVAL, "seek")
		_, err = r.Seek(0, io.SeekEnd)
		requireErrno(t, err, syscall.EINVAL, "seek")
		require.NoError(t, r.Close())
	}
	// Counter files: any offset, generic_file_llseek().
	c := f.open(Root(1), RuntimeMeasurementsCount, rdonly)
	_, err := c.Seek(1, io.SeekStart)
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "\n", string(b))
	require.NoError(t, c.Close())
}

// TestReadSeesAppends checks that a reader at EOF sees records appended
// later: seq_file keeps the record index, not a pointer.
func TestReadSeesAppends(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Records: 2})
	r := f.open(Root(1), ASCIIRuntimeMeasurements, rdonly)
	first := readAllWith(t, r, 4096)
	f.addRecords(2)
	rest := readAllWith(t, r, 4096)
	require.NoError(t, r.Close())
	require.Equal(t, f.render(measlist.Current, f.layout.SHA1Index(), true), append(first, rest...))
}

// TestFindingQ11SameFDDeletion shows docs/SPEC.md Q11: after the writer deletes
// records through the same O_RDWR descriptor, the next read continues at
// the old record index of the changed list, so records are skipped or the
// read is at EOF; seeking back to 0 starts again from the first record.
func TestFindingQ11SameFDDeletion(t *testing.T) {
	t.Run("N skips records", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Records: 6})
		all := f.q.Entries(measlist.Current)
		slot := f.layout.SHA1Index()
		rec := func(i int) []byte {
			b, err := all[i].AppendBinary(nil, slot, f.layout.Order())
			require.NoError(t, err)
			return b
		}
		// The renderings of records 2-5, kept before N frees their
		// template data.
		var want []byte
		for i := 4; i < 6; i++ {
			want = append(want, rec(i)...)
		}
		var skipped []byte
		for i := 2; i < 4; i++ {
			skipped = append(skipped, rec(i)...)
		}
		fd := f.open(Root(1), BinaryRuntimeMeasurements, rdwr)
		// Read exactly records 0 and 1.
		buf := make([]byte, len(rec(0))+len(rec(1)))
		n, err := fd.Read(buf)
		require.NoError(t, err)
		require.Equal(t, len(buf), n)
		// Delete the two records just read.
		n, err = fd.Write([]byte("2\n"))
		require.NoError(t, err)
		require.Equal(t, 2, n)
		// The next read starts at index 2 of the new list: old record 4.
		rest := readAllWith(t, fd, 4096)
		require.Equal(t, want, rest, "old records 2 and 3 are skipped")
		require.NotContains(t, string(rest), string(skipped))
		_, err = fd.Seek(0, io.SeekStart)
		require.NoError(t, err)
		require.Equal(t, append(skipped, want...), readAllWith(t, fd, 4096))
		require.NoError(t, fd.Close())
	})
	t.Run("D then EOF", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 5})
		fd := f.open(Root(1), BinaryRuntimeMeasurementsStaged, rdwr)
		_, err := fd.Write([]byte("A\n"))
		require.NoError(t, err)
		staged := f.render(measlist.Staged, f.layout.SHA1Index(), false)
		rec0, err := f.q.Entries(measlist.Staged)[0].AppendBinary(nil, f.layout.SHA1Index(), f.layout.Order())
		require.NoError(t, err)
		part := make([]byte, 30)
		_, err = io.ReadFull(fd, part)
		require.NoError(t, err)
		require.Equal(t, staged[:30], part)
		_, err = fd.Write([]byte("D\n"))
		require.NoError(t, err)
		// What the first read rendered into the seq_file buffer (record 0
		// only: the read asked for 30 bytes) is still returned; then EOF,
		// because the staged list is empty. Records 1-4 are never read.
		rest := readAllWith(t, fd, 4096)
		require.Equal(t, rec0[30:], rest)
		require.NoError(t, fd.Close())
	})
	t.Run("a second A on the same fd skips the new staged records", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 3})
		fd := f.open(Root(1), BinaryRuntimeMeasurementsStaged, rdwr)
		_, err := fd.Write([]byte("A\n"))
		require.NoError(t, err)
		first := readAllWith(t, fd, 4096) // index 3, at EOF
		require.Equal(t, f.render(measlist.Staged, f.layout.SHA1Index(), false), first)
		_, err = fd.Write([]byte("D\n"))
		require.NoError(t, err)
		f.addRecords(5)
		_, err = fd.Write([]byte("A\n"))
		require.NoError(t, err)
		staged := f.render(measlist.Staged, f.layout.SHA1Index(), false)
		second := readAllWith(t, fd, 4096)
		require.NotEmpty(t, second)
		require.Less(t, len(second), len(staged), "the first three of the five new staged records are skipped")
		require.Equal(t, staged[len(staged)-len(second):], second)
		_, err = fd.Seek(0, io.SeekStart)
		require.NoError(t, err)
		require.Equal(t, staged, readAllWith(t, fd, 4096))
		require.NoError(t, fd.Close())
	})
}

// TestCounterFileReads checks ima_show_counter() with
// simple_read_from_buffer(): "%li\n", read from the offset, re-rendered at
// each read.
func TestCounterFileReads(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Records: 12})
	c := f.open(Root(1), RuntimeMeasurementsCount, rdonly)
	b := make([]byte, 1)
	n, err := c.Read(b)
	require.NoError(t, err)
	require.Equal(t, "1", string(b[:n]))
	f.addRecords(88) // 100 now: the rest is read from the new rendering
	rest, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "00\n", string(rest))
	require.NoError(t, c.Close())
	require.Equal(t, "0\n", f.counter(Violations))
}
