package collector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"
)

// The store's INDEX (see store.go): where each committed record is, so that
// the collector keeps no record in memory and serving from record N reads
// only what it returns. No kernel counterpart.

func encodeLoc(b []byte, l loc) {
	binary.LittleEndian.PutUint32(b, uint32(l.seg))
	binary.LittleEndian.PutUint64(b[4:], uint64(l.off))
}

func decodeLoc(b []byte) loc {
	return loc{int(binary.LittleEndian.Uint32(b)), int64(binary.LittleEndian.Uint64(b[4:]))}
}

// indexBuilder checks INDEX against the locations a recovery scan finds,
// in order. From the first entry that differs or is missing it writes a
// new index, INDEX.new, which install puts in place once recovery has
// succeeded (a failed Open leaves the store as it was); discard removes
// it.
type indexBuilder struct {
	s   *store
	old *os.File      // INDEX, nil if there is none
	r   *bufio.Reader // reads old's entries while they agree
	tmp *os.File      // INDEX.new, from the first entry that differs
	w   *bufio.Writer
	n   int64 // entries checked or written
	// backlog holds the entries found after the end of INDEX, appended
	// to it in place when there are many and at install otherwise; a
	// write that fails then (a full disk) leaves them to the store's
	// idxBacklog, so that recovery needs no free space.
	backlog   []loc
	appending bool
}

// maxBacklog bounds the entries recovery keeps in memory before writing.
const maxBacklog = 1 << 16

const indexNewName = indexName + ".new"

