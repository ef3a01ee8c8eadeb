package staging

import (
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
)

// SimFile is an open file of the simulated securityfs. Its methods are safe
// for concurrent use (a read holds the file's seq_file lock, as the kernel's
// does), and it implements File and io.Seeker.
type SimFile struct {
	s           *SecurityFS
	n           *node
	name        string
	task        Task
	read, write bool // FMODE_READ, FMODE_WRITE

	// mu is the seq_file's m->lock; it also protects pos and closed.
	mu     sync.Mutex
	pos    int64 // f_pos
	seq    seqState
	cursor measlist.Cursor
	closed bool
}

var _ File = (*SimFile)(nil)
var _ io.Seeker = (*SimFile)(nil)

// Name returns the name the file was opened with.
func (f *SimFile) Name() string { return f.name }

// Task returns the task that opened the file.
func (f *SimFile) Task() Task { return f.task }

// Read reads from the file at its offset.
//
// List files follow seq_file: records are rendered into a buffer of
// PAGE_SIZE bytes (doubled while one record does not fit) from the record
// position the file has reached, each read() walks the list again from that
// position, and a read at offset 0 starts again from the first record.
// Counter files render "%li\n" at each read and copy from the offset.
//
// Mirrors fs/seq_file.c:seq_read_iter() with the seq_operations of
// security/integrity/ima/ima_fs.c ([PATCH v7 05/12, 09/12]), and
// ima_show_counter() ([PATCH v7 01/12]) with simple_read_from_buffer().
func (f *SimFile) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, pathErr("read", f.name, os.ErrClosed)
	}
	if !f.read {
		return 0, pathErr("read", f.name, syscall.EBADF)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.n.kind == counterFile {
		s := strconv.AppendInt(nil, f.n.counter(), 10)
		s = append(s, '\n')
		if f.pos >= int64(len(s)) {
			return 0, io.EOF
		}
		n := copy(p, s[f.pos:])
		f.pos += int64(n)
		return n, nil
	}
	n, err := f.seqRead(p)
	if err != nil {
		return n, pathErr("read", f.name, err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write sends one request to the file and returns len(p) on success. Each
// call is one write(2): the request must fit in it.
//
// The checks, in the kernel's order, each failing with the errno named
// (wrapped in *fs.PathError):
//
//  1. the file was not opened for writing: EBADF; a counter file (no
//     write operation): EINVAL;
//  2. fewer than 2 or more than StagedReqLength (21) bytes: EINVAL;
//  3. the last byte is not '\n': EINVAL; the newline becomes a NUL and the
//     request is the bytes before it, cut at any earlier NUL;
//  4. first byte 'A': exactly "A\n" on a _staged file, else EINVAL; then
//     staging (measlist.Queue.Stage): EEXIST while records are staged,
//     ENOENT when the current list is empty, EACCES once measurement is
//     suspended (reboot, kexec);
//  5. first byte 'D': exactly "D\n" on a _staged file, else EINVAL; then
//     deleting the staged records (measlist.Queue.DeleteStaged): ENOENT
//     when none are staged, ESTALE once suspended, ENOMEM when the
//     ima_flush_htable table allocation fails (the records are then lost,
//     as in the kernel);
//  6. anything else is N: EINVAL on a _staged file; EINVAL while
//     ima_flush_htable is set; then Kstrtoul (EINVAL for a malformed
//     number, ERANGE above 2^64-1); N == 0 is EINVAL; then deleting the
//     first N records of the current list (measlist.Queue.DeletePartial):
//     ENOENT when it holds fewer than N, ESTALE once suspended.
//
// The file offset is neither checked nor advanced, so writes on one
// descriptor each run as a command.
//
// Mirrors the VFS checks of fs/read_write.c:vfs_write() and
// security/integrity/ima/ima_fs.c:_ima_measurements_write() ([PATCH v7
// 09/12, 11/12]).
func (f *SimFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0, pathErr("write", f.name, os.ErrClosed)
	}
	if !f.write {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if !f.n.writable {
		return 0, pathErr("write", f.name, syscall.EINVAL)
	}
	if err := f.s.request(p, f.n.staged); err != nil {
		return 0, pathErr("write", f.name, err)
	}
	return len(p), nil
}

// Close releases the file in the context of the task that opened it.
func (f *SimFile) Close() error { return f.CloseAs(f.task) }

// CloseAs releases the file in the context of task t: the task that drops
// the last reference to the open file, which is not always the one that
// opened it (a fork child, another thread). The writer bookkeeping compares
// t with the writer, so a release by another task takes the path that
// docs/SPEC.md Q4 describes.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_measurements_release()
// ([PATCH v7 06/12]).
func (f *SimFile) CloseAs(t Task) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, os.ErrClosed)
	}
	f.closed = true
	f.seq = seqState{}
	f.cursor = measlist.Cursor{}
	if f.n.kind == listFile {
		f.s.measureUnlock(f.write, t)
	}
	return nil
}

// Seek sets the offset for the next read. For a list file, io.SeekStart
// and io.SeekCurrent reach the new offset by rendering the records from the
// first one; io.SeekEnd is EINVAL.
//
// Mirrors fs/seq_file.c:seq_lseek() and traverse(); counter files use
// fs/read_write.c:generic_file_llseek() with the securityfs inode's size,
// 0: io.SeekEnd gives offset, SEEK_DATA and SEEK_HOLE give ENXIO.
func (f *SimFile) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, pathErr("seek", f.name, os.ErrClosed)
	}
	const seekData, seekHole = 3, 4
	switch {
	case whence == io.SeekStart:
	case whence == io.SeekCurrent:
		offset += f.pos
	case whence == io.SeekEnd && f.n.kind == counterFile:
		// offset + i_size, and i_size is 0
	case (whence == seekData || whence == seekHole) && f.n.kind == counterFile:
		return 0, pathErr("seek", f.name, syscall.ENXIO)
	default:
		return 0, pathErr("seek", f.name, syscall.EINVAL)
	}
	if offset < 0 {
		return 0, pathErr("seek", f.name, syscall.EINVAL)
	}
	if f.n.kind == listFile && offset != f.seq.readPos {
		if err := f.traverseTo(offset); err != nil {
			f.pos = 0
			return 0, pathErr("seek", f.name, err)
		}
	}
	f.pos = offset
	return offset, nil
}

