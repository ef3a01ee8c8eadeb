package template

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/imasim/imasim/tpmext"
)

// Template-name limits for decoding.
const (
	// MaxNameLenRestore is the longest name a kexec restore accepts: the
	// kernel refuses names of sizeof(evm-sig's fmt) = 69 bytes or more.
	MaxNameLenRestore = 68
	// MaxNameLenEvmctl is the longest name evmctl ima_measurement accepts
	// (it treats longer ones as fatal). It is the default limit.
	MaxNameLenEvmctl = 255
)

// DecodeOptions says how to read a binary measurement list.
type DecodeOptions struct {
	// Order is the byte order of the list's integers.
	Order Order
	// DigestSize is the width of the template-digest column: 20 for
	// binary_runtime_measurements(_sha1) and the kexec dump, 32 for
	// *_sha256 and *_sm3, 48, 64. Any size from 1 to 64 is accepted.
	DigestSize int
	// Alg, when set, is recorded as the algorithm of each entry's one
	// digest (Entry.Digests[0].Alg).
	Alg tpmext.Algorithm
	// MaxNameLen is the longest template name accepted; 0 means
	// MaxNameLenEvmctl. Restore always uses MaxNameLenRestore.
	MaxNameLen int
	// MaxDataLen is the largest template_data_len accepted; 0 means
	// MaxTemplateDataLen. Restore ignores it (the kexec buffer bounds the
	// records, as in the kernel).
	MaxDataLen int
	// Restore applies the rules of a kexec restore: names of
	// MaxNameLenRestore bytes at most, the "ima" template refused, and
	// names resolved like the kernel's lookup (a builtin's fmt resolves to
	// the builtin, so such a record re-encodes under the builtin's name).
	// Without Restore a name that is not exactly a builtin's is decoded as
	// a custom format, so every record re-encodes to the same bytes.
	Restore bool
}

func (o *DecodeOptions) check() error {
	if o.Order != LittleEndian && o.Order != BigEndian {
		return fmt.Errorf("template: invalid byte order %d", o.Order)
	}
	if o.DigestSize < 1 || o.DigestSize > MaxDigestSize {
		return fmt.Errorf("template: digest size %d out of range 1-%d", o.DigestSize, MaxDigestSize)
	}
	if o.MaxNameLen < 0 || o.MaxDataLen < 0 {
		return fmt.Errorf("template: negative name limit %d or data limit %d", o.MaxNameLen, o.MaxDataLen)
	}
	return nil
}

func (o *DecodeOptions) nameLimit() int {
	switch {
	case o.Restore:
		return MaxNameLenRestore
	case o.MaxNameLen == 0:
		return MaxNameLenEvmctl
	}
	return o.MaxNameLen
}

func (o *DecodeOptions) dataLimit() int {
	switch {
	case o.Restore:
		return math.MaxInt32
	case o.MaxDataLen == 0:
		return MaxTemplateDataLen
	}
	return min(o.MaxDataLen, math.MaxInt32)
}

// Errors a DecodeError wraps; test with errors.Is.
var (
	// ErrTruncated: the input ends inside a record.
	ErrTruncated = errors.New("truncated record")
	// ErrNameTooLong: a template name over the limit.
	ErrNameTooLong = errors.New("template name too long")
	// ErrUnknownTemplate: a name that is neither a builtin nor a valid
	// format string (or is empty).
	ErrUnknownTemplate = errors.New("unknown template")
	// ErrUnsupportedTemplate: the "ima" template in a kexec restore.
	ErrUnsupportedTemplate = errors.New("unsupported template")
	// ErrTemplateData: template data that does not split into exactly the
	// template's fields.
	ErrTemplateData = errors.New("template data does not match the template")
)

// DecodeError reports a malformed record.
type DecodeError struct {
	// Index is the record's position in the list, from 0.
	Index int
	// Offset is the byte offset, from the start of the input, of the item
	// that is wrong (a length field, or where a truncated item starts).
	Offset int64
	// RecordOffset is the byte offset of the record's first byte.
	RecordOffset int64
	// Err describes the problem; it wraps one of the Err* values above.
	Err error
}

