package template

import (
	"bufio"
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
	if o.MaxNameLen < 0 {
		return fmt.Errorf("template: negative name limit %d", o.MaxNameLen)
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

func (e *DecodeError) Error() string {
	return fmt.Sprintf("record %d at offset %d: %v", e.Index, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// cursor hands out the bytes of one record at a time.
type cursor interface {
	// next returns the next n bytes of the record. If fewer remain it
	// returns how many did, with errShort (or io.EOF when none did at the
	// start of a record).
	next(n int) ([]byte, error)
	// pos is the offset of the next byte in the input.
	pos() int64
}

type errShort struct{ have int }

func (errShort) Error() string { return "short" }

// sliceCursor reads a []byte.
type sliceCursor struct {
	data []byte
	off  int
}

func (c *sliceCursor) next(n int) ([]byte, error) {
	if rem := len(c.data) - c.off; n > rem {
		c.off = len(c.data)
		return nil, errShort{have: rem}
	}
	b := c.data[c.off : c.off+n]
	c.off += n
	return b, nil
}

func (c *sliceCursor) pos() int64 { return int64(c.off) }

// streamCursor reads an io.Reader into a scratch buffer that holds the
// current record only, grown as bytes actually arrive.
type streamCursor struct {
	r   *bufio.Reader
	off int64
	rec []byte
}

// growStep bounds how much the buffer grows ahead of the bytes read, so a
// huge length field costs at most this much before the input runs out.
const growStep = 64 << 10

func (c *streamCursor) next(n int) ([]byte, error) {
	start := len(c.rec)
	for len(c.rec)-start < n {
		chunk := min(n-(len(c.rec)-start), growStep)
		if cap(c.rec)-len(c.rec) < chunk {
			grown := make([]byte, len(c.rec), len(c.rec)+max(chunk, len(c.rec)))
			copy(grown, c.rec)
			c.rec = grown
		}
		m, err := io.ReadFull(c.r, c.rec[len(c.rec):len(c.rec)+chunk])
		c.rec = c.rec[:len(c.rec)+m]
		c.off += int64(m)
		if err != nil {
			have := len(c.rec) - start
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errShort{have: have}
			}
			return nil, err
		}
	}
	return c.rec[start : start+n], nil
}

func (c *streamCursor) pos() int64 { return c.off }

// span is a piece of the current record, relative to its start.
type span struct{ off, len int }

// parsed is a record whose pieces are still spans of the record's bytes.
type parsed struct {
	pcr     uint32
	digest  span
	desc    *Descriptor
	fields  [MaxFields]span
	nfields int
	imaN    bool // the last field is the legacy n, stored without its NUL
}

func (r *parsed) addField(s span) {
	r.fields[r.nfields] = s
	r.nfields++
}

// recordParser holds what is shared between the records of one list.
type recordParser struct {
	opts   DecodeOptions
	custom map[string]*Descriptor // parsed custom formats, by name
}

func newRecordParser(opts DecodeOptions) (*recordParser, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return &recordParser{opts: opts, custom: map[string]*Descriptor{}}, nil
}

// parse reads one record from c. It returns io.EOF if c is empty at the
// start of the record.
//
// Mirrors the record walk of
// security/integrity/ima/ima_template.c:ima_restore_measurement_list() and
// ima_template_lib.c:ima_parse_buf(), in the stricter form of evmctl and
// the verifiers: every length is checked against what remains.
func (p *recordParser) parse(c cursor, index int, r *parsed) error {
	o := p.opts.Order
	recStart := c.pos()
	fail := func(at int64, err error) error {
		return &DecodeError{Index: index, Offset: at, RecordOffset: recStart, Err: err}
	}
	// take reads n bytes of the item what (of its length field when
	// isLen), turning a short read into ErrTruncated.
	take := func(n int, what string, isLen bool) ([]byte, span, error) {
		at := c.pos()
		b, err := c.next(n)
		if err != nil {
			if short, ok := err.(errShort); ok {
				suffix := ""
				if isLen {
					suffix = " length"
				}
				err = fmt.Errorf("%w: %s%s needs %d bytes, %d remain", ErrTruncated, what, suffix, n, short.have)
			}
			return nil, span{}, fail(at, err)
		}
		return b, span{int(at - recStart), n}, nil
	}
	// length reads a u32 length and checks it against limit.
	length := func(what string, limit int, limitErr error) (int, int64, error) {
		b, _, err := take(4, what, true)
		if err != nil {
			return 0, 0, err
		}
		at := c.pos() - 4
		v := o.u32(b)
		if uint64(v) > uint64(limit) {
			return 0, 0, fail(at, fmt.Errorf("%w: %s length %d exceeds %d", limitErr, what, v, limit))
		}
		return int(v), at, nil
	}

	*r = parsed{}
	at := c.pos()
	b, err := c.next(4)
	if err != nil {
		short, ok := err.(errShort)
		if ok && short.have == 0 {
			return io.EOF
		}
		if ok {
			err = fmt.Errorf("%w: PCR needs 4 bytes, %d remain", ErrTruncated, short.have)
		}
		return fail(at, err)
	}
	r.pcr = o.u32(b)
	if _, r.digest, err = take(p.opts.DigestSize, "template digest", false); err != nil {
		return err
	}
	nameLen, nameAt, err := length("template name", p.opts.nameLimit(), ErrNameTooLong)
	if err != nil {
		return err
	}
	if nameLen == 0 {
		return fail(nameAt, fmt.Errorf("%w: empty template name", ErrUnknownTemplate))
	}
	name, _, err := take(nameLen, "template name", false)
	if err != nil {
		return err
	}
	if r.desc, err = p.descriptor(name); err != nil {
		return fail(nameAt+4, err)
	}

	if string(name) == imaName {
		// Legacy layout: d raw (IMA_DIGEST_SIZE), u32 strlen(n), n.
		_, s, err := take(sha1Size, "ima d field", false)
		if err != nil {
			return err
		}
		r.addField(s)
		n, nAt, err := length("ima n field", MaxEventNameLen, ErrTemplateData)
		if err != nil {
			return err
		}
		nb, s, err := take(n, "ima n field", false)
		if err != nil {
			return err
		}
		if bytes.IndexByte(nb, 0) >= 0 {
			return fail(nAt+4, fmt.Errorf("%w: ima n field contains NUL", ErrTemplateData))
		}
		r.addField(s)
		r.imaN = true
		return nil
	}

	dataLen, dataAt, err := length("template data", math.MaxInt32, ErrTemplateData)
	if err != nil {
		return err
	}
	data, ds, err := take(dataLen, "template data", false)
	if err != nil {
		return err
	}
	nf := r.desc.NumFields()
	off := 0
	for i := 0; i < nf; i++ {
		fieldAt := dataAt + 4 + int64(off)
		if len(data)-off < 4 {
			return fail(fieldAt, fmt.Errorf("%w: template data holds %d of the %d fields of %s", ErrTemplateData, i, nf, r.desc))
		}
		fl := o.u32(data[off:])
		off += 4
		if uint64(fl) > uint64(len(data)-off) {
			return fail(fieldAt, fmt.Errorf("%w: field %d (%s) length %d exceeds the %d bytes left of the template data", ErrTemplateData, i, r.desc.Field(i), fl, len(data)-off))
		}
		r.addField(span{ds.off + off, int(fl)})
		off += int(fl)
	}
	if off != len(data) {
		return fail(dataAt+4+int64(off), fmt.Errorf("%w: %d bytes after the %d fields of %s", ErrTemplateData, len(data)-off, nf, r.desc))
	}
	return nil
}

// descriptor resolves a record's template name.
func (p *recordParser) descriptor(name []byte) (*Descriptor, error) {
	if p.opts.Restore && string(name) == imaName {
		return nil, fmt.Errorf("%w: %q cannot be restored", ErrUnsupportedTemplate, name)
	}
	if d := p.custom[string(name)]; d != nil {
		return d, nil
	}
	var d *Descriptor
	if p.opts.Restore {
		d = Lookup(string(name))
	} else {
		d = Builtin(string(name))
	}
	if d != nil {
		return d, nil
	}
	d, err := ParseFmt(string(name))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownTemplate, err)
	}
	p.custom[string(name)] = d
	return d, nil
}

// decodedEntry puts an entry and its one digest in one allocation.
type decodedEntry struct {
	e Entry
	d [1]tpmext.Digest
}

// entry builds the Entry of r from its record's bytes rec, which the entry
// takes over.
func (p *recordParser) entry(r *parsed, rec []byte) *Entry {
	sub := func(s span) []byte { return rec[s.off : s.off+s.len : s.off+s.len] }
	de := &decodedEntry{}
	de.d[0] = tpmext.Digest{Alg: p.opts.Alg, Value: sub(r.digest)}
	e := &de.e
	*e = Entry{PCR: r.pcr, Desc: r.desc, Fields: make([][]byte, r.nfields), Digests: de.d[:]}
	for i, s := range r.fields[:r.nfields] {
		e.Fields[i] = sub(s)
	}
	if r.imaN {
		last := len(e.Fields) - 1
		e.Fields[last] = append(append(make([]byte, 0, len(e.Fields[last])+1), e.Fields[last]...), 0)
	}
	return e
}

// DecodeAll decodes every record of a binary measurement list. On a
// malformed record it returns the records before it and a *DecodeError.
// The entries do not share memory with data (they share one copy of it).
func DecodeAll(data []byte, opts DecodeOptions) ([]*Entry, error) {
	p, err := newRecordParser(opts)
	if err != nil {
		return nil, err
	}
	var out []*Entry
	var r parsed
	// One copy of the input backs every entry.
	c := &sliceCursor{data: bytes.Clone(data)}
	for i := 0; ; i++ {
		start := c.off
		err := p.parse(c, i, &r)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, p.entry(&r, c.data[start:c.off:c.off]))
	}
}

