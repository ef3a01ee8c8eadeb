package staging

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// writeState is the queue state a write-grammar row starts from.
type writeState int

const (
	stCurrent10       writeState = iota // 10 current records, nothing staged
	stStaged                            // 10 staged records, 2 current
	stStagedNoCurrent                   // 10 staged records, none current
	stEmpty                             // nothing anywhere (after A and D)
	stSuspended                         // stCurrent10, suspended
	stStagedSuspended                   // stStaged, suspended
	stEmptySuspended                    // stEmpty, suspended
)

// setup brings a fresh fixture to the state.
func (st writeState) setup(t *testing.T, flush bool) *fixture {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Staging: true, FlushHtable: flush, Records: 10})
	switch st {
	case stStaged, stStagedSuspended:
		require.NoError(t, f.q.Stage())
		f.addRecords(2)
	case stStagedNoCurrent:
		require.NoError(t, f.q.Stage())
	case stEmpty, stEmptySuspended:
		require.NoError(t, f.q.Stage())
		_, err := f.q.DeleteStaged()
		require.NoError(t, err)
	}
	if st == stSuspended || st == stStagedSuspended || st == stEmptySuspended {
		f.q.Suspend()
	}
	return f
}

// TestWriteGrammar is the table of docs/SPEC.md §3.4: every row writes p in one
// write() to a file (original or _staged) of a kernel in a given state, and
// checks the errno (wrapped in *fs.PathError "write"), the return value
// (len(p) on success) and the counters afterwards.
func TestWriteGrammar(t *testing.T) {
	const (
		orig   = BinaryRuntimeMeasurements
		staged = BinaryRuntimeMeasurementsStaged
		ok     = syscall.Errno(0)
	)
	type row struct {
		name             string
		file             string
		p                string
		state            writeState
		flush            bool
		want             syscall.Errno
		current, stagedN int64 // counters after; -1: unchanged from the state
	}
	rows := []row{
		// Length: 2 to 21 bytes.
		{"1 byte A", staged, "A", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"1 byte newline", staged, "\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"1 byte digit", orig, "5", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"empty", orig, "", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"2 bytes A", staged, "A\n", stCurrent10, false, ok, 0, 10},
		{"2 bytes N", orig, "5\n", stCurrent10, false, ok, 5, 0},
		{"21 bytes: 20 digits", orig, "00000000000000000007\n", stCurrent10, false, ok, 3, 0},
		{"21 bytes: ULONG_MAX", orig, "18446744073709551615\n", stCurrent10, false, syscall.ENOENT, -1, -1},
		{"22 bytes: valid number too long", orig, "000000000000000000007\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"22 bytes: ULONG_MAX with +", orig, "+18446744073709551615\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		// The final newline.
		{"A without newline", staged, "A ", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"AA", staged, "AA", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"N without newline", orig, "55", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"newline not last", orig, "5\nx", stCurrent10, false, syscall.EINVAL, -1, -1},
		// A and D: exactly two bytes, on a _staged file.
		{"A on staged", staged, "A\n", stCurrent10, false, ok, 0, 10},
		{"A on staged ASCII", ASCIIRuntimeMeasurementsStaged, "A\n", stCurrent10, false, ok, 0, 10},
		{"A on sha256 staged", "binary_runtime_measurements_sha256_staged", "A\n", stCurrent10, false, ok, 0, 10},
		{"A on original", orig, "A\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"A on original ASCII", ASCIIRuntimeMeasurements, "A\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"D on staged", staged, "D\n", stStaged, false, ok, 2, 0},
		{"D on original", orig, "D\n", stStaged, false, syscall.EINVAL, -1, -1},
		{"A5", staged, "A5\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"A5 on original", orig, "A5\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"D5", staged, "D5\n", stStaged, false, syscall.EINVAL, -1, -1},
		{"A NUL", staged, "A\x00\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"lower-case a", staged, "a\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		// A's and D's own errors, in order.
		{"A twice: EEXIST", staged, "A\n", stStaged, false, syscall.EEXIST, -1, -1},
		{"A with nothing current: ENOENT", staged, "A\n", stEmpty, false, syscall.ENOENT, -1, -1},
		{"A staged and nothing current: EEXIST first", staged, "A\n", stStagedNoCurrent, false, syscall.EEXIST, -1, -1},
		{"A suspended: EACCES", staged, "A\n", stSuspended, false, syscall.EACCES, -1, -1},
		{"A staged and suspended: EEXIST first", staged, "A\n", stStagedSuspended, false, syscall.EEXIST, -1, -1},
		{"A empty and suspended: ENOENT first", staged, "A\n", stEmptySuspended, false, syscall.ENOENT, -1, -1},
		{"D with nothing staged: ENOENT", staged, "D\n", stCurrent10, false, syscall.ENOENT, -1, -1},
		{"D suspended: ESTALE", staged, "D\n", stStagedSuspended, false, syscall.ESTALE, -1, -1},
		{"D empty and suspended: ENOENT first", staged, "D\n", stSuspended, false, syscall.ENOENT, -1, -1},
		{"D with flush", staged, "D\n", stStaged, true, ok, 2, 0},
		{"A with flush", staged, "A\n", stCurrent10, true, ok, 0, 10},
		// N: kstrtoul(s, 10) on an original file.
		{"N", orig, "3\n", stCurrent10, false, ok, 7, 0},
		{"N with +", orig, "+3\n", stCurrent10, false, ok, 7, 0},
		{"N with ++", orig, "++3\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"N with leading zeros", orig, "0003\n", stCurrent10, false, ok, 7, 0},
		{"N with one extra newline", orig, "5\n\n", stCurrent10, false, ok, 5, 0},
		{"N with two extra newlines", orig, "5\n\n\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"N with embedded NUL: cut there", orig, "4\x00junk\n", stCurrent10, false, ok, 6, 0},
		{"NUL first: empty string", orig, "\x004\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"newline first", orig, "\n\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"leading space", orig, " 5\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"trailing space", orig, "5 \n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"negative", orig, "-5\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"hex", orig, "0x10\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"hex digits", orig, "a\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"zero", orig, "0\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"zeros", orig, "0000\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"+ alone", orig, "+\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"ULONG_MAX parses, then too few records", orig, "18446744073709551615\n", stCurrent10, false, syscall.ENOENT, -1, -1},
		{"ULONG_MAX+1: ERANGE", orig, "18446744073709551616\n", stCurrent10, false, syscall.ERANGE, -1, -1},
		{"20 nines: ERANGE", orig, "99999999999999999999\n", stCurrent10, false, syscall.ERANGE, -1, -1},
		{"+ and 19 nines: 21 bytes, parses", orig, "+9999999999999999999\n", stCurrent10, false, syscall.ENOENT, -1, -1},
		{"all records", orig, "10\n", stCurrent10, false, ok, 0, 0},
		{"one more than there are: ENOENT", orig, "11\n", stCurrent10, false, syscall.ENOENT, -1, -1},
		{"N with staged records: only current", orig, "2\n", stStaged, false, ok, 0, 10},
		{"N on ASCII original", ASCIIRuntimeMeasurements, "2\n", stCurrent10, false, ok, 8, 0},
		{"N on sha256 original", "binary_runtime_measurements_sha256", "2\n", stCurrent10, false, ok, 8, 0},
		{"N suspended: ESTALE", orig, "2\n", stSuspended, false, syscall.ESTALE, -1, -1},
		{"N too large and suspended: ENOENT first", orig, "11\n", stSuspended, false, syscall.ENOENT, -1, -1},
		// N refused on _staged files and with ima_flush_htable.
		{"N on staged", staged, "5\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"N on ASCII staged", ASCIIRuntimeMeasurementsStaged, "5\n", stCurrent10, false, syscall.EINVAL, -1, -1},
		{"N with flush", orig, "5\n", stCurrent10, true, syscall.EINVAL, -1, -1},
		{"overflow with flush: flush first", orig, "99999999999999999999\n", stCurrent10, true, syscall.EINVAL, -1, -1},
		{"junk with flush", orig, "x\n", stCurrent10, true, syscall.EINVAL, -1, -1},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.state.setup(t, tc.flush)
			cur0, stg0 := f.q.NumRecords(measlist.Binary), f.q.NumRecords(measlist.BinaryStaged)
			w := f.open(Root(1), tc.file, wronly)
			n, err := w.Write([]byte(tc.p))
			require.NoError(t, w.Close())
			if tc.want == ok {
				require.NoError(t, err)
				require.Equal(t, len(tc.p), n, "success returns the byte count")
			} else {
				require.Zero(t, n)
				requireErrno(t, err, tc.want, "write")
			}
			wantCur, wantStg := tc.current, tc.stagedN
			if wantCur < 0 {
				wantCur = cur0
			}
			if wantStg < 0 {
				wantStg = stg0
			}
			require.Equal(t, wantCur, f.q.NumRecords(measlist.Binary), "BINARY")
			require.Equal(t, wantStg, f.q.NumRecords(measlist.BinaryStaged), "BINARY_STAGED")
			require.Equal(t, fmt.Sprintf("%d\n", wantCur), f.counter(RuntimeMeasurementsCount))
			require.Equal(t, MeasureState{}, f.state())
		})
	}
}

// TestKstrtoul checks the base-10 kstrtoul() rules directly, including
// those the 21-byte limit makes unreachable through the files (junk after
// overflowing digits is ERANGE, not EINVAL).
func TestKstrtoul(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  error
	}{
		{"0", 0, nil},
		{"+0", 0, nil},
		{"42", 42, nil},
		{"42\n", 42, nil},
		{"0042", 42, nil},
		{"+42", 42, nil},
		{"18446744073709551615", 18446744073709551615, nil},
		{"018446744073709551615", 18446744073709551615, nil},
		{"18446744073709551616", 0, syscall.ERANGE},
		{"184467440737095516150", 0, syscall.ERANGE},
		{"99999999999999999999x", 0, syscall.ERANGE},
		{"99999999999999999999\nx", 0, syscall.ERANGE},
		{"", 0, syscall.EINVAL},
		{"+", 0, syscall.EINVAL},
		{"++1", 0, syscall.EINVAL},
		{"-1", 0, syscall.EINVAL},
		{" 1", 0, syscall.EINVAL},
		{"1 ", 0, syscall.EINVAL},
		{"1\n\n", 0, syscall.EINVAL},
		{"\n", 0, syscall.EINVAL},
		{"0x10", 0, syscall.EINVAL},
		{"1a", 0, syscall.EINVAL},
		{"1\x00junk", 1, nil},
	}
	for _, tc := range tests {
		got, err := Kstrtoul([]byte(tc.in))
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

// TestCounterFilesAfterEachEvent is the table of docs/SPEC.md §3.5:
// runtime_measurements_count and violations after A, D, N, a measurement
// and a violation.
func TestCounterFilesAfterEachEvent(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 8})
	check := func(count, violations string) {
		t.Helper()
		require.Equal(t, count, f.counter(RuntimeMeasurementsCount))
		require.Equal(t, violations, f.counter(Violations))
	}
	check("8\n", "0\n")
	f.addViolation()
	check("9\n", "1\n")
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("A\n")))
	check("0\n", "1\n")
	f.addRecords(3)
	check("3\n", "1\n")
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("D\n")))
	check("3\n", "1\n")
	f.addViolation()
	check("4\n", "2\n")
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurements, []byte("3\n")))
	check("1\n", "2\n")
	// A violation that fails to be recorded still counts (the counter
	// moves first).
	f.q.Suspend()
	f.q.AddViolation()
	check("1\n", "3\n")
}

