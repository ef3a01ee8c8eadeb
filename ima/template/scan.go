package template

import (
	"bytes"
	"fmt"
)

// MaxTemplateDataLen is the default cap on a record's template_data_len
// (DecodeOptions.MaxDataLen), and so, with the fixed parts, on the memory a
// reader spends on one record.
//
// The kernel has no such limit on output: ima_measurements_show() writes
// whatever the fields' init functions built, and
// ima_restore_measurement_list() accepts any length within the kexec
// buffer. The cap is chosen from what the init functions of
// security/integrity/ima/ima_template_lib.c can build: the largest field in
// practice is "buf" for a key (add_key(2) refuses payloads of 1 MiB or
// more, security/keys/keyctl.c), xattr values are at most XATTR_SIZE_MAX
// (64 KiB) each and names at most PATH_MAX. 16 MiB leaves a factor of 16
// over the largest of these; a list whose records are larger (a huge
// appended signature, a caller of ima_measure_critical_data() with a huge
// buffer) can be read with a larger DecodeOptions.MaxDataLen. A kexec
// restore (DecodeOptions.Restore) is bounded by its buffer instead, as in
// the kernel.
const MaxTemplateDataLen = 16 << 20

// Span is a run of bytes of one record: Off bytes after the record's
// first byte, Len bytes long.
type Span struct{ Off, Len int }

// In returns the span's bytes in rec, the record's bytes, with the
// capacity cut at the span's end.
func (s Span) In(rec []byte) []byte { return rec[s.Off : s.Off+s.Len : s.Off+s.Len] }

// Frame says where the parts of one binary record are. Offsets are
// relative to the record's first byte.
type Frame struct {
	// Len is the record's length in bytes.
	Len int
	// PCR is the record's PCR index.
	PCR uint32
	// Desc is the record's template.
	Desc *Descriptor
	// Digest is the template-digest column.
	Digest Span
	// Data is the template data after its u32 length: the bytes every
	// template digest is computed over. For the "ima" template, which has
	// no template data length, it runs from the d field to the end of n
	// (d, u32 strlen(n), n) and the digest input is built from Fields.
	Data Span
	// Fields holds each field's bytes (without their length prefix), the
	// first NumFields of them. The "ima" template's n is stored without
	// its NUL.
	Fields    [MaxFields]Span
	NumFields int
	legacy    bool // the "ima" layout
}

// IMA reports whether the record has the legacy "ima" layout: d raw, u32
// strlen(n), n without its NUL.
func (f *Frame) IMA() bool { return f.legacy }

// ShortError is what Scanner.Scan returns when the bytes given hold only
// the start of a record (or nothing): a stream reads more and scans
// again; at the end of the input the record is truncated (Truncated).
type ShortError struct {
	// Index and RecordOffset say which record and where it starts.
	Index        int
	RecordOffset int64
	// At is the input offset of the item that is incomplete, What names
	// it, Need is its size and Have how many of its bytes were given.
	At         int64
	What       string
	Need, Have int
}

func (e *ShortError) Error() string {
	return fmt.Sprintf("record %d at offset %d: short record: %s needs %d bytes, %d given", e.Index, e.At, e.What, e.Need, e.Have)
}

// Truncated returns the error of a record the input ends inside: a
// *DecodeError wrapping ErrTruncated.
func (e *ShortError) Truncated() *DecodeError {
	return &DecodeError{Index: e.Index, Offset: e.At, RecordOffset: e.RecordOffset,
		Err: fmt.Errorf("%w: %s needs %d bytes, %d remain", ErrTruncated, e.What, e.Need, e.Have)}
}

// Scanner frames the binary records of one list: the one parser of the
// binary record format, under template's decoders, Split, the eventlog
// package's sources and the kexec restore.
//
// Scan does not allocate, except for errors other than ShortError and the
// first record of each template name.
type Scanner struct {
	opts  DecodeOptions
	descs map[string]*Descriptor // resolved names (builtin or format)
	// last short-cuts the lookup of a list of one template.
	lastName []byte
	lastDesc *Descriptor
	short    ShortError // returned by Scan, overwritten by the next call
}

// NewScanner returns a scanner for records read with opts.
func NewScanner(opts DecodeOptions) (*Scanner, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return &Scanner{opts: opts, descs: map[string]*Descriptor{}}, nil
}

// Options returns the options the scanner reads with.
func (s *Scanner) Options() DecodeOptions { return s.opts }

