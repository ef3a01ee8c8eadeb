package staging

import (
	"math"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// Tasks of the permission table. Every file is root:root; list files are
// 0660, counters 0440.
var (
	taskRoot          = Root(1)
	taskUID0NoCaps    = Task{TID: 2}                                            // uid 0, no capabilities (owner bits)
	taskGroupMember   = Task{TID: 3, UID: 1000, GID: 1000, Groups: []uint32{0}} // supplementary group root
	taskGroupPrimary  = Task{TID: 4, UID: 1000, GID: 0}                         // primary group root
	taskGroupAdmin    = Task{TID: 5, UID: 1000, GID: 1000, Groups: []uint32{0}, CapSysAdmin: true}
	taskOther         = Task{TID: 6, UID: 1000, GID: 1000}
	taskOtherAdmin    = Task{TID: 7, UID: 1000, GID: 1000, CapSysAdmin: true}
	taskOtherReadDAC  = Task{TID: 8, UID: 1000, GID: 1000, CapDACReadSearch: true}
	taskOtherOverride = Task{TID: 9, UID: 1000, GID: 1000, CapDACOverride: true}
	taskOtherBoth     = Task{TID: 10, UID: 1000, GID: 1000, CapDACOverride: true, CapSysAdmin: true}
)

// TestOpenPermissions is the first two checks of docs/SPEC.md §3.3, in order: the
// VFS permission check against the mode (EACCES), then CAP_SYS_ADMIN for a
// write open of a list file (EPERM). Counter files are only DAC-checked.
func TestOpenPermissions(t *testing.T) {
	const ok = syscall.Errno(0)
	tests := []struct {
		name                   string
		task                   Task
		listRead, listWrite    syscall.Errno
		countRead, countWrite  syscall.Errno
		countWriteReachesWrite bool // the open succeeds and write() gives EINVAL
	}{
		{"root", taskRoot, ok, ok, ok, ok, true},
		{"uid 0 without capabilities", taskUID0NoCaps, ok, syscall.EPERM, ok, syscall.EACCES, false},
		{"member of group root", taskGroupMember, ok, syscall.EPERM, ok, syscall.EACCES, false},
		{"primary group root", taskGroupPrimary, ok, syscall.EPERM, ok, syscall.EACCES, false},
		{"group root with CAP_SYS_ADMIN", taskGroupAdmin, ok, ok, ok, syscall.EACCES, false},
		{"other", taskOther, syscall.EACCES, syscall.EACCES, syscall.EACCES, syscall.EACCES, false},
		{"other with CAP_SYS_ADMIN: EACCES comes first", taskOtherAdmin, syscall.EACCES, syscall.EACCES, syscall.EACCES, syscall.EACCES, false},
		{"other with CAP_DAC_READ_SEARCH", taskOtherReadDAC, ok, syscall.EACCES, ok, syscall.EACCES, false},
		{"other with CAP_DAC_OVERRIDE: then EPERM", taskOtherOverride, ok, syscall.EPERM, ok, ok, true},
		{"other with CAP_DAC_OVERRIDE and CAP_SYS_ADMIN", taskOtherBoth, ok, ok, ok, ok, true},
	}
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Staging: true, Records: 2})
	// The first and third names are links (mode 0444): the check uses the
	// target's mode, so writes reach EPERM or succeed, never EACCES.
	lists := []string{BinaryRuntimeMeasurements, "ascii_runtime_measurements_sha256", BinaryRuntimeMeasurementsStaged, "ascii_runtime_measurements_sha256_staged"}
	counters := []string{RuntimeMeasurementsCount, Violations}
	try := func(t *testing.T, task Task, name string, flag int, want syscall.Errno) *SimFile {
		t.Helper()
		sf, err := f.s.Open(task, name, flag)
		if want == ok {
			require.NoError(t, err, "%s flag %d", name, flag)
			return sf
		}
		requireErrno(t, err, want, "open")
		require.Nil(t, sf)
		return nil
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range lists {
				if sf := try(t, tc.task, name, rdonly, tc.listRead); sf != nil {
					require.NoError(t, sf.Close())
				}
				for _, flag := range []int{wronly, rdwr, echo} {
					if sf := try(t, tc.task, name, flag, tc.listWrite); sf != nil {
						require.NoError(t, sf.Close())
					}
				}
			}
			for _, name := range counters {
				if sf := try(t, tc.task, name, rdonly, tc.countRead); sf != nil {
					require.NoError(t, sf.Close())
				}
				if sf := try(t, tc.task, name, wronly, tc.countWrite); sf != nil {
					require.True(t, tc.countWriteReachesWrite)
					n, err := sf.Write([]byte("0\n"))
					require.Zero(t, n)
					requireErrno(t, err, syscall.EINVAL, "write") // no write operation
					require.NoError(t, sf.Close())
				}
			}
			require.Equal(t, MeasureState{}, f.state(), "every open was undone")
		})
	}
}

