package fusefs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/imasim/imasim/staging"
)

const rootID = fuse.FUSE_ROOT_ID

// view is one kernel's directory, as the mount shows it.
type view struct {
	sfs     *staging.SecurityFS
	entries map[string]staging.DirEntry
	sorted  []staging.DirEntry
	booted  time.Time
}

// handle is one open file (one struct file of the kernel).
type handle struct {
	f      *staging.SimFile
	v      *view
	opener staging.Task
	// mu serialises the file's reads and writes and protects closer and
	// kpos.
	mu sync.Mutex
	// closer is the thread id of the last FLUSH (close(2) of a file
	// descriptor of this file); 0 when none came.
	closer uint32
	// kpos is the kernel's f_pos for this file after the last READ or
	// WRITE: the offset the next read(2) will carry.
	kpos uint64
}

// FS is the FUSE file system: a fuse.RawFileSystem over the current
// kernel's securityfs. Its methods are called concurrently by the FUSE
// server.
type FS struct {
	fuse.RawFileSystem // ENOSYS for what a securityfs directory cannot do

	cur atomic.Pointer[view]

	// mu protects ids, names and handles.
	mu      sync.Mutex
	ids     map[string]uint64 // node id of each name; stable across Swap
	names   map[uint64]string
	handles map[uint64]*handle
	nextFh  uint64

	// rootUID, when hasRoot, is the user taken as root (set once by
	// MapRoot before mounting).
	rootUID uint32
	hasRoot bool
}

// MapRoot makes requests from uid count as root's: uid 0, gid 0, and the
// capabilities of the caller's bounding set (CapBnd) rather than its
// effective set, as the root of a user namespace owned by uid would have.
// It is for mounts made by an unprivileged user (through fusermount3),
// whose files are otherwise closed to that user as securityfs's are. Call
// it before Mount. No kernel counterpart.
func (f *FS) MapRoot(uid uint32) {
	f.rootUID, f.hasRoot = uid, true
}

// task is the task of a FUSE request.
func (f *FS) task(c fuse.Caller) staging.Task {
	return callerTask(c, f.hasRoot && c.Uid == f.rootUID)
}

// New returns the file system of sfs.
func New(sfs *staging.SecurityFS) *FS {
	f := &FS{RawFileSystem: fuse.NewDefaultRawFileSystem(), ids: map[string]uint64{},
		names: map[uint64]string{}, handles: map[uint64]*handle{}}
	f.Swap(sfs)
	return f
}

// Swap puts sfs, a new kernel's securityfs, behind the mount (after a
// kexec or a reboot). Files open on the previous kernel stay bound to it
// (see the package documentation). No kernel counterpart.
func (f *FS) Swap(sfs *staging.SecurityFS) {
	v := &view{sfs: sfs, entries: map[string]staging.DirEntry{}, sorted: sfs.ReadDir(), booted: time.Now()}
	f.mu.Lock()
	for _, e := range v.sorted {
		v.entries[e.Name] = e
		if _, ok := f.ids[e.Name]; !ok {
			id := rootID + 1 + uint64(len(f.ids))
			f.ids[e.Name], f.names[id] = id, e.Name
		}
	}
	f.mu.Unlock()
	f.cur.Store(v)
}

// SecurityFS returns the securityfs the mount shows now.
func (f *FS) SecurityFS() *staging.SecurityFS { return f.cur.Load().sfs }

// OpenFiles returns the number of files open through the mount.
func (f *FS) OpenFiles() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.handles)
}

func (f *FS) String() string { return "imasim" }

// status turns a model error into the errno the caller gets.
func status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fuse.Status(errno)
	}
	if errors.Is(err, fs.ErrClosed) {
		return fuse.Status(syscall.EBADF)
	}
	return fuse.EIO
}

func setTime(a *fuse.Attr, t time.Time) {
	s, ns := uint64(t.Unix()), uint32(t.Nanosecond())
	a.Atime, a.Mtime, a.Ctime = s, s, s
	a.Atimensec, a.Mtimensec, a.Ctimensec = ns, ns, ns
}