// Scan frames the record at the start of b into f; the record is number
// index of the list and starts at byte off of the input (for the offsets of
// errors). On success the record is b[:f.Len].
//
// Errors:
//   - a *ShortError when b holds only part of the record (or is empty):
//     valid until the next call of Scan;
//   - a *DecodeError wrapping one of the Err* values for a malformed
//     record, naming the record's start and the offset of the item that is
//     wrong (a length field, a field's length prefix).
//
// Without Restore it reads as evmctl ima_measurement and the verifiers
// do: the name length is checked against the limit and the name resolved
// (exactly a builtin's name, else a format string) before the data, whose
// length must be at most MaxDataLen; the "ima" template has its legacy
// layout. With Restore it reads as the kernel's restore does: the record
// is framed first (pcr, digest, name and template data, each within b), so
// a record whose name is unknown fails with ErrUnknownTemplate only once it
// is whole, and f.Len is set for that error too; then the name (at most
// MaxNameLenRestore bytes, not "ima") is looked up like
// lookup_template_desc() and the data split.
//
// Mirrors the record walk of
// security/integrity/ima/ima_template.c:ima_restore_measurement_list(),
// ima_restore_template_data() and ima_template_lib.c:ima_parse_buf()
// (with ENFORCE_FIELDS | ENFORCE_BUFEND for the template data).
//
// Differences from Linux: every length is checked against what remains
// (the kernel's bufp > bufendp - len can wrap); ENFORCE_BUFEND on the last
// counted record of a kexec buffer is the caller's (measlist).
func (s *Scanner) Scan(b []byte, index int, off int64, f *Frame) error {
	o := s.opts.Order
	*f = Frame{}
	fail := func(at int, err error) error {
		return &DecodeError{Index: index, Offset: off + int64(at), RecordOffset: off, Err: err}
	}
	short := func(at int, what string, need int) error {
		s.short = ShortError{Index: index, RecordOffset: off, At: off + int64(at), What: what, Need: need, Have: len(b) - at}
		return &s.short
	}
	if len(b) < 4 {
		return short(0, "PCR", 4)
	}
	f.PCR = o.Uint32(b)
	pos := 4
	ds := s.opts.DigestSize
	if len(b)-pos < ds {
		return short(pos, "template digest", ds)
	}
	f.Digest = Span{pos, ds}
	pos += ds
	if len(b)-pos < 4 {
		return short(pos, "template name length", 4)
	}
	nameAt := pos
	nameLen := o.Uint32(b[pos:])
	limit := s.opts.nameLimit()
	if !s.opts.Restore {
		if uint64(nameLen) > uint64(limit) {
			return fail(nameAt, fmt.Errorf("%w: template name length %d exceeds %d", ErrNameTooLong, nameLen, limit))
		}
		if nameLen == 0 {
			return fail(nameAt, fmt.Errorf("%w: empty template name", ErrUnknownTemplate))
		}
	}
	pos += 4
	if uint64(len(b)-pos) < uint64(nameLen) {
		return short(pos, "template name", int(min(nameLen, 1<<31-1)))
	}
	name := b[pos : pos+int(nameLen)]
	pos += int(nameLen)

	if s.opts.Restore {
		// ima_parse_buf() of the header: the template data is framed
		// before the name is looked at.
		if len(b)-pos < 4 {
			return short(pos, "template data length", 4)
		}
		dataAt := pos
		dataLen := o.Uint32(b[pos:])
		pos += 4
		if uint64(len(b)-pos) < uint64(dataLen) {
			return short(pos, "template data", int(min(dataLen, 1<<31-1)))
		}
		f.Data = Span{pos, int(dataLen)}
		f.Len = pos + int(dataLen)
		if len(name) > limit {
			return fail(nameAt, fmt.Errorf("%w: template name length %d exceeds %d", ErrNameTooLong, nameLen, limit))
		}
		desc, err := s.Descriptor(name)
		if err != nil {
			return fail(nameAt+4, err)
		}
		f.Desc = desc
		return s.split(b, f, dataAt, index, off)
	}

	desc, err := s.Descriptor(name)
	if err != nil {
		return fail(nameAt+4, err)
	}
	f.Desc = desc
	if desc.IsIMA() {
		// Legacy layout: d raw (IMA_DIGEST_SIZE), u32 strlen(n), n.
		f.Data.Off = pos
		if len(b)-pos < sha1Size {
			return short(pos, "ima d field", sha1Size)
		}
		f.Fields[0] = Span{pos, sha1Size}
		pos += sha1Size
		if len(b)-pos < 4 {
			return short(pos, "ima n field length", 4)
		}
		nAt := pos
		n := o.Uint32(b[pos:])
		if n > MaxEventNameLen {
			return fail(nAt, fmt.Errorf("%w: ima n field length %d exceeds %d", ErrTemplateData, n, MaxEventNameLen))
		}
		pos += 4
		if len(b)-pos < int(n) {
			return short(pos, "ima n field", int(n))
		}
		if bytes.IndexByte(b[pos:pos+int(n)], 0) >= 0 {
			return fail(pos, fmt.Errorf("%w: ima n field contains NUL", ErrTemplateData))
		}
		f.Fields[1] = Span{pos, int(n)}
		f.NumFields = 2
		f.legacy = true
		pos += int(n)
		f.Data.Len = pos - f.Data.Off
		f.Len = pos
		return nil
	}
	if len(b)-pos < 4 {
		return short(pos, "template data length", 4)
	}
	dataAt := pos
	dataLen := o.Uint32(b[pos:])
	if dl := s.opts.dataLimit(); uint64(dataLen) > uint64(dl) {
		return fail(dataAt, fmt.Errorf("%w: template data length %d exceeds the cap of %d bytes", ErrTemplateData, dataLen, dl))
	}
	pos += 4
	if len(b)-pos < int(dataLen) {
		return short(pos, "template data", int(dataLen))
	}
	f.Data = Span{pos, int(dataLen)}
	f.Len = pos + int(dataLen)
	return s.split(b, f, dataAt, index, off)
}