// TestOpenMediation is the third check of docs/SPEC.md §3.3: many readers across
// every list file, or one writer task, which may open more list files for
// write or read-write but gets EBUSY reading.
func TestOpenMediation(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Staging: true, Records: 2})
	w, other := Root(100), Root(200)

	// Readers across original and staged, binary and ASCII, both banks.
	var readers []*SimFile
	for i, name := range []string{BinaryRuntimeMeasurements, ASCIIRuntimeMeasurementsStaged, "binary_runtime_measurements_sha256",
		"ascii_runtime_measurements_sha256_staged", BinaryRuntimeMeasurements} {
		readers = append(readers, f.open(Root(10+i), name, rdonly))
		require.Equal(t, MeasureState{Users: int64(i + 1)}, f.state())
	}
	// A writer is refused while any reader is open, whichever file.
	for _, name := range []string{BinaryRuntimeMeasurementsStaged, BinaryRuntimeMeasurements, "ascii_runtime_measurements_sha256"} {
		for _, flag := range []int{wronly, rdwr} {
			_, err := f.s.Open(w, name, flag)
			requireErrno(t, err, syscall.EBUSY, "open")
		}
	}
	// Even a task that already holds a reader.
	_, err := f.s.Open(Root(10), BinaryRuntimeMeasurementsStaged, rdwr)
	requireErrno(t, err, syscall.EBUSY, "open")
	for i, r := range readers {
		require.NoError(t, r.Close())
		require.Equal(t, int64(len(readers)-i-1), f.state().Users)
	}

	// One writer.
	w1 := f.open(w, BinaryRuntimeMeasurementsStaged, rdwr)
	require.Equal(t, MeasureState{Users: -1, Writer: 100, HasWriter: true}, f.state())
	// Other tasks: EBUSY for readers and writers, on every list file.
	for _, name := range []string{BinaryRuntimeMeasurementsStaged, ASCIIRuntimeMeasurements, "binary_runtime_measurements_sha256_staged"} {
		for _, flag := range []int{rdonly, wronly, rdwr} {
			_, err := f.s.Open(other, name, flag)
			requireErrno(t, err, syscall.EBUSY, "open")
		}
	}
	// The writer itself may not open read-only: it must use O_RDWR.
	_, err = f.s.Open(w, BinaryRuntimeMeasurements, rdonly)
	requireErrno(t, err, syscall.EBUSY, "open")
	_, err = f.s.Open(w, BinaryRuntimeMeasurementsStaged, rdonly)
	requireErrno(t, err, syscall.EBUSY, "open")
	// But it may open more list files for write or read-write; each
	// counts in measure_writer_extra_writes.
	w2 := f.open(w, BinaryRuntimeMeasurements, wronly)
	w3 := f.open(w, "ascii_runtime_measurements_sha256_staged", rdwr)
	w4 := f.open(w, BinaryRuntimeMeasurementsStaged, echo)
	require.Equal(t, MeasureState{Users: -1, Writer: 100, HasWriter: true, ExtraWrites: 3}, f.state())
	// Refusals changed nothing.
	_, err = f.s.Open(other, BinaryRuntimeMeasurements, rdonly)
	requireErrno(t, err, syscall.EBUSY, "open")
	require.Equal(t, MeasureState{Users: -1, Writer: 100, HasWriter: true, ExtraWrites: 3}, f.state())

	// Release by the writer, in any order: extras first, then the lock.
	require.NoError(t, w1.Close())
	require.Equal(t, MeasureState{Users: -1, Writer: 100, HasWriter: true, ExtraWrites: 2}, f.state())
	require.NoError(t, w3.Close())
	require.NoError(t, w4.Close())
	require.Equal(t, MeasureState{Users: -1, Writer: 100, HasWriter: true}, f.state())
	_, err = f.s.Open(other, BinaryRuntimeMeasurements, rdonly)
	requireErrno(t, err, syscall.EBUSY, "open")
	require.NoError(t, w2.Close())
	require.Equal(t, MeasureState{}, f.state())

	// Free again: another writer, then readers after it.
	w5 := f.open(other, BinaryRuntimeMeasurements, wronly)
	require.NoError(t, w5.Close())
	r := f.open(w, BinaryRuntimeMeasurementsStaged, rdonly)
	require.NoError(t, r.Close())
	require.Equal(t, MeasureState{}, f.state())
}