// Split cuts a binary measurement list into its records, each checked as
// DecodeAll checks it; the records are subslices of data (capacity cut at
// their end). On a malformed record it returns the records before it and a
// *DecodeError.
func Split(data []byte, opts DecodeOptions) ([][]byte, error) {
	p, err := newRecordParser(opts)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	var r parsed
	c := &sliceCursor{data: data}
	for i := 0; ; i++ {
		start := c.off
		err := p.parse(c, i, &r)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, data[start:c.off:c.off])
	}
}

// Decoder reads a binary measurement list from a stream one record at a
// time, holding only the current record.
type Decoder struct {
	p     *recordParser
	c     streamCursor
	r     parsed
	index int
	err   error
}

// NewDecoder returns a decoder reading r (through a bufio.Reader).
func NewDecoder(r io.Reader, opts DecodeOptions) (*Decoder, error) {
	p, err := newRecordParser(opts)
	if err != nil {
		return nil, err
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Decoder{p: p, c: streamCursor{r: br}}, nil
}

// Next returns the next record, io.EOF after the last one, or a
// *DecodeError for a record it cannot read (wrapping the reader's error
// when reading failed). After an error every call returns the same error.
func (d *Decoder) Next() (*Entry, error) {
	if d.err != nil {
		return nil, d.err
	}
	d.c.rec = d.c.rec[:0]
	if err := d.p.parse(&d.c, d.index, &d.r); err != nil {
		d.err = err
		return nil, err
	}
	d.index++
	e := d.p.entry(&d.r, bytes.Clone(d.c.rec))
	if cap(d.c.rec) > maxPooled {
		d.c.rec = nil // do not keep a huge record's buffer
	}
	return e, nil
}

// Index returns the number of records returned so far.
func (d *Decoder) Index() int { return d.index }

// Offset returns the number of bytes consumed so far.
func (d *Decoder) Offset() int64 { return d.c.off }
