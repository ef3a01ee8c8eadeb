package staging

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sort"
	"sync"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
)

// Config is the kernel configuration of the securityfs files.
type Config struct {
	// Queue is the measurement queue the list files show and change.
	Queue *measlist.Queue
	// Staging is CONFIG_IMA_STAGING: the _staged files and their links
	// exist.
	Staging bool
	// NDeleteNeedsStaging makes the original list files read-only (0440,
	// no write operation) when Staging is off. This is what the
	// documentation says CONFIG_IMA_STAGING guards, but not what the v7
	// code does: there every list file is 0660 with a write operation
	// regardless of the option (docs/SPEC.md Q1, docs/FINDINGS.md). The default,
	// false, models the code.
	NDeleteNeedsStaging bool
	// PageSize is PAGE_SIZE, the initial size of each open file's
	// seq_file buffer; 0 means 4096.
	PageSize int
}

// Names of the files that do not depend on the banks.
const (
	BinaryRuntimeMeasurements       = "binary_runtime_measurements"
	ASCIIRuntimeMeasurements        = "ascii_runtime_measurements"
	BinaryRuntimeMeasurementsStaged = "binary_runtime_measurements_staged"
	ASCIIRuntimeMeasurementsStaged  = "ascii_runtime_measurements_staged"
	RuntimeMeasurementsCount        = "runtime_measurements_count"
	Violations                      = "violations"
)

type nodeKind int

// linkPerm is the mode securityfs gives its symlinks:
// security/inode.c:securityfs_create_symlink() creates them S_IFLNK | 0444
// (ls -l shows lr--r--r--). Following a link ignores its mode.
const linkPerm = 0o444

const (
	listFile nodeKind = iota
	counterFile
	symlink
)

// node is one entry of the directory.
type node struct {
	name     string
	kind     nodeKind
	perm     uint32 // permission bits
	target   string // symlink target
	staged   bool   // a _staged list file
	ascii    bool   // an ascii_ list file
	slot     int    // digest slot the file shows (the inode's i_private)
	writable bool   // the file has a write operation
	counter  func() int64
}

// SecurityFS is the simulated /sys/kernel/security/ima directory: its
// files, and the reader/writer mediation shared by every list file.
//
// Lock order: measureMutex (ima_measure_mutex) is held only inside open
// and release, never across a call into the queue. Each open file has its
// own mutex (the seq_file's m->lock) held for one read or seek.
type SecurityFS struct {
	cfg    Config
	q      *measlist.Queue
	layout *template.Layout
	nodes  map[string]*node

	// measureMutex is ima_measure_mutex.
	measureMutex sync.Mutex
	// users is ima_measure_users: > 0 open readers, -1 an open writer;
	// protected by measureMutex.
	users int64
	// writer is the TID of measure_writer when hasWriter; protected by
	// measureMutex.
	writer    int
	hasWriter bool
	// extraWrites is measure_writer_extra_writes; protected by
	// measureMutex.
	extraWrites int64
}

// New creates the files.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_fs_init(),
// create_securityfs_measurement_lists() and
// create_securityfs_staging_links() ([PATCH v7 07/12, 09/12, 11/12]).
//
// Differences from Linux: the policy file and the directory's own entries
// (the integrity/ima symlink) are not modelled.
func New(cfg Config) (*SecurityFS, error) {
	if cfg.Queue == nil {
		return nil, errors.New("staging: Config.Queue is required")
	}
	cfg.PageSize = measlist.PageSizeOr(cfg.PageSize)
	if cfg.PageSize < 2 {
		return nil, fmt.Errorf("staging: page size %d too small", cfg.PageSize)
	}
	s := &SecurityFS{cfg: cfg, q: cfg.Queue, layout: cfg.Queue.Layout(), nodes: map[string]*node{}}
	add := func(n *node) { s.nodes[n.name] = n }
	createLists := func(staged bool) {
		perm, writable, suffix := uint32(0o660), true, ""
		if staged {
			suffix = "_staged"
		} else if cfg.NDeleteNeedsStaging && !cfg.Staging {
			perm, writable = 0o440, false
		}
		for _, lf := range s.layout.ListFiles() {
			for _, ascii := range []bool{true, false} {
				base := BinaryRuntimeMeasurements
				if ascii {
					base = ASCIIRuntimeMeasurements
				}
				add(&node{name: base + "_" + lf.Suffix + suffix, kind: listFile, perm: perm,
					staged: staged, ascii: ascii, slot: lf.Slot, writable: writable})
			}
		}
	}
	createLists(false)
	add(&node{name: BinaryRuntimeMeasurements, kind: symlink, perm: linkPerm, target: BinaryRuntimeMeasurements + "_sha1"})
	add(&node{name: ASCIIRuntimeMeasurements, kind: symlink, perm: linkPerm, target: ASCIIRuntimeMeasurements + "_sha1"})
	if cfg.Staging {
		createLists(true)
		add(&node{name: BinaryRuntimeMeasurementsStaged, kind: symlink, perm: linkPerm, target: BinaryRuntimeMeasurements + "_sha1_staged"})
		add(&node{name: ASCIIRuntimeMeasurementsStaged, kind: symlink, perm: linkPerm, target: ASCIIRuntimeMeasurements + "_sha1_staged"})
	}
	q := cfg.Queue
	add(&node{name: RuntimeMeasurementsCount, kind: counterFile, perm: 0o440,
		counter: func() int64 { return q.NumRecords(measlist.Binary) }})
	add(&node{name: Violations, kind: counterFile, perm: 0o440, counter: q.NumViolations})
	return s, nil
}

// Queue returns the queue the files show.
func (s *SecurityFS) Queue() *measlist.Queue { return s.q }