// TestOpenENFILE is the overflow guard of ima_measure_lock(): a reader is
// refused with ENFILE when ima_measure_users is LONG_MAX; a writer then
// gets EBUSY (users != 0).
func TestOpenENFILE(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 1})
	f.s.measureMutex.Lock()
	f.s.users = math.MaxInt64 - 1
	f.s.measureMutex.Unlock()
	last := f.open(Root(1), BinaryRuntimeMeasurements, rdonly) // users becomes LONG_MAX
	require.Equal(t, int64(math.MaxInt64), f.state().Users)
	_, err := f.s.Open(Root(2), ASCIIRuntimeMeasurementsStaged, rdonly)
	requireErrno(t, err, syscall.ENFILE, "open")
	_, err = f.s.Open(Root(2), BinaryRuntimeMeasurementsStaged, wronly)
	requireErrno(t, err, syscall.EBUSY, "open")
	// Counter files are not mediated.
	require.Equal(t, "1\n", f.counter(RuntimeMeasurementsCount))
	require.NoError(t, last.Close())
	again := f.open(Root(2), ASCIIRuntimeMeasurementsStaged, rdonly)
	require.NoError(t, again.Close())
	require.Equal(t, int64(math.MaxInt64-1), f.state().Users)
}

// TestCounterFilesNotMediated checks that runtime_measurements_count and
// violations open and read while a writer holds the list files and while
// readers do, and never change the bookkeeping.
func TestCounterFilesNotMediated(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 4})
	w := f.open(Root(100), BinaryRuntimeMeasurementsStaged, rdwr)
	st := f.state()
	for _, task := range []Task{Root(100), Root(200), taskGroupMember} {
		for _, name := range []string{RuntimeMeasurementsCount, Violations} {
			b, err := ReadFile(f.s.As(task), name)
			require.NoError(t, err)
			require.Contains(t, []string{"4\n", "0\n"}, string(b))
		}
	}
	require.Equal(t, st, f.state())
	require.NoError(t, w.Close())
	r := f.open(Root(300), BinaryRuntimeMeasurements, rdonly)
	c := f.open(Root(300), Violations, rdonly)
	require.Equal(t, MeasureState{Users: 1}, f.state())
	require.NoError(t, c.Close())
	require.NoError(t, r.Close())
	require.Equal(t, MeasureState{}, f.state())
}

// TestReleaseRules is ima_measure_unlock() as seen through close(): the
// release runs in the context of the task that drops the file, which is
// compared with measure_writer.
func TestReleaseRules(t *testing.T) {
	w, other := Root(100), Root(200)
	t.Run("reader closed by another task", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 1})
		r := f.open(w, BinaryRuntimeMeasurements, rdonly)
		require.NoError(t, r.CloseAs(other))
		require.Equal(t, MeasureState{}, f.state())
	})
	t.Run("single writer fd closed by another task", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 1})
		w1 := f.open(w, BinaryRuntimeMeasurementsStaged, wronly)
		require.NoError(t, w1.CloseAs(other)) // users++ back to 0: harmless
		require.Equal(t, MeasureState{}, f.state())
		require.NoError(t, f.open(other, BinaryRuntimeMeasurementsStaged, wronly).Close())
	})
	t.Run("extra writer fd closed by another task before the writer's last", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 1})
		w1 := f.open(w, BinaryRuntimeMeasurementsStaged, wronly)
		w2 := f.open(w, BinaryRuntimeMeasurements, rdwr)
		require.NoError(t, w2.Close()) // the writer drops its extra: extra--
		require.NoError(t, w1.CloseAs(other))
		require.Equal(t, MeasureState{}, f.state())
	})
	t.Run("double close", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 1})
		r := f.open(w, BinaryRuntimeMeasurements, rdonly)
		require.NoError(t, r.Close())
		require.Error(t, r.Close())
		_, err := r.Read(make([]byte, 10))
		require.Error(t, err)
		_, err = r.Write([]byte("1\n"))
		require.Error(t, err)
		require.Equal(t, MeasureState{}, f.state())
	})
}