func (s *store) newIndexBuilder() (*indexBuilder, error) {
	b := &indexBuilder{s: s}
	f, err := s.openFile(indexName, os.O_RDWR)
	switch {
	case err == nil:
		b.old, b.r = f, bufio.NewReaderSize(f, 1<<16)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return b, nil
}

func (b *indexBuilder) add(l loc) error {
	var e [indexEntry]byte
	encodeLoc(e[:], l)
	if b.tmp == nil && !b.appending {
		mismatch := false
		if b.old != nil {
			var got [indexEntry]byte
			_, err := io.ReadFull(b.r, got[:])
			if err == nil && got == e {
				b.n++
				return nil
			}
			mismatch = err == nil
		}
		b.appending = !mismatch
	}
	if b.appending {
		b.backlog = append(b.backlog, l)
		b.n++
		if len(b.backlog) >= maxBacklog {
			return b.writeBacklog()
		}
		return nil
	}
	if b.tmp == nil {
		tmp, err := b.s.openFile(indexNewName, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return err
		}
		b.tmp = tmp
		if b.old != nil {
			if _, err := io.Copy(tmp, io.NewSectionReader(b.old, 0, b.n*indexEntry)); err != nil {
				return err
			}
		}
		b.w = bufio.NewWriterSize(tmp, 1<<16)
	}
	b.n++
	_, err := b.w.Write(e[:])
	return err
}

// writeBacklog appends the backlog to INDEX in place.
func (b *indexBuilder) writeBacklog() error {
	if b.old == nil {
		f, err := b.s.openFile(indexName, os.O_RDWR|os.O_CREATE)
		if err != nil {
			return err
		}
		b.old = f
	}
	buf := make([]byte, len(b.backlog)*indexEntry)
	for i, l := range b.backlog {
		encodeLoc(buf[i*indexEntry:], l)
	}
	if _, err := b.old.WriteAt(buf, (b.n-int64(len(b.backlog)))*indexEntry); err != nil {
		return err
	}
	b.backlog = nil
	return nil
}

// flush writes what add buffered.
func (b *indexBuilder) flush() error {
	if b.w != nil {
		return b.w.Flush()
	}
	return nil
}

// install makes the checked or rebuilt index the store's INDEX.
func (s *store) installIndex(b *indexBuilder) error {
	switch {
	case b.tmp != nil:
		if err := syscall.Renameat(int(s.dirf.Fd()), indexNewName, int(s.dirf.Fd()), indexName); err != nil {
			return &fs.PathError{Op: "rename", Path: filepath.Join(s.dir, indexNewName), Err: err}
		}
		if b.old != nil {
			b.old.Close()
		}
		s.idx = b.tmp
	default:
		if b.old == nil {
			f, err := s.openFile(indexName, os.O_RDWR|os.O_CREATE)
			if err != nil {
				return err
			}
			b.old = f
		}
		// Entries of commits the manifest does not cover are cut.
		if err := b.old.Truncate((b.n - int64(len(b.backlog))) * indexEntry); err != nil {
			return err
		}
		s.idx = b.old
		s.idxBacklog = b.backlog
		s.flushIndex() // a failure (a full disk) is retried later
	}
	b.old, b.tmp, b.backlog = nil, nil, nil
	return nil
}

// discard closes the builder's files and removes INDEX.new.
func (b *indexBuilder) discard() {
	if b.old != nil {
		b.old.Close()
	}
	if b.tmp != nil {
		b.tmp.Close()
		syscall.Unlinkat(int(b.s.dirf.Fd()), indexNewName)
	}
}

// flushIndex writes the entries of newly committed records, the last of
// INDEX, keeping them for a later attempt if the write fails.
func (s *store) flushIndex() error {
	if len(s.idxBacklog) == 0 {
		return nil
	}
	b := make([]byte, len(s.idxBacklog)*indexEntry)
	for i, l := range s.idxBacklog {
		encodeLoc(b[i*indexEntry:], l)
	}
	at := s.log.base + int64(s.log.committed) - int64(len(s.idxBacklog))
	if _, err := s.idx.WriteAt(b, at*indexEntry); err != nil {
		return fmt.Errorf("collector: store %s: writing %s: %w", s.dir, indexName, err)
	}
	s.idxBacklog = nil
	return nil
}

// eachCommitted calls fn with the committed records of the newest log from
// record from on, read through INDEX from the segments: each frame's
// checksum and type are checked. fn must not keep rec. An entry that does
// not lead to a record is a CorruptError (INDEX is rebuilt when the store
// is opened again).
func (s *store) eachCommitted(from int, fn func(i int, rec []byte) error) error {
	st := &s.log
	if from >= st.committed {
		return nil
	}
	if err := s.flushIndex(); err != nil {
		return err
	}
	ir := bufio.NewReaderSize(io.NewSectionReader(s.idx, (st.base+int64(from))*indexEntry,
		int64(st.committed-from)*indexEntry), 1<<16)
	var (
		seg     *os.File
		segN    = -1
		r       *bufio.Reader
		pos     int64
		e       [indexEntry]byte
		hdr     [frameHeader]byte
		payload []byte
	)
	defer func() {
		if seg != nil {
			seg.Close()
		}
	}()
	for i := from; i < st.committed; i++ {
		if _, err := io.ReadFull(ir, e[:]); err != nil {
			return &CorruptError{Segment: indexName, Offset: (st.base + int64(i)) * indexEntry, Record: i,
				Reason: fmt.Sprintf("index cut short (%v); reopen the store to rebuild it", err)}
		}
		l := decodeLoc(e[:])
		bad := func(reason string) error {
			return &CorruptError{Segment: segName(l.seg), Offset: l.off, Record: i,
				Reason: reason + " (reached through " + indexName + "; reopen the store to rebuild it)"}
		}
		if l.seg != segN {
			if seg != nil {
				seg.Close()
			}
			var err error
			if seg, err = s.openFile(segName(l.seg), os.O_RDONLY); err != nil {
				return err
			}
			segN, r = l.seg, nil
		}
		if r == nil || l.off < pos || l.off-pos > 1<<16 {
			r = bufio.NewReaderSize(io.NewSectionReader(seg, l.off, math.MaxInt64-l.off), 1<<16)
		} else if _, err := r.Discard(int(l.off - pos)); err != nil {
			return bad(err.Error())
		}
		pos = l.off
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return bad(err.Error())
		}
		length := binary.LittleEndian.Uint32(hdr[0:])
		if length > maxFramePayload || hdr[8] != frameRecord {
			return bad("no record frame here")
		}
		if cap(payload) < int(length) {
			payload = make([]byte, length)
		}
		payload = payload[:length]
		if _, err := io.ReadFull(r, payload); err != nil {
			return bad(err.Error())
		}
		if crc32.Update(crc32.Checksum(hdr[8:9], castagnoli), castagnoli, payload) != binary.LittleEndian.Uint32(hdr[4:]) {
			return bad("checksum mismatch")
		}
		pos += frameHeader + int64(length)
		if err := fn(i, payload); err != nil {
			return err
		}
	}
	return nil
}

// committedRecords returns copies of the committed records of the newest
// log: for the replays that decide a pending batch from the PCRs or a
// quote, the only paths that hold the whole log in memory.
func (s *store) committedRecords() ([][]byte, error) {
	recs := make([][]byte, 0, s.log.committed)
	err := s.eachCommitted(0, func(_ int, rec []byte) error {
		recs = append(recs, append([]byte(nil), rec...))
		return nil
	})
	return recs, err
}