// split cuts f.Data of the record in b into f.Desc's fields: exactly its
// number of fields, ending exactly at the end of the data.
//
// Mirrors security/integrity/ima/ima_template.c:ima_restore_template_data()
// calling ima_parse_buf() with ENFORCE_FIELDS | ENFORCE_BUFEND.
func (s *Scanner) split(b []byte, f *Frame, dataAt, index int, off int64) error {
	fail := func(at int, err error) error {
		return &DecodeError{Index: index, Offset: off + int64(at), RecordOffset: off, Err: err}
	}
	o := s.opts.Order
	data := f.Data.In(b)
	nf := f.Desc.NumFields()
	p := 0
	for i := 0; i < nf; i++ {
		if len(data)-p < 4 {
			return fail(dataAt+4+p, fmt.Errorf("%w: template data holds %d of the %d fields of %s", ErrTemplateData, i, nf, f.Desc))
		}
		fl := o.Uint32(data[p:])
		p += 4
		if uint64(fl) > uint64(len(data)-p) {
			return fail(dataAt+p, fmt.Errorf("%w: field %d (%s) length %d exceeds the %d bytes left of the template data", ErrTemplateData, i, f.Desc.Field(i), fl, len(data)-p))
		}
		f.Fields[i] = Span{f.Data.Off + p, int(fl)}
		p += int(fl)
	}
	f.NumFields = nf
	if p != len(data) {
		return fail(dataAt+4+p, fmt.Errorf("%w: %d bytes after the %d fields of %s", ErrTemplateData, len(data)-p, nf, f.Desc))
	}
	return nil
}

// Descriptor resolves a record's template name as Scan does: without
// Restore exactly a builtin's name, else a format string; with Restore as
// the kernel's lookup_template_desc() (a builtin's fmt resolves to the
// builtin), never "ima". It wraps ErrUnknownTemplate or
// ErrUnsupportedTemplate.
func (s *Scanner) Descriptor(name []byte) (*Descriptor, error) {
	if s.lastDesc != nil && bytes.Equal(name, s.lastName) {
		return s.lastDesc, nil
	}
	if s.opts.Restore && string(name) == imaName {
		return nil, fmt.Errorf("%w: %q cannot be restored", ErrUnsupportedTemplate, name)
	}
	d := s.descs[string(name)]
	if d == nil {
		if s.opts.Restore {
			d = Lookup(string(name))
		} else {
			d = Builtin(string(name))
		}
		if d == nil {
			var err error
			if d, err = ParseFmt(string(name)); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnknownTemplate, err)
			}
		}
		s.descs[string(name)] = d
	}
	s.lastName, s.lastDesc = append(s.lastName[:0], name...), d
	return d, nil
}
