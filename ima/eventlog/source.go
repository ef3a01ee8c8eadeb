package eventlog

import (
	"fmt"
	"io"

	"github.com/imasim/imasim/ima/template"
)

// Batch limits: a batch holds whole records, about batchBytes of them
// and at most batchRecords. A record larger than batchBytes gets a batch
// of its own, grown as its bytes arrive. Measured on 100,000 records with
// two cores, 64 KiB batches beat 256 KiB to 2 MiB ones: fewer page faults,
// and enough batches in flight to keep every goroutine busy.
const (
	batchBytes   = 64 << 10
	batchRecords = 512
	// maxKeptBuf: a batch buffer grown past this for a huge record is
	// dropped once that batch is refilled.
	maxKeptBuf = 4 * batchBytes
	// minBuf is a stream batch's first buffer, grown while input comes.
	minBuf = 4 << 10
)

// batch is a run of consecutive records with their binary encodings, the
// unit the hashing workers take.
type batch struct {
	buf   []byte    // the records' binary encodings (owned, or the EventLog's data)
	recs  []recInfo // the records, positions in buf
	own   []recInfo // storage for recs when the batch owns them
	first int       // index of recs[0] in the list
	// Filled by the hashing worker: per record, a row of digests (see
	// engine) and flags.
	rows  []byte
	flags []uint8
	// hashed is closed by the worker once rows and flags are ready (a
	// new channel per fill, so every bank goroutine sees the close).
	hashed chan struct{}
	// Filled by the bank goroutines: per bank j, match[j*len(recs)+i]
	// says whether the bank's part of the target matches after record i,
	// and snap[j*snapStride:] holds its values before the batch.
	match []bool
	snap  []byte
	ext   chan struct{} // one signal per bank that extended the batch
}

func newBatch() *batch { return &batch{} }

// reset empties b for a refill, keeping its storage unless it is a
// shared log's data or grew huge.
func (b *batch) reset() {
	b.recs = b.own[:0]
	if cap(b.buf) > maxKeptBuf {
		b.buf = nil
	}
	b.buf = b.buf[:0]
}

// source hands out a list's records in order, a batch at a time.
type source interface {
	// fill replaces b's records with the next ones. It returns io.EOF at
	// the end of the list, with no records. Another error (a malformed
	// record, a failed read) comes with the records before it, which are
	// valid; every later call returns the same error.
	fill(b *batch) error
}

// logSource hands out the records of an EventLog without copying.
type logSource struct {
	l    *EventLog
	next int
}

func (s *logSource) fill(b *batch) error {
	b.recs = b.recs[:0]
	if s.next >= len(s.l.recs) {
		return io.EOF
	}
	start, end, size := s.next, s.next, 0
	for end < len(s.l.recs) && end-start < batchRecords && size < batchBytes {
		r := &s.l.recs[end]
		size += r.end - r.start
		end++
	}
	b.buf = s.l.data
	b.recs = s.l.recs[start:end]
	b.first = s.l.f.firstIndex + start
	s.next = end
	return nil
}

// binarySource reads binary records from an io.Reader, a batch buffer at
// a time; the bytes of a record cut by the buffer's end are carried into
// the next batch.
type binarySource struct {
	r     io.Reader
	p     *parser
	carry []byte
	index int   // index of the next record
	off   int64 // input offset of the next record (carry[0])
	eof   bool
	rerr  error // a read error other than io.EOF
	err   error // sticky result
	// big is set once a batch filled up: later batches start at full
	// size instead of growing from minBuf.
	big bool
}

func newBinarySource(r io.Reader, f *format) *binarySource {
	return &binarySource{r: r, p: newParser(f), index: f.firstIndex, off: f.firstOff}
}

// read fills buf up to its capacity or the end of the input.
func (s *binarySource) read(buf []byte) []byte {
	for !s.eof && s.rerr == nil && len(buf) < cap(buf) {
		n, err := s.r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			s.rerr = err
		}
	}
	return buf
}

func (s *binarySource) fill(b *batch) error {
	b.reset()
	if s.err != nil {
		return s.err
	}
	buf := b.buf
	if cap(buf) == 0 {
		size := minBuf
		if s.big {
			size = batchBytes
			b.recs = make([]recInfo, 0, batchRecords)
		}
		buf = make([]byte, 0, max(size, 2*len(s.carry)))
	}
	buf = append(buf, s.carry...)
	s.carry = s.carry[:0]
	if cap(s.carry) > maxKeptBuf {
		s.carry = nil
	}
	b.first = s.index
	for {
		buf = s.read(buf)
		// Grow towards batchBytes while the input keeps coming, so a
		// small list costs a small buffer.
		for len(buf) == cap(buf) && cap(buf) < batchBytes && !s.eof && s.rerr == nil {
			buf = s.read(regrow(buf, min(4*cap(buf), batchBytes)))
		}
		pos := 0
		var short *template.ShortError
		for len(b.recs) < batchRecords && pos < len(buf) {
			r, err := s.p.scan(buf[pos:], s.index, s.off)
			if err != nil {
				var ok bool
				if short, ok = err.(*template.ShortError); ok {
					break
				}
				s.err = err
				b.buf = buf[:pos]
				return err
			}
			r.start, r.end, r.data = pos+r.start, pos+r.end, pos+r.data
			b.recs = append(b.recs, r)
			pos = r.end
			s.index++
			s.off = r.next
		}
		if len(b.recs) > 0 {
			s.carry = append(s.carry, buf[pos:]...)
			b.buf = buf[:pos]
			b.own = b.recs[:0]
			s.big = s.big || cap(buf) >= batchBytes
			return nil
		}
		// Not one whole record in buf.
		if s.eof || s.rerr != nil {
			b.buf = buf[:0]
			switch {
			case s.rerr != nil:
				s.err = &template.DecodeError{Index: s.index, Offset: s.off + int64(len(buf)), RecordOffset: s.off,
					Err: fmt.Errorf("reading the list: %w", s.rerr)}
			case len(buf) == 0:
				s.err = io.EOF
			default:
				s.err = short.Truncated()
			}
			return s.err
		}
		// The record is larger than the buffer: grow it, by as much
		// as it holds, so memory follows the bytes actually read.
		buf = regrow(buf, 2*cap(buf))
	}
}

// regrow returns buf with capacity n (more than its length).
func regrow(buf []byte, n int) []byte {
	grown := make([]byte, len(buf), n)
	copy(grown, buf)
	return grown
}

// leftSource first hands out the records a Reader has buffered but not
// returned, then the rest of the input.
type leftSource struct {
	left *batch // nil once handed out
	pos  int
	next source
}

func (s *leftSource) fill(b *batch) error {
	if s.left == nil {
		return s.next.fill(b)
	}
	l := s.left
	s.left = nil
	if s.pos >= len(l.recs) {
		return s.next.fill(b)
	}
	b.reset()
	base := l.recs[s.pos].start
	b.buf = append(b.buf, l.buf[base:l.recs[len(l.recs)-1].end]...)
	for _, r := range l.recs[s.pos:] {
		r.start, r.end, r.data = r.start-base, r.end-base, r.data-base
		b.recs = append(b.recs, r)
	}
	b.own = b.recs[:0]
	b.first = l.first + s.pos
	return nil
}