// attr fills the attributes of node id in v: root:root, size 0, the
// model's mode; false if the node does not exist in v.
//
// Mirrors security/inode.c:securityfs_create_dentry() (the inode it makes)
// and the directory of securityfs_create_dir() (S_IFDIR | 0755).
func (f *FS) attr(v *view, id uint64, a *fuse.Attr) bool {
	*a = fuse.Attr{Ino: id, Blksize: 4096}
	setTime(a, v.booted)
	if id == rootID {
		a.Mode, a.Nlink = syscall.S_IFDIR|0o755, 2
		return true
	}
	f.mu.Lock()
	name := f.names[id]
	f.mu.Unlock()
	e, ok := v.entries[name]
	if !ok {
		return false
	}
	a.Nlink = 1
	a.Mode = syscall.S_IFREG | uint32(e.Mode.Perm())
	if e.Mode&fs.ModeSymlink != 0 {
		a.Mode = syscall.S_IFLNK | uint32(e.Mode.Perm())
		a.Size = uint64(len(e.Target))
	}
	return true
}

// Lookup finds a name in the directory. Entries are never cached (zero
// timeouts), so a lookup after Swap sees the new kernel.
func (f *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if h.NodeId != rootID {
		return fuse.ENOTDIR
	}
	v := f.cur.Load()
	if _, ok := v.entries[name]; !ok {
		return fuse.ENOENT
	}
	f.mu.Lock()
	id := f.ids[name]
	f.mu.Unlock()
	*out = fuse.EntryOut{NodeId: id}
	f.attr(v, id, &out.Attr)
	return fuse.OK
}

// GetAttr returns a node's attributes.
func (f *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	*out = fuse.AttrOut{}
	if !f.attr(f.cur.Load(), in.NodeId, &out.Attr) {
		return fuse.ENOENT
	}
	return fuse.OK
}

// SetAttr accepts what securityfs's simple_setattr() does for the
// callers that matter here: the truncation to size 0 that open(O_TRUNC)
// makes (`echo A > file`), and time updates (touch), both without effect.
//
// Mirrors fs/libfs.c:simple_setattr(), which securityfs inodes use.
//
// Differences from Linux: chmod, chown and truncation to another size are
// refused with EPERM (securityfs would store them in the inode).
func (f *FS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	const ok = fuse.FATTR_SIZE | fuse.FATTR_FH | fuse.FATTR_ATIME | fuse.FATTR_MTIME |
		fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW | fuse.FATTR_CTIME | fuse.FATTR_LOCKOWNER
	if in.Valid&^ok != 0 || (in.Valid&fuse.FATTR_SIZE != 0 && in.Size != 0) {
		return fuse.EPERM
	}
	*out = fuse.AttrOut{}
	if !f.attr(f.cur.Load(), in.NodeId, &out.Attr) {
		return fuse.ENOENT
	}
	return fuse.OK
}

// Readlink returns a legacy link's target.
func (f *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	f.mu.Lock()
	name := f.names[h.NodeId]
	f.mu.Unlock()
	e, ok := f.cur.Load().entries[name]
	if !ok || e.Target == "" {
		return nil, fuse.EINVAL
	}
	return []byte(e.Target), fuse.OK
}

// OpenDir opens the directory.
func (f *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.NodeId != rootID {
		return fuse.ENOTDIR
	}
	return fuse.OK
}

// ReadDir lists ".", ".." and the current kernel's files, by name.
func (f *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	v := f.cur.Load()
	entries := append([]fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: rootID},
		{Name: "..", Mode: syscall.S_IFDIR, Ino: rootID}}, make([]fuse.DirEntry, 0, len(v.sorted))...)
	f.mu.Lock()
	for _, e := range v.sorted {
		mode := uint32(syscall.S_IFREG)
		if e.Mode&fs.ModeSymlink != 0 {
			mode = syscall.S_IFLNK
		}
		entries = append(entries, fuse.DirEntry{Name: e.Name, Mode: mode, Ino: f.ids[e.Name]})
	}
	f.mu.Unlock()
	listDir(out, in.Offset, entries)
	return fuse.OK
}

// listDir adds the entries from offset on to out, as many as fit.
func listDir(out *fuse.DirEntryList, offset uint64, entries []fuse.DirEntry) {
	for i := int(offset); i < len(entries); i++ {
		entries[i].Off = uint64(i + 1)
		if !out.AddDirEntry(entries[i]) {
			break
		}
	}
}

