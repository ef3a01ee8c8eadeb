package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// EventLog is a parsed measurement list held in memory: its records in
// their binary encoding (the input itself for a binary list, the rebuilt
// records for an ASCII one) and where each starts.
//
// An EventLog is immutable; its methods are safe for concurrent use.
type EventLog struct {
	f    *format
	data []byte
	recs []recInfo
}

// ParseEventLog parses a whole measurement list. It fails on the first
// malformed record (or line) with a *template.DecodeError naming its index
// and byte offset; a list that ends inside a record fails with
// template.ErrTruncated. The EventLog keeps data (a binary list is not
// copied).
//
// It is go-attestation's attest.ParseEventLog for IMA lists.
func ParseEventLog(data []byte, opts Options) (*EventLog, error) {
	f, err := opts.check()
	if err != nil {
		return nil, err
	}
	l := &EventLog{f: f}
	if f.ascii {
		return l, l.parseASCII(data)
	}
	l.data = data
	p := newParser(f)
	pos, index, off := 0, f.firstIndex, f.firstOff
	for pos < len(data) {
		r, err := p.scan(data[pos:], index, off)
		if err != nil {
			var short *template.ShortError
			if errors.As(err, &short) {
				err = short.Truncated()
			}
			return nil, err
		}
		r.start, r.end, r.data = pos+r.start, pos+r.end, pos+r.data
		l.recs = append(l.recs, r)
		pos = r.end
		index++
		off = r.next
	}
	return l, nil
}

func (l *EventLog) parseASCII(text []byte) error {
	a := newASCIIParser(l.f)
	index, off := l.f.firstIndex, l.f.firstOff
	for pos := 0; pos < len(text); {
		limit := MaxLineLen(l.f.dataLimit)
		nl := bytes.IndexByte(text[pos:min(len(text), pos+limit+1)], '\n')
		if nl < 0 && len(text)-pos > limit {
			return errLineTooLong(index, off, l.f.firstIndex, limit)
		}
		if nl < 0 {
			return &template.DecodeError{Index: index, Offset: off + int64(len(text)-pos), RecordOffset: off,
				Err: fmt.Errorf("%w: the last line has no newline", template.ErrTruncated)}
		}
		var r recInfo
		var err error
		if l.data, r, err = a.line(l.data, text[pos:pos+nl], index, off); err != nil {
			return err
		}
		l.recs = append(l.recs, r)
		pos += nl + 1
		index++
		off = r.next
	}
	return nil
}

// Len returns the number of records.
func (l *EventLog) Len() int { return len(l.recs) }

// Options returns the options that read this list, with the column width
// and algorithm filled in.
func (l *EventLog) Options() Options {
	o := l.f.binaryOptions()
	o.ASCII = l.f.ascii
	o.FirstIndex, o.FirstOffset = l.f.firstIndex, l.f.firstOff
	return o
}

// Binary returns the binary encoding of the list (for an ASCII list, of
// its rebuilt records). It shares memory with the EventLog.
func (l *EventLog) Binary() []byte {
	if len(l.recs) == 0 {
		return nil
	}
	return l.data[l.recs[0].start:l.recs[len(l.recs)-1].end]
}

// Record returns record i (0 <= i < Len(); its Index is FirstIndex + i).
func (l *EventLog) Record(i int) Record {
	return makeRecord(l.f, l.data, &l.recs[i], l.f.firstIndex+i)
}

// All iterates over the records in order.
func (l *EventLog) All() iter.Seq[Record] {
	return func(yield func(Record) bool) {
		for i := range l.recs {
			if !yield(l.Record(i)) {
				return
			}
		}
	}
}

// Record is one record of a list. Its byte slices share memory with the
// list (or, from a Reader, with the Reader's buffer until the next call to
// Next); do not modify them.
type Record struct {
	// Index is the record's position in the list, from 0.
	Index int
	// Offset is the byte offset of the record (binary) or of its line
	// (ASCII) in the input.
	Offset int64
	// PCR is the PCR the record extends.
	PCR uint32
	// Digest is the template-digest column.
	Digest []byte
	// Template is the record's template descriptor.
	Template *template.Descriptor

	f    *format
	raw  []byte
	info recInfo // positions relative to raw
}

func makeRecord(f *format, buf []byte, r *recInfo, index int) Record {
	raw := buf[r.start:r.end:r.end]
	info := *r
	info.data -= r.start
	info.end -= r.start
	info.start = 0
	return Record{
		Index:    index,
		Offset:   r.off,
		PCR:      r.pcr,
		Digest:   raw[4 : 4+f.ds : 4+f.ds],
		Template: r.desc,
		f:        f,
		raw:      raw,
		info:     info,
	}
}