// TestFindingQ4ReleaseByAnotherTaskBlocksWriters reproduces docs/SPEC.md Q4: the
// writer holds two list fds; another task (a fork child, another thread)
// drops the first. That release takes the "not the writer" path: users++
// (to 0) and measure_writer = NULL. When the writer then closes its other
// fd it is no longer measure_writer, so users++ again: users stays at 1 for
// good. Readers still come and go; every writer, the old one included, gets
// EBUSY from then on.
func TestFindingQ4ReleaseByAnotherTaskBlocksWriters(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 3})
	w, child := Root(100), Root(101)
	fd1 := f.open(w, BinaryRuntimeMeasurementsStaged, rdwr)
	fd2 := f.open(w, BinaryRuntimeMeasurements, wronly)
	require.Equal(t, MeasureState{Users: -1, Writer: 100, HasWriter: true, ExtraWrites: 1}, f.state())

	require.NoError(t, fd1.CloseAs(child))
	require.Equal(t, MeasureState{Users: 0, ExtraWrites: 1}, f.state())
	require.NoError(t, fd2.Close())
	require.Equal(t, MeasureState{Users: 1, ExtraWrites: 1}, f.state())

	for _, task := range []Task{w, child, Root(300)} {
		for _, name := range []string{BinaryRuntimeMeasurementsStaged, BinaryRuntimeMeasurements} {
			_, err := f.s.Open(task, name, wronly)
			requireErrno(t, err, syscall.EBUSY, "open")
		}
	}
	// Readers are admitted and leave users at 1.
	r := f.open(Root(300), BinaryRuntimeMeasurements, rdonly)
	require.Equal(t, int64(2), f.state().Users)
	require.NoError(t, r.Close())
	require.Equal(t, int64(1), f.state().Users)
	err := WriteFile(f.root(), BinaryRuntimeMeasurementsStaged, []byte("A\n"))
	requireErrno(t, err, syscall.EBUSY, "open")
}

// TestFindingWriterIdentityIsAThread shows why a Go agent on a real kernel
// must keep a writer transaction on one OS thread (runtime.LockOSThread):
// measure_writer is a task, that is a thread. Two threads of one process
// (same uid, same capabilities) are two tasks: the second cannot join the
// first's writer lock, and an extra fd closed on the other thread hits the
// Q4 path.
func TestFindingWriterIdentityIsAThread(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Staging: true, Records: 3})
	thread1, thread2 := Root(4242), Root(4243) // one process, two threads
	fd1 := f.open(thread1, BinaryRuntimeMeasurementsStaged, rdwr)
	// The goroutine was moved to another OS thread before its next open.
	_, err := f.s.Open(thread2, BinaryRuntimeMeasurements, wronly)
	requireErrno(t, err, syscall.EBUSY, "open")
	// Writes through an fd work from any thread: the fd carries no task.
	n, err := fd1.Write([]byte("A\n"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	fd2 := f.open(thread1, BinaryRuntimeMeasurements, wronly)
	// Closing fd2 on thread2 is a release by a task that is not the writer.
	require.NoError(t, fd2.CloseAs(thread2))
	require.NoError(t, fd1.Close())
	require.Equal(t, int64(1), f.state().Users, "users left positive for good (Q4)")
	_, err = f.s.Open(thread1, BinaryRuntimeMeasurementsStaged, rdwr)
	requireErrno(t, err, syscall.EBUSY, "open")
}

// TestOpenErrorsArePathErrors checks the shape of open errors and the
// lookup errors that precede the §3.3 checks.
func TestOpenErrorsArePathErrors(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, Records: 1})
	_, err := f.s.Open(Root(1), "no_such_file", rdonly)
	requireErrno(t, err, syscall.ENOENT, "open")
	_, err = f.s.Open(Root(1), BinaryRuntimeMeasurements, wronly|os.O_CREATE|os.O_EXCL)
	requireErrno(t, err, syscall.EEXIST, "open")
	_, err = f.s.Open(Root(1), BinaryRuntimeMeasurements, 3) // O_ACCMODE
	requireErrno(t, err, syscall.EINVAL, "open")
	require.Equal(t, MeasureState{}, f.state())
	// Reading an O_WRONLY fd and writing an O_RDONLY one: EBADF.
	w := f.open(Root(1), BinaryRuntimeMeasurements, wronly)
	_, err = w.Read(make([]byte, 8))
	requireErrno(t, err, syscall.EBADF, "read")
	require.NoError(t, w.Close())
	r := f.open(Root(1), BinaryRuntimeMeasurements, rdonly)
	_, err = r.Write([]byte("1\n"))
	requireErrno(t, err, syscall.EBADF, "write")
	require.NoError(t, r.Close())
	require.True(t, slices.ContainsFunc(f.s.ReadDir(), func(e DirEntry) bool { return e.Name == BinaryRuntimeMeasurements }))
}