// ReleaseDir closes the directory.
func (f *FS) ReleaseDir(in *fuse.ReleaseIn) {}

// StatFs describes the file system.
//
// Mirrors fs/libfs.c:simple_statfs() (securityfs's statfs), without the
// superblock's magic number, which FUSE does not carry.
func (f *FS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	*out = fuse.StatfsOut{Bsize: 4096, Frsize: 4096, NameLen: 255}
	return fuse.OK
}

// openFlags turns the open(2) flags FUSE forwards into os flags. FUSE
// drops O_CREAT, O_EXCL and O_NOCTTY (the kernel has already resolved
// them) and O_TRUNC (sent as a SETATTR afterwards).
func openFlags(flags uint32) int {
	flag := int(flags) & syscall.O_ACCMODE
	if flags&syscall.O_APPEND != 0 {
		flag |= os.O_APPEND
	}
	return flag
}

// Open opens a file as the calling task, through the model's open checks
// (permission, CAP_SYS_ADMIN, the one-writer rule).
func (f *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	f.mu.Lock()
	name, ok := f.names[in.NodeId]
	f.mu.Unlock()
	if !ok {
		return fuse.ENOENT
	}
	return f.open(in.Caller, name, openFlags(in.Flags), out)
}

// Create is an open with O_CREAT of a name that does not exist: the model
// answers it (EACCES: securityfs directories cannot create files).
func (f *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	flag := openFlags(in.Flags) | os.O_CREATE
	if in.Flags&syscall.O_EXCL != 0 {
		flag |= os.O_EXCL
	}
	if st := f.open(in.Caller, name, flag, &out.OpenOut); st != fuse.OK {
		return st
	}
	// The name appeared between the kernel's lookup and this request.
	return f.Lookup(cancel, &in.InHeader, name, &out.EntryOut)
}

func (f *FS) open(c fuse.Caller, name string, flag int, out *fuse.OpenOut) fuse.Status {
	v := f.cur.Load()
	t := f.task(c)
	sf, err := v.sfs.Open(t, name, flag)
	if err != nil {
		return status(err)
	}
	f.mu.Lock()
	f.nextFh++
	fh := f.nextFh
	f.handles[fh] = &handle{f: sf, v: v, opener: t}
	f.mu.Unlock()
	*out = fuse.OpenOut{Fh: fh, OpenFlags: fuse.FOPEN_DIRECT_IO}
	return fuse.OK
}

// unknownPos is a kpos no READ carries.
const unknownPos = ^uint64(0)

func (f *FS) handle(fh uint64) *handle {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handles[fh]
}