// DirEntry describes one file of the directory.
type DirEntry struct {
	Name string
	// Mode has the permission bits, and fs.ModeSymlink for links.
	Mode fs.FileMode
	// Target is a symlink's target.
	Target string
	// Writable reports whether the file has a write operation.
	Writable bool
}

// LongLine is the entry as `ls -l` shows its mode and name:
// "-rw-rw---- NAME", or "lr--r--r-- NAME -> TARGET" for a link.
// No kernel counterpart.
func (e DirEntry) LongLine() string {
	mode := e.Mode.String()
	if e.Mode&fs.ModeSymlink != 0 {
		mode = "l" + mode[1:]
	}
	line := mode + " " + e.Name
	if e.Target != "" {
		line += " -> " + e.Target
	}
	return line
}

// ReadDir lists the directory, sorted by name. Every file is owned by
// root:root.
func (s *SecurityFS) ReadDir() []DirEntry {
	out := make([]DirEntry, 0, len(s.nodes))
	for _, n := range s.nodes {
		mode := fs.FileMode(n.perm)
		if n.kind == symlink {
			mode |= fs.ModeSymlink
		}
		out = append(out, DirEntry{Name: n.name, Mode: mode, Target: n.target, Writable: n.writable})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// As returns the directory as task t sees it: every open is made by t.
func (s *SecurityFS) As(t Task) FS { return taskFS{s, t} }

type taskFS struct {
	s *SecurityFS
	t Task
}

func (f taskFS) OpenFile(name string, flag int) (File, error) { return f.s.Open(f.t, name, flag) }

// MeasureState is the reader/writer bookkeeping of the list files. No
// kernel counterpart as an interface; exists so that tests and reference
// models can compare it.
type MeasureState struct {
	// Users is ima_measure_users.
	Users int64
	// Writer is measure_writer's TID, valid when HasWriter.
	Writer    int
	HasWriter bool
	// ExtraWrites is measure_writer_extra_writes.
	ExtraWrites int64
}

// MeasureState returns the current bookkeeping.
func (s *SecurityFS) MeasureState() MeasureState {
	s.measureMutex.Lock()
	defer s.measureMutex.Unlock()
	return MeasureState{Users: s.users, Writer: s.writer, HasWriter: s.hasWriter, ExtraWrites: s.extraWrites}
}

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// Open opens name as task t with flag (os.O_RDONLY, os.O_WRONLY or
// os.O_RDWR, optionally with os.O_CREATE, os.O_TRUNC, os.O_APPEND).
//
// Mirrors the checks a file open goes through for these files, in order:
// the VFS lookup (ENOENT, or EACCES with O_CREAT, since securityfs
// directories cannot create files) and permission check (fs/namei.c may_open():
// EACCES against the mode and root:root), then for list files
// security/integrity/ima/ima_fs.c:_ima_measurements_open() ([PATCH v7
// 06/12]): EPERM for a write open without CAP_SYS_ADMIN, then
// ima_measure_lock(): ENFILE, the same writer re-entering, EBUSY.
//
// Differences from Linux: an access mode of 3 (O_ACCMODE) is refused with
// EINVAL; O_TRUNC has no effect (the kernel's truncation of a securityfs
// file succeeds and changes nothing).
func (s *SecurityFS) Open(t Task, name string, flag int) (*SimFile, error) {
	n, ok := s.nodes[name]
	if ok && n.kind == symlink {
		n, ok = s.nodes[n.target]
	}
	if !ok {
		if flag&os.O_CREATE != 0 {
			// fs/namei.c:lookup_open(): securityfs directories have
			// no ->create, so creating a file is EACCES.
			return nil, pathErr("open", name, syscall.EACCES)
		}
		return nil, pathErr("open", name, syscall.ENOENT)
	}
	if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
		return nil, pathErr("open", name, syscall.EEXIST)
	}
	var read, write bool
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		read = true
	case os.O_WRONLY:
		write = true
	case os.O_RDWR:
		read, write = true, true
	default:
		return nil, pathErr("open", name, syscall.EINVAL)
	}
	if !t.mayOpen(n.perm, read, write) {
		return nil, pathErr("open", name, syscall.EACCES)
	}
	f := &SimFile{s: s, n: n, name: name, task: t, read: read, write: write}
	if n.kind == listFile {
		if write && !t.CapSysAdmin {
			return nil, pathErr("open", name, syscall.EPERM)
		}
		if err := s.measureLock(write, t); err != nil {
			return nil, pathErr("open", name, err)
		}
		f.seq.size = s.cfg.PageSize
	}
	return f, nil
}

// measureLock admits a reader or the writer.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_measure_lock() ([PATCH v7 06/12]).
func (s *SecurityFS) measureLock(write bool, t Task) error {
	s.measureMutex.Lock()
	defer s.measureMutex.Unlock()
	if !write && s.users == math.MaxInt64 {
		return syscall.ENFILE
	}
	if write && s.hasWriter && s.writer == t.TID {
		s.extraWrites++ // the same writer may open more files
		return nil
	}
	if (write && s.users != 0) || (!write && s.users < 0) {
		return syscall.EBUSY
	}
	if write {
		s.users--
		s.writer, s.hasWriter = t.TID, true
	} else {
		s.users++
	}
	return nil
}

// measureUnlock undoes measureLock at release, in the context of the
// releasing task t, which need not be the one that opened the file.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_measure_unlock() ([PATCH v7 06/12]).
func (s *SecurityFS) measureUnlock(write bool, t Task) {
	s.measureMutex.Lock()
	defer s.measureMutex.Unlock()
	if write && s.hasWriter && s.writer == t.TID && s.extraWrites != 0 {
		s.extraWrites--
		return
	}
	if write {
		s.users++
		s.hasWriter = false
	} else {
		s.users--
	}
}