// Binary returns the record's binary encoding (for an ASCII list, the
// rebuilt record).
func (r Record) Binary() []byte { return r.raw }

// Violation reports whether the record is a violation: its template digest
// is all zeros (security/integrity/ima/ima_api.c:ima_add_violation()).
func (r Record) Violation() bool { return allZero(r.Digest) }

// ColumnAlg returns the algorithm of the template-digest column.
func (r Record) ColumnAlg() tpmext.Algorithm { return r.f.col }

// HashInput appends to dst the bytes the record's template digests are
// computed over: the template data (u32 length and bytes of each field),
// or for the "ima" template the d field and the name padded to 256 bytes.
func (r Record) HashInput(dst []byte) []byte {
	var scratch [imaHashInputLen]byte
	return append(dst, hashInput(r.raw, &r.info, &scratch)...)
}

// TemplateDigest returns the template digest the kernel computes for a
// bank of algorithm alg: H_alg(HashInput), or the padded SHA-1 digest for a
// bank the kernel does not map (SHA-3). For a violation the kernel stores
// zeros instead; this returns what the data hashes to regardless.
func (r Record) TemplateDigest(alg tpmext.Algorithm) ([]byte, error) {
	if !alg.Known() {
		return nil, fmt.Errorf("eventlog: unknown algorithm %v", alg)
	}
	s := specFor(alg, false)
	in := r.HashInput(nil)
	out := make([]byte, s.size)
	if s.padded {
		newHasher(tpmext.SHA1).sum(out[:20], in)
		return out, nil
	}
	newHasher(alg).sum(out, in)
	return out, nil
}

// Entry decodes the record into a template.Entry with one digest, the
// column (Digests[0], slot 0), so that Entry.AppendASCII(dst, 0, order)
// renders the line of the column's ascii_runtime_measurements file and
// Entry.AppendBinary(dst, 0, order) re-encodes the record.
func (r Record) Entry() (*template.Entry, error) {
	es, err := template.DecodeAll(r.raw, r.f.decodeOptions())
	if err != nil {
		return nil, err
	}
	if len(es) != 1 {
		return nil, fmt.Errorf("eventlog: record %d decodes to %d entries", r.Index, len(es))
	}
	return es[0], nil
}

// Reader reads a measurement list from an io.Reader one record at a time,
// holding a few batches of records (64 KiB each) rather than the list. Its
// Replay, Verify and ReplayUntil methods consume the rest of the input.
type Reader struct {
	f   *format
	src source
	cur *batch
	pos int
	rec Record
	err error
}

// NewReader returns a Reader of the list in r.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	f, err := opts.check()
	if err != nil {
		return nil, err
	}
	rd := &Reader{f: f}
	if f.ascii {
		rd.src = newASCIISource(r, f)
	} else {
		rd.src = newBinarySource(r, f)
	}
	return rd, nil
}

// Next returns the next record, valid until the next call, or io.EOF after
// the last one, or the *template.DecodeError of a malformed record (every
// later call returns it too).
func (rd *Reader) Next() (*Record, error) {
	for rd.cur == nil || rd.pos >= len(rd.cur.recs) {
		if rd.err != nil {
			return nil, rd.err
		}
		if rd.cur == nil {
			rd.cur = newBatch()
		}
		rd.err = rd.src.fill(rd.cur)
		rd.pos = 0
	}
	rd.rec = makeRecord(rd.f, rd.cur.buf, &rd.cur.recs[rd.pos], rd.cur.first+rd.pos)
	rd.pos++
	return &rd.rec, nil
}

// Options returns the options that read this list; for an ASCII list the
// column width is known once a line has been read.
func (rd *Reader) Options() Options {
	o := rd.f.binaryOptions()
	o.ASCII = rd.f.ascii
	o.FirstIndex, o.FirstOffset = rd.f.firstIndex, rd.f.firstOff
	return o
}

// rest returns the source of the records not yet returned by Next.
func (rd *Reader) rest() source {
	src := rd.src
	if rd.cur != nil && rd.pos < len(rd.cur.recs) {
		src = &leftSource{left: rd.cur, pos: rd.pos, next: src}
	} else if rd.err != nil {
		src = errSource{rd.err}
	}
	rd.cur, rd.pos = nil, 0
	rd.err = errConsumed
	return src
}

var errConsumed = errors.New("eventlog: the Reader was consumed by a replay")

type errSource struct{ err error }

func (s errSource) fill(b *batch) error { b.recs = b.recs[:0]; return s.err }
