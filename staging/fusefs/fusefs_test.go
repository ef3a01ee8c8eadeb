package fusefs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/require"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// newSecurityFS returns a securityfs with staging and n file records (no
// boot_aggregate: the tests only need records).
func newSecurityFS(t *testing.T, n int) *staging.SecurityFS {
	t.Helper()
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	layout, err := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
	require.NoError(t, err)
	q, err := measlist.New(measlist.Config{Layout: layout, TPM: tpm})
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("/usr/bin/tool-%03d", i)
		ev, err := template.NewFileEvent(path, &template.File{Content: []byte(path)}, layout.HashAlgo(), nil)
		require.NoError(t, err)
		e, err := layout.NewEntry(template.Builtin("ima-ng"), 10, ev)
		require.NoError(t, err)
		require.NoError(t, q.Add(e))
	}
	s, err := staging.New(staging.Config{Queue: q, Staging: true})
	require.NoError(t, err)
	return s
}

// caller is a FUSE caller with thread id pid; its capabilities are read
// from /proc/PID/status.
func caller(pid int) fuse.Caller { return fuse.Caller{Pid: uint32(pid)} }

func lookup(t *testing.T, f *FS, name string) uint64 {
	t.Helper()
	var out fuse.EntryOut
	require.Equal(t, fuse.OK, f.Lookup(nil, &fuse.InHeader{NodeId: rootID}, name, &out), name)
	return out.NodeId
}

func open(t *testing.T, f *FS, name string, flags uint32, pid int) (uint64, fuse.Status) {
	t.Helper()
	var out fuse.OpenOut
	st := f.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: lookup(t, f, name), Caller: caller(pid)}, Flags: flags}, &out)
	if st == fuse.OK {
		require.NotZero(t, out.OpenFlags&fuse.FOPEN_DIRECT_IO, "files are opened with direct_io")
	}
	return out.Fh, st
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the caller's capabilities are read from /proc")
	}
}

// readAll reads like cat: READs of size bytes at the offsets the kernel
// would send, each continuing where the last one ended.
func readAll(t *testing.T, f *FS, fh, off uint64, size int) ([]byte, uint64) {
	t.Helper()
	var all []byte
	buf := make([]byte, size)
	for {
		res, st := f.Read(nil, &fuse.ReadIn{Fh: fh, Offset: off, Size: uint32(size)}, buf)
		require.Equal(t, fuse.OK, st)
		data, st := res.Bytes(make([]byte, size))
		require.Equal(t, fuse.OK, st)
		if len(data) == 0 {
			return all, off
		}
		all = append(all, data...)
		off += uint64(len(data))
	}
}

// TestReadAfterWriteOnOneFile: FUSE moves f_pos by what a write accepted,
// securityfs does not; the READ that follows "A\n" arrives at offset 2 and
// must still give the staged list from its first byte. A READ elsewhere is
// a seek. Fails if Read seeks to every offset it is given.
func TestReadAfterWriteOnOneFile(t *testing.T) {
	needRoot(t)
	s := newSecurityFS(t, 300)
	want, err := staging.ReadFile(s.As(staging.Root(1)), "binary_runtime_measurements")
	require.NoError(t, err)
	f := New(s)
	fh, st := open(t, f, "binary_runtime_measurements_staged", syscall.O_RDWR, os.Getpid())
	require.Equal(t, fuse.OK, st)
	n, st := f.Write(nil, &fuse.WriteIn{Fh: fh, Offset: 0}, []byte("A\n"))
	require.Equal(t, fuse.OK, st)
	require.Equal(t, uint32(2), n)
	got, end := readAll(t, f, fh, 2, 1<<17)
	require.Equal(t, want, got, "A, then read on the same descriptor")
	// An lseek(fd, 100, SEEK_SET): the next READ is at 100.
	tail, _ := readAll(t, f, fh, 100, 1000)
	require.Equal(t, want[100:], tail)
	_, st = f.Write(nil, &fuse.WriteIn{Fh: fh, Offset: end}, []byte("D\n"))
	require.Equal(t, fuse.OK, st)
	f.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{Caller: caller(os.Getpid())}, Fh: fh})
	f.Release(nil, &fuse.ReleaseIn{Fh: fh})
	ms := s.MeasureState()
	require.Zero(t, ms.Users)
	require.False(t, ms.HasWriter)
	require.Zero(t, f.OpenFiles())
}

// TestReleaseAsLastCloser: the writer (task 100) holds two files; a child
// (task 200) closes the last descriptor of the first, the writer the
// second. The kernel's release runs as the closing task, so docs/SPEC.md Q4 leaves
// ima_measure_users at 1; a release without any FLUSH runs as the opener.
func TestReleaseAsLastCloser(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name      string
		closers   [2]int // FLUSH pids per file; 0: no FLUSH
		wantUsers int64
	}{
		{"child closes the first file (Q4)", [2]int{200, 100}, 1},
		{"the writer closes both", [2]int{100, 100}, 0},
		{"no FLUSH: released as the opener", [2]int{0, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSecurityFS(t, 3)
			f := New(s)
			// The pids are not real tasks: capabilities come from the
			// status of this process, opened as pid os.Getpid(); the
			// writer identity is what the FLUSH pids are compared with.
			var fhs [2]uint64
			for i := range fhs {
				var st fuse.Status
				fhs[i], st = open(t, f, "binary_runtime_measurements_staged", syscall.O_RDWR, os.Getpid())
				require.Equal(t, fuse.OK, st)
			}
			writer := os.Getpid()
			for i, fh := range fhs {
				if pid := tc.closers[i]; pid != 0 {
					if pid == 100 {
						pid = writer
					}
					f.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{Caller: caller(pid)}, Fh: fh})
				}
				f.Release(nil, &fuse.ReleaseIn{Fh: fh})
			}
			require.Equal(t, tc.wantUsers, s.MeasureState().Users)
		})
	}
}

