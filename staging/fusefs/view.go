package fusefs

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/imasim/imasim/staging/collector"
)

// LogView is a read-only FUSE directory with the list files of a kernel
// that never staged: binary_runtime_measurements[_<alg>],
// ascii_runtime_measurements[_<alg>] and runtime_measurements_count,
// served from a collector (its store, then what the kernel still holds),
// so that an agent that knows nothing of staging, pointed at the
// directory, keeps working on a staging kernel.
//
// No kernel counterpart; the files show what
// security/integrity/ima/ima_fs.c shows for an unstaged list. Reads are
// sequential like seq_file's: a read at the offset the previous one ended
// continues from the record reached; any other offset restarts from the
// first record and skips to it. Files report size 0, as securityfs's do.
type LogView struct {
	fuse.RawFileSystem // ENOSYS for the rest

	c      *collector.Collector
	files  []viewFile // node id i+2
	byName map[string]int
	booted time.Time

	mu      sync.Mutex // protects handles and nextFh
	handles map[uint64]*viewHandle
	nextFh  uint64
}

type viewFile struct {
	name   string
	count  bool
	format collector.Format
	slot   int
}

// viewHandle is one open file: the record the next sequential read
// continues from, the file offset reached, and what was rendered but not
// yet returned.
type viewHandle struct {
	file viewFile
	mu   sync.Mutex // protects rec, pos and buf
	rec  int
	pos  uint64
	buf  []byte
}

// NewLogView returns the view of c, with the list files of its kernel's
// layout.
func NewLogView(c *collector.Collector) *LogView {
	layout := c.Layout()
	v := &LogView{RawFileSystem: fuse.NewDefaultRawFileSystem(), c: c, byName: map[string]int{},
		booted: time.Now(), handles: map[uint64]*viewHandle{}}
	add := func(f viewFile) {
		v.byName[f.name] = len(v.files)
		v.files = append(v.files, f)
	}
	sha1 := layout.SHA1Index()
	add(viewFile{name: "ascii_runtime_measurements", format: collector.ASCII, slot: sha1})
	add(viewFile{name: "binary_runtime_measurements", format: collector.Binary, slot: sha1})
	for _, lf := range layout.ListFiles() {
		add(viewFile{name: "ascii_runtime_measurements_" + lf.Suffix, format: collector.ASCII, slot: lf.Slot})
		add(viewFile{name: "binary_runtime_measurements_" + lf.Suffix, format: collector.Binary, slot: lf.Slot})
	}
	add(viewFile{name: "runtime_measurements_count", count: true})
	return v
}

func (v *LogView) String() string { return "imasim-view" }

func (v *LogView) attr(id uint64, a *fuse.Attr) bool {
	*a = fuse.Attr{Ino: id, Blksize: 4096}
	setTime(a, v.booted)
	if id == rootID {
		a.Mode, a.Nlink = syscall.S_IFDIR|0o555, 2
		return true
	}
	if id < 2 || id-2 >= uint64(len(v.files)) {
		return false
	}
	a.Mode, a.Nlink = syscall.S_IFREG|0o444, 1
	return true
}

// Lookup finds a name in the directory.
func (v *LogView) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if h.NodeId != rootID {
		return fuse.ENOTDIR
	}
	i, ok := v.byName[name]
	if !ok {
		return fuse.ENOENT
	}
	*out = fuse.EntryOut{NodeId: uint64(i) + 2}
	v.attr(out.NodeId, &out.Attr)
	return fuse.OK
}

// GetAttr returns a node's attributes.
func (v *LogView) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	*out = fuse.AttrOut{}
	if !v.attr(in.NodeId, &out.Attr) {
		return fuse.ENOENT
	}
	return fuse.OK
}

// OpenDir opens the directory.
func (v *LogView) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.NodeId != rootID {
		return fuse.ENOTDIR
	}
	return fuse.OK
}

// ReadDir lists ".", ".." and the files.
func (v *LogView) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	entries := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: rootID}, {Name: "..", Mode: syscall.S_IFDIR, Ino: rootID}}
	for i, f := range v.files {
		entries = append(entries, fuse.DirEntry{Name: f.name, Mode: syscall.S_IFREG, Ino: uint64(i) + 2})
	}
	listDir(out, in.Offset, entries)
	return fuse.OK
}

// ReleaseDir closes the directory.
func (v *LogView) ReleaseDir(in *fuse.ReleaseIn) {}

// StatFs describes the file system.
func (v *LogView) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	*out = fuse.StatfsOut{Bsize: 4096, Frsize: 4096, NameLen: 255}
	return fuse.OK
}

// Open opens a file for reading; writes are refused (EACCES).
func (v *LogView) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.NodeId < 2 || in.NodeId-2 >= uint64(len(v.files)) {
		return fuse.ENOENT
	}
	if openFlags(in.Flags)&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return fuse.EACCES
	}
	v.mu.Lock()
	v.nextFh++
	fh := v.nextFh
	v.handles[fh] = &viewHandle{file: v.files[in.NodeId-2]}
	v.mu.Unlock()
	*out = fuse.OpenOut{Fh: fh, OpenFlags: fuse.FOPEN_DIRECT_IO}
	return fuse.OK
}

// Release closes a file.
func (v *LogView) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	v.mu.Lock()
	delete(v.handles, in.Fh)
	v.mu.Unlock()
}

// Read returns the file's bytes at the offset.
func (v *LogView) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	v.mu.Lock()
	h := v.handles[in.Fh]
	v.mu.Unlock()
	if h == nil {
		return nil, fuse.EBADF
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	size := min(len(buf), int(in.Size))
	if h.file.count {
		n, err := v.c.Len()
		if err != nil {
			return nil, fuse.EIO
		}
		s := fmt.Sprintf("%d\n", n)
		if in.Offset >= uint64(len(s)) {
			return fuse.ReadResultData(nil), fuse.OK
		}
		return fuse.ReadResultData([]byte(s[in.Offset:][:min(size, len(s)-int(in.Offset))])), fuse.OK
	}
	if in.Offset != h.pos {
		h.rec, h.pos, h.buf = 0, 0, h.buf[:0]
	}
	// Render until the bytes at the offset and size are there.
	for h.pos+uint64(len(h.buf)) < in.Offset+uint64(size) {
		var n int
		var err error
		if h.buf, n, err = v.c.AppendLog(h.buf, h.rec, len(h.buf)+size, h.file.format, h.file.slot); err != nil {
			return nil, fuse.EIO
		}
		if n == 0 {
			break
		}
		h.rec += n
		if skip := in.Offset - h.pos; skip > 0 {
			d := min(skip, uint64(len(h.buf)))
			h.buf, h.pos = h.buf[d:], h.pos+d
		}
	}
	if in.Offset != h.pos { // past the end
		return fuse.ReadResultData(nil), fuse.OK
	}
	n := min(size, len(h.buf))
	out := append([]byte(nil), h.buf[:n]...)
	h.buf, h.pos = h.buf[n:], h.pos+uint64(n)
	return fuse.ReadResultData(out), fuse.OK
}