// TestRepeatedWritesOnOneDescriptor checks that the write offset is
// ignored: every write() on one descriptor is a whole command, after
// successes, failures and reads alike.
func TestRepeatedWritesOnOneDescriptor(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 6})
	w := f.open(Root(1), BinaryRuntimeMeasurements, rdwr)
	for want := 5; want >= 3; want-- {
		n, err := w.Write([]byte("1\n"))
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, fmt.Sprintf("%d\n", want), f.counter(RuntimeMeasurementsCount))
	}
	_, err := w.Write([]byte("9\n"))
	requireErrno(t, err, syscall.ENOENT, "write")
	// Reading moves the offset; the next write still parses from byte 0.
	_, err = io.ReadFull(w, make([]byte, 10))
	require.NoError(t, err)
	n, err := w.Write([]byte("2\n"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, "1\n", f.counter(RuntimeMeasurementsCount))
	require.NoError(t, w.Close())

	s := f.open(Root(1), BinaryRuntimeMeasurementsStaged, rdwr)
	steps := []struct {
		p    string
		want syscall.Errno
	}{
		{"A\n", 0}, {"A\n", syscall.EEXIST}, {"D\n", 0}, {"D\n", syscall.ENOENT}, {"A\n", syscall.ENOENT},
	}
	for i, st := range steps {
		_, err := s.Write([]byte(st.p))
		if st.want == 0 {
			require.NoError(t, err, "step %d", i)
		} else {
			requireErrno(t, err, st.want, "write")
		}
	}
	f.addRecords(2)
	n, err = s.Write([]byte("A\n"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, int64(2), f.q.NumRecords(measlist.BinaryStaged))
	require.NoError(t, s.Close())
}

// TestFindingQ3FlushAllocationFailure shows docs/SPEC.md Q3: with ima_flush_htable
// a D whose new bucket array cannot be allocated returns ENOMEM after the
// staged records were detached and BINARY_STAGED zeroed. They are in no
// list any more: the _staged files read empty, a second D is ENOENT, and
// nothing brings them back.
func TestFindingQ3FlushAllocationFailure(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, FlushHtable: true, Records: 5})
	fail := false
	f.q.SetFailAlloc(func() bool { return fail })
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("A\n")))
	f.addRecords(2)
	fail = true
	err := WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("D\n"))
	requireErrno(t, err, syscall.ENOMEM, "write")
	require.Zero(t, f.q.NumRecords(measlist.BinaryStaged))
	b, err := ReadFile(f.root(), BinaryRuntimeMeasurementsStaged)
	require.NoError(t, err)
	require.Empty(t, b, "the staged records are gone from the staged list")
	require.Equal(t, "2\n", f.counter(RuntimeMeasurementsCount), "the current list is untouched")
	require.Len(t, f.q.Entries(measlist.Current), 2)
	fail = false
	err = WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("D\n"))
	requireErrno(t, err, syscall.ENOENT, "write")
	// The five records are counted in BINARY_FULL but are in no list.
	require.Equal(t, int64(7), f.q.NumRecords(measlist.BinaryFull))
}

// TestWriteDoesNotNeedReading checks that D deletes the staged records
// whether or not they were read (the kernel does not track reads), and that
// writes through ASCII files act on the same lists as binary ones.
func TestWriteDoesNotNeedReading(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Staging: true, Records: 4})
	require.NoError(t, WriteFile(f.root(), "ascii_runtime_measurements_sha256_staged", []byte("A\n")))
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("D\n")))
	for _, lf := range f.listFiles() {
		if strings.HasSuffix(lf.name, "_staged") {
			b, err := ReadFile(f.root(), lf.name)
			require.NoError(t, err)
			require.Empty(t, b)
		}
	}
}