// Error names the record by index and the offset of the wrong item, and
// the record's own offset where it differs: "record 3 at offset 250 (the
// record starts at offset 212): ...".
func (e *DecodeError) Error() string {
	if e.RecordOffset != e.Offset {
		return fmt.Sprintf("record %d at offset %d (the record starts at offset %d): %v", e.Index, e.Offset, e.RecordOffset, e.Err)
	}
	return fmt.Sprintf("record %d at offset %d: %v", e.Index, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// decodedEntry puts an entry and its one digest in one allocation.
type decodedEntry struct {
	e Entry
	d [1]tpmext.Digest
}

// Entry builds the Entry of the record framed by f from the record's bytes
// rec (rec[:f.Len] is the record), which the entry takes over: its fields
// and digest are subslices of rec, except the "ima" template's n, which
// gets back the NUL its binary form drops. The one digest is the column,
// with algorithm alg.
func (f *Frame) Entry(rec []byte, alg tpmext.Algorithm) *Entry {
	de := &decodedEntry{}
	de.d[0] = tpmext.Digest{Alg: alg, Value: f.Digest.In(rec)}
	e := &de.e
	*e = Entry{PCR: f.PCR, Desc: f.Desc, Fields: make([][]byte, f.NumFields), Digests: de.d[:]}
	for i, s := range f.Fields[:f.NumFields] {
		e.Fields[i] = s.In(rec)
	}
	if f.legacy {
		n := e.Fields[1]
		e.Fields[1] = append(append(make([]byte, 0, len(n)+1), n...), 0)
	}
	return e
}

// scanAll frames every record of data in order, calling fn with each
// record's bytes and frame. It stops at the first malformed or truncated
// record with its *DecodeError.
func scanAll(data []byte, opts DecodeOptions, fn func(rec []byte, f *Frame)) error {
	s, err := NewScanner(opts)
	if err != nil {
		return err
	}
	var f Frame
	for pos, i := 0, 0; pos < len(data); i++ {
		if err := s.Scan(data[pos:], i, int64(pos), &f); err != nil {
			if short, ok := err.(*ShortError); ok {
				return short.Truncated()
			}
			return err
		}
		fn(data[pos:pos+f.Len:pos+f.Len], &f)
		pos += f.Len
	}
	return nil
}

// DecodeAll decodes every record of a binary measurement list. On a
// malformed record it returns the records before it and a *DecodeError.
// The entries do not share memory with data (they share one copy of it).
func DecodeAll(data []byte, opts DecodeOptions) ([]*Entry, error) {
	var out []*Entry
	// One copy of the input backs every entry.
	err := scanAll(bytes.Clone(data), opts, func(rec []byte, f *Frame) {
		out = append(out, f.Entry(rec, opts.Alg))
	})
	return out, err
}

// Split cuts a binary measurement list into its records, each checked as
// DecodeAll checks it; the records are subslices of data (capacity cut at
// their end). On a malformed record it returns the records before it and a
// *DecodeError.
func Split(data []byte, opts DecodeOptions) ([][]byte, error) {
	var out [][]byte
	err := scanAll(data, opts, func(rec []byte, _ *Frame) { out = append(out, rec) })
	return out, err
}

// Decoder reads a binary measurement list from a stream one record at a
// time, holding only the current record: no more than the bytes that
// arrived, and (outside Restore) no more than a record with
// DecodeOptions.MaxDataLen of template data.
type Decoder struct {
	s     *Scanner
	r     io.Reader
	buf   []byte // buf[pos:] is read and not yet returned
	pos   int
	off   int64 // input offset of buf[pos]
	index int
	f     Frame
	eof   bool
	rerr  error
	err   error
}

// minRead is the decoder's first buffer; it doubles while a record does
// not fit.
const minRead = 64 << 10

// NewDecoder returns a decoder reading r.
func NewDecoder(r io.Reader, opts DecodeOptions) (*Decoder, error) {
	s, err := NewScanner(opts)
	if err != nil {
		return nil, err
	}
	return &Decoder{s: s, r: r}, nil
}

// Next returns the next record, io.EOF after the last one, or a
// *DecodeError for a record it cannot read (wrapping the reader's error
// when reading failed). After an error every call returns the same error.
func (d *Decoder) Next() (*Entry, error) {
	for d.err == nil {
		err := d.s.Scan(d.buf[d.pos:], d.index, d.off, &d.f)
		if err == nil {
			n := d.f.Len
			e := d.f.Entry(bytes.Clone(d.buf[d.pos:d.pos+n]), d.s.opts.Alg)
			d.pos += n
			d.off += int64(n)
			d.index++
			return e, nil
		}
		short, ok := err.(*ShortError)
		switch {
		case !ok:
			d.err = err
		case d.rerr != nil:
			d.err = &DecodeError{Index: d.index, Offset: short.At, RecordOffset: d.off,
				Err: fmt.Errorf("reading the list: %w", d.rerr)}
		case d.eof && d.pos == len(d.buf):
			d.err = io.EOF
		case d.eof:
			d.err = short.Truncated()
		default:
			d.read()
		}
	}
	return nil, d.err
}

// read moves the unreturned bytes to the front of the buffer, doubles it
// when they fill it, and reads once into the rest.
func (d *Decoder) read() {
	rest := len(d.buf) - d.pos
	if rest == cap(d.buf) || cap(d.buf) > maxPooled && rest <= maxPooled/2 {
		// Grow while a record does not fit; shrink back after a huge one.
		grown := make([]byte, rest, max(minRead, 2*rest))
		copy(grown, d.buf[d.pos:])
		d.buf = grown
	} else {
		d.buf = d.buf[:copy(d.buf, d.buf[d.pos:])]
	}
	d.pos = 0
	for range 100 { // as bufio.Reader: a reader that keeps giving nothing fails
		n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+n]
		switch {
		case err == io.EOF:
			d.eof = true
			return
		case err != nil:
			d.rerr = err
			return
		case n > 0:
			return
		}
	}
	d.rerr = io.ErrNoProgress
}

// Index returns the number of records returned so far.
func (d *Decoder) Index() int { return d.index }

// Offset returns the number of bytes of the records returned so far.
func (d *Decoder) Offset() int64 { return d.off }