// Read is one read(2): the model's seq_file read.
//
// The kernel's FUSE client moves f_pos by what a write(2) accepted, where
// securityfs leaves it alone, so the offsets FUSE sends are not the
// model's after a write. A READ at the offset where the previous request
// left the file is a plain read(2) and continues from the model's own
// offset; a READ anywhere else follows an lseek(2) (or is a pread(2)), and
// the model's file is moved to that offset first, as seq_read_iter() does
// when ki_pos differs from the position it reached.
func (f *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	hd := f.handle(in.Fh)
	if hd == nil {
		return nil, fuse.EBADF
	}
	if hd.v != f.cur.Load() {
		return nil, fuse.EIO
	}
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if in.Offset != hd.kpos {
		if in.Offset > 1<<63-1 {
			return nil, fuse.EINVAL
		}
		if _, err := hd.f.Seek(int64(in.Offset), io.SeekStart); err != nil {
			hd.kpos = unknownPos
			return nil, status(err)
		}
	}
	n, err := hd.f.Read(buf[:min(len(buf), int(in.Size))])
	if err != nil && err != io.EOF {
		hd.kpos = unknownPos // the next read seeks
		return nil, status(err)
	}
	hd.kpos = in.Offset + uint64(n)
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

// Write sends one write(2) to the model: a request of the write grammar.
// A file of a kernel that has gone answers as that suspended kernel does.
func (f *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	hd := f.handle(in.Fh)
	if hd == nil {
		return 0, fuse.EBADF
	}
	hd.mu.Lock()
	defer hd.mu.Unlock()
	n, err := hd.f.Write(data)
	hd.kpos = in.Offset + uint64(n)
	return uint32(n), status(err)
}

// Lseek answers SEEK_DATA and SEEK_HOLE, the only seeks FUSE forwards.
func (f *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	hd := f.handle(in.Fh)
	if hd == nil {
		return fuse.EBADF
	}
	if in.Offset > 1<<63-1 {
		return fuse.EINVAL
	}
	off, err := hd.f.Seek(int64(in.Offset), int(in.Whence))
	out.Offset = uint64(off)
	return status(err)
}

// Flush is a close(2) of one file descriptor of the file, by the calling
// task: it is remembered as the task that will release the file if no
// other descriptor is closed after it.
func (f *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if hd := f.handle(in.Fh); hd != nil {
		hd.mu.Lock()
		hd.closer = in.Pid
		hd.mu.Unlock()
	}
	return fuse.OK
}

// Release is the last reference to the file going away. FUSE does not say
// which task dropped it; the model's release runs as the task of the last
// FLUSH, or the opener.
func (f *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	f.mu.Lock()
	hd := f.handles[in.Fh]
	delete(f.handles, in.Fh)
	f.mu.Unlock()
	if hd == nil {
		return
	}
	t := hd.opener
	hd.mu.Lock()
	if hd.closer != 0 {
		t = staging.Task{TID: int(hd.closer)}
	}
	hd.mu.Unlock()
	_ = hd.f.CloseAs(t)
}

// Fsync is EINVAL: the securityfs files have no fsync operation.
//
// Mirrors fs/sync.c:vfs_fsync_range() for a file without ->fsync.
func (f *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.EINVAL }

// Capability bits of /proc/PID/status CapEff (include/uapi/linux/capability.h).
const (
	capDACOverride   = 1
	capDACReadSearch = 2
	capSysAdmin      = 21
)

// callerTask is the task of a FUSE request: its thread id, fsuid and
// fsgid from the request, its supplementary groups and effective
// capabilities from /proc/TID/status. A task whose status cannot be read
// (it has exited) has no capabilities and no supplementary groups. With
// asRoot, the task is uid 0 and gid 0 with the capabilities of its
// bounding set (see FS.MapRoot).
func callerTask(c fuse.Caller, asRoot bool) staging.Task {
	t := staging.Task{TID: int(c.Pid), UID: c.Uid, GID: c.Gid}
	capKey := "CapEff"
	if asRoot {
		t.UID, t.GID, capKey = 0, 0, "CapBnd"
	}
	data, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(c.Pid), 10) + "/status")
	if err != nil {
		return t
	}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		key, val, _ := bytes.Cut(s.Bytes(), []byte(":"))
		switch string(key) {
		case "Groups":
			for _, g := range bytes.Fields(val) {
				if n, err := strconv.ParseUint(string(g), 10, 32); err == nil {
					t.Groups = append(t.Groups, uint32(n))
				}
			}
		case capKey:
			caps, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
			if err != nil {
				continue
			}
			t.CapSysAdmin = caps&(1<<capSysAdmin) != 0
			t.CapDACOverride = caps&(1<<capDACOverride) != 0
			t.CapDACReadSearch = caps&(1<<capDACReadSearch) != 0
		}
	}
	return t
}

// Options are the mount's options.
type Options struct {
	// Direct mounts with mount(2) (root), falling back to fusermount3.
	Direct bool
	// AllowOther lets users other than the mounting one in (allow_other);
	// the model's permission checks then decide.
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
}

// Mount mounts f (an FS or a LogView) at dir and serves it in the
// background until Unmount.
func Mount(dir string, f fuse.RawFileSystem, opts Options) (*fuse.Server, error) {
	srv, err := fuse.NewServer(f, dir, &fuse.MountOptions{
		AllowOther:         opts.AllowOther,
		FsName:             "imasim",
		Name:               "imasim",
		DirectMount:        opts.Direct,
		DisableXAttrs:      true,
		DisableReadDirPlus: true,
		DisableSplice:      true,
		Debug:              opts.Debug,
		// The maximum read is what one read(2) asks for; the model
		// answers with at most a seq_file buffer.
		MaxWrite: 1 << 17,
	})
	if err != nil {
		return nil, fmt.Errorf("mounting %s: %w", dir, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("mounting %s: %w", dir, err)
	}
	return srv, nil
}