// TestSwapBindsOpenFiles: a file opened before Swap reads EIO and writes to
// the kernel it was opened on; new opens reach the new kernel.
func TestSwapBindsOpenFiles(t *testing.T) {
	needRoot(t)
	old, next := newSecurityFS(t, 5), newSecurityFS(t, 2)
	f := New(old)
	fh, st := open(t, f, "binary_runtime_measurements_staged", syscall.O_RDWR, os.Getpid())
	require.Equal(t, fuse.OK, st)
	f.Swap(next)
	_, st = f.Read(nil, &fuse.ReadIn{Fh: fh, Size: 4096}, make([]byte, 4096))
	require.Equal(t, fuse.EIO, st)
	_, st = f.Write(nil, &fuse.WriteIn{Fh: fh}, []byte("A\n"))
	require.Equal(t, fuse.OK, st)
	require.EqualValues(t, 5, old.Queue().NumRecords(measlist.BinaryStaged), "A went to the old kernel")
	require.EqualValues(t, 0, next.Queue().NumRecords(measlist.BinaryStaged))
	f.Release(nil, &fuse.ReleaseIn{Fh: fh})
	fh, st = open(t, f, "runtime_measurements_count", syscall.O_RDONLY, os.Getpid())
	require.Equal(t, fuse.OK, st)
	data, _ := readAll(t, f, fh, 0, 100)
	require.Equal(t, "2\n", string(data))
}

// TestDirectory: modes, links, errnos of lookups, creation and truncation.
func TestDirectory(t *testing.T) {
	s := newSecurityFS(t, 1)
	f := New(s)
	var a fuse.AttrOut
	require.Equal(t, fuse.OK, f.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: rootID}}, &a))
	require.Equal(t, uint32(syscall.S_IFDIR|0o755), a.Mode)
	for _, e := range s.ReadDir() {
		id := lookup(t, f, e.Name)
		require.Equal(t, fuse.OK, f.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: id}}, &a))
		require.Zero(t, a.Uid)
		require.Zero(t, a.Gid)
		if e.Target != "" {
			require.Equal(t, uint32(syscall.S_IFLNK|0o444), a.Mode, e.Name)
			target, st := f.Readlink(nil, &fuse.InHeader{NodeId: id})
			require.Equal(t, fuse.OK, st)
			require.Equal(t, e.Target, string(target))
			continue
		}
		require.Equal(t, syscall.S_IFREG|uint32(e.Mode.Perm()), a.Mode, e.Name)
		require.Zero(t, a.Size, "securityfs files report size 0")
	}
	var out fuse.EntryOut
	require.Equal(t, fuse.ENOENT, f.Lookup(nil, &fuse.InHeader{NodeId: rootID}, "policy", &out))
	var cout fuse.CreateOut
	require.Equal(t, fuse.Status(syscall.EACCES), f.Create(nil, &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: rootID},
		Flags: syscall.O_WRONLY | syscall.O_CREAT}, "new", &cout))
	id := lookup(t, f, "binary_runtime_measurements_sha1_staged")
	require.Equal(t, fuse.OK, f.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{
		InHeader: fuse.InHeader{NodeId: id}, Valid: fuse.FATTR_SIZE}}, &a), "O_TRUNC is accepted")
	require.Equal(t, fuse.EPERM, f.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{
		InHeader: fuse.InHeader{NodeId: id}, Valid: fuse.FATTR_SIZE, Size: 5}}, &a))

	list := fuse.NewDirEntryList(make([]byte, 8192), 0)
	require.Equal(t, fuse.OK, f.ReadDir(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: rootID}}, list))
	require.Equal(t, uint64(len(s.ReadDir())+2), list.Offset, "., .. and every file")
}

// TestCallerTask reads the capabilities and groups of a real task.
func TestCallerTask(t *testing.T) {
	data, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	var capEff, capBnd uint64
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			capEff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			require.NoError(t, err)
		}
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			capBnd, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			require.NoError(t, err)
		}
	}
	task := callerTask(fuse.Caller{Owner: fuse.Owner{Uid: 7, Gid: 8}, Pid: uint32(syscall.Gettid())}, false)
	require.Equal(t, syscall.Gettid(), task.TID)
	require.Equal(t, uint32(7), task.UID)
	require.Equal(t, uint32(8), task.GID)
	require.Equal(t, capEff&(1<<21) != 0, task.CapSysAdmin)
	require.Equal(t, capEff&(1<<1) != 0, task.CapDACOverride)
	groups, err := os.Getgroups()
	require.NoError(t, err)
	require.Len(t, task.Groups, len(groups))

	mapped := callerTask(fuse.Caller{Owner: fuse.Owner{Uid: 7, Gid: 8}, Pid: uint32(syscall.Gettid())}, true)
	require.Zero(t, mapped.UID, "MapRoot's user is root")
	require.Zero(t, mapped.GID)
	require.Equal(t, capBnd&(1<<21) != 0, mapped.CapSysAdmin, "with the bounding set's capabilities")

	gone := callerTask(fuse.Caller{Pid: 1 << 30}, false)
	require.False(t, gone.CapSysAdmin || gone.CapDACOverride || gone.CapDACReadSearch,
		"a task whose status cannot be read has no capabilities")
}