// seqState is the part of struct seq_file that reads use.
type seqState struct {
	buf     []byte // rendered bytes not yet copied out are buf[from:from+count]
	size    int    // m->size
	from    int
	count   int
	index   int   // m->index: position of the next record to render
	readPos int64 // m->read_pos
}

type seqError struct{ string }

func (e seqError) Error() string { return e.string }

var errAgain = seqError{"again"}

func (f *SimFile) head() measlist.Head {
	if f.n.staged {
		return measlist.Staged
	}
	return measlist.Current
}

// render appends e as this file shows it: the binary record or the ASCII
// line, with the digest of the file's slot.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_measurements_show() and
// ima_ascii_measurements_show().
func (f *SimFile) render(dst []byte, e *template.Entry) ([]byte, error) {
	if f.n.ascii {
		return e.AppendASCII(dst, f.n.slot, f.s.layout.Order())
	}
	return e.AppendBinary(dst, f.n.slot, f.s.layout.Order())
}

// show renders e into the buffer if it fits with a byte to spare, the rule
// seq_printf(), seq_puts() and seq_has_overflowed() give together; it
// reports false (overflow) otherwise.
func (f *SimFile) show(e *template.Entry, scratch *[]byte) (bool, error) {
	m := &f.seq
	rec, err := f.render((*scratch)[:0], e)
	*scratch = rec
	if err != nil {
		return false, syscall.EIO
	}
	if m.count+len(rec) >= m.size {
		return false, nil
	}
	m.buf = append(m.buf[:m.count], rec...)
	m.count += len(rec)
	return true, nil
}

// seqRead is seq_read_iter() for one read of len(p) bytes.
func (f *SimFile) seqRead(p []byte) (int, error) {
	m := &f.seq
	if f.pos == 0 {
		m.index, m.count = 0, 0
	}
	if f.pos != m.readPos {
		if err := f.traverseTo(f.pos); err != nil {
			return 0, err
		}
	}
	copied := 0
	if m.count > 0 {
		n := copy(p, m.buf[m.from:m.from+m.count])
		m.count -= n
		m.from += n
		copied += n
		if m.count > 0 {
			return f.done(copied), nil
		}
	}
	m.from = 0
	m.buf = m.buf[:0]
	var scratch []byte
	for {
		var err error
		got, overflow, eof := false, false, true
		f.s.q.WalkAt(f.head(), m.index, &f.cursor, func(i int, e *template.Entry) bool {
			eof = false
			if !got {
				var ok bool
				if ok, err = f.show(e, &scratch); err != nil || !ok {
					overflow = err == nil
					return false
				}
				got = true
				m.index = i + 1
				return true
			}
			// The Fill loop: the iterator has moved to record i.
			if m.count >= len(p)-copied {
				return false
			}
			var ok bool
			if ok, err = f.show(e, &scratch); err != nil || !ok {
				return false
			}
			m.index = i + 1
			return true
		})
		if err != nil {
			m.count = 0
			return f.done(copied), err
		}
		if overflow {
			// Need a bigger buffer: start again at the same record.
			m.size <<= 1
			m.count = 0
			continue
		}
		if eof || !got {
			m.count = 0
			return f.done(copied), nil
		}
		break
	}
	n := copy(p[copied:], m.buf[:m.count])
	copied += n
	m.count -= n
	m.from = n
	return f.done(copied), nil
}

// done advances the offsets by what a read copied.
func (f *SimFile) done(copied int) int {
	f.pos += int64(copied)
	f.seq.readPos += int64(copied)
	return copied
}

// traverseTo repositions the seq_file at offset, growing the buffer as
// often as traverse asks; on failure it resets the file to its start
// ("with prejudice"), as seq_read_iter() and seq_lseek() do.
func (f *SimFile) traverseTo(offset int64) error {
	m := &f.seq
	for {
		err := f.traverse(offset)
		if err == errAgain {
			continue
		}
		if err != nil {
			m.readPos, m.index, m.count = 0, 0, 0
			return err
		}
		m.readPos = offset
		return nil
	}
}

// traverse renders records from the first one until offset is reached, so
// that the next read continues from there.
//
// Mirrors fs/seq_file.c:traverse().
func (f *SimFile) traverse(offset int64) error {
	m := &f.seq
	m.index, m.count, m.from = 0, 0, 0
	m.buf = m.buf[:0]
	if offset == 0 {
		return nil
	}
	var pos int64
	var err error
	var scratch []byte
	overflow := false
	f.s.q.WalkAt(f.head(), 0, &f.cursor, func(i int, e *template.Entry) bool {
		var ok bool
		if ok, err = f.show(e, &scratch); err != nil {
			return false
		}
		if !ok {
			overflow = true
			return false
		}
		m.index = i + 1
		if pos+int64(m.count) > offset {
			m.from = int(offset - pos)
			m.count -= m.from
			return false
		}
		pos += int64(m.count)
		m.count = 0
		m.buf = m.buf[:0]
		return pos != offset
	})
	if err != nil {
		return err
	}
	if overflow {
		m.count = 0
		m.size <<= 1
		return errAgain
	}
	return nil
}
