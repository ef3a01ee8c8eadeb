package eventlog

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// Errors of ASCII lists, wrapped in a *template.DecodeError whose Index is
// the line's index and whose Offset is a byte offset in the text.
var (
	// ErrASCII: a line that is not "PCR digest name fields...".
	ErrASCII = errors.New("malformed ASCII measurement line")
	// ErrNotRebuildable: a line whose template data cannot be rebuilt
	// exactly from its rendered fields (the rebuilt record would render
	// differently).
	ErrNotRebuildable = errors.New("template data cannot be rebuilt from the ASCII line")
)

// asciiParser rebuilds the binary record of an ascii_runtime_measurements
// line. It reuses its buffers from line to line.
type asciiParser struct {
	f       *format
	p       *parser
	digest  [template.MaxDigestSize]byte
	digests [1]tpmext.Digest
	fields  [][]byte
	scanned [][]byte // the fields of the scanned record
	ends    []int
	cols    []int // the column of each field
	fbuf    []byte
	render  []byte
	entry   template.Entry
}

func newASCIIParser(f *format) *asciiParser {
	return &asciiParser{f: f, p: newParser(f)}
}

// line rebuilds line (without its newline), the line index at byte off of
// the text, as a binary record appended to dst. The returned positions are
// in the returned slice; next is set from the line's length.
//
// It inverts security/integrity/ima/ima_fs.c:ima_ascii_measurements_show()
// and ima_template_lib.c:ima_show_template_data_ascii() field by field:
//
//   - d, sig, buf, modsig, evmsig, xattrlengths, xattrvalues: hex;
//   - d-ng, d-ngv2, d-modsig: "<prefix>:" and hex become "<prefix>:" NUL
//     and the bytes (a field without ':' is read as hex, and then refused
//     by the length check below, as the kernel never writes one);
//   - n, n-ng: the text and a NUL; xattrnames the same unless empty;
//   - iuid, igid: decimal as a u32, imode as a u16, in the list's order
//     (ima_eventinodeuid_init() and ima_eventinodemode_init()).
//
// The fields must have lengths the kernel's init functions give them
// (template.CheckFieldLengths: the "ima" template's d is exactly 20 bytes,
// its n at most 255 characters, and so on). The rebuilt record is then
// scanned as a binary record, and the record scanned (the one that is
// hashed and verified) must be all of the rebuilt bytes and render with
// template.Entry.AppendASCII to the line byte for byte; otherwise the line
// is refused with ErrNotRebuildable, naming the line and column. This is how Keylime's verifier rebuilds records
// (keylime/ima/ast.py), extended to every template the kernel has.
func (a *asciiParser) line(dst, line []byte, index int, off int64) ([]byte, recInfo, error) {
	fail := func(col int, err error) ([]byte, recInfo, error) {
		return dst, recInfo{}, &template.DecodeError{Index: index, Offset: off + int64(col), RecordOffset: off, Err: err}
	}
	if len(line) == 0 {
		return fail(0, fmt.Errorf("%w: empty line", ErrASCII))
	}
	// "%2d " PCR.
	i := 0
	if line[0] == ' ' {
		i = 1
	}
	j := i
	for j < len(line) && j-i < 10 && line[j] >= '0' && line[j] <= '9' {
		j++
	}
	if j == i || j >= len(line) || line[j] != ' ' {
		return fail(i, fmt.Errorf("%w: no PCR number at the start of the line", ErrASCII))
	}
	pcr, err := strconv.ParseUint(string(line[i:j]), 10, 32)
	if err != nil {
		return fail(i, fmt.Errorf("%w: PCR %q: %v", ErrASCII, line[i:j], err))
	}
	i = j + 1

	// Template digest in hex.
	j = bytes.IndexByte(line[i:], ' ')
	if j < 0 {
		return fail(i, fmt.Errorf("%w: no template name after the template digest", ErrASCII))
	}
	hd := line[i : i+j]
	if a.f.ds == 0 {
		if len(hd)%2 != 0 || len(hd) == 0 || len(hd) > 2*template.MaxDigestSize {
			return fail(i, fmt.Errorf("%w: template digest of %d hex digits", ErrASCII, len(hd)))
		}
		if err := a.f.setDigestSize(len(hd) / 2); err != nil {
			return fail(i, fmt.Errorf("%w: %v", ErrASCII, err))
		}
	}
	ds := a.f.ds
	if len(hd) != 2*ds {
		return fail(i, fmt.Errorf("%w: template digest of %d hex digits, the list's column has %d", ErrASCII, len(hd), 2*ds))
	}
	if _, err := hex.Decode(a.digest[:ds], hd); err != nil {
		return fail(i, fmt.Errorf("%w: template digest: %v", ErrASCII, err))
	}
	i += j + 1

	// Template name.
	j = bytes.IndexByte(line[i:], ' ')
	if j < 0 {
		j = len(line) - i
	}
	desc, err := a.p.descriptor(line[i : i+j])
	if err != nil {
		return fail(i, err)
	}
	i += j

	// Fields, each after one space.
	nf := desc.NumFields()
	a.fbuf = a.fbuf[:0]
	a.ends = a.ends[:0]
	a.cols = a.cols[:0]
	for k := 0; k < nf; k++ {
		if i >= len(line) || line[i] != ' ' {
			return fail(i, fmt.Errorf("%w: the line has %d fields, template %s has %d", ErrNotRebuildable, k, desc, nf))
		}
		i++
		j = bytes.IndexByte(line[i:], ' ')
		if j < 0 {
			j = len(line) - i
		}
		if err := a.field(desc.Field(k), line[i:i+j]); err != nil {
			return fail(i, fmt.Errorf("field %d (%s): %w", k, desc.Field(k), err))
		}
		a.ends = append(a.ends, len(a.fbuf))
		a.cols = append(a.cols, i)
		i += j
	}
	if i != len(line) {
		return fail(i, fmt.Errorf("%w: the line has more than the %d fields of template %s", ErrNotRebuildable, nf, desc))
	}
	a.fields = a.fields[:0]
	start := 0
	for _, end := range a.ends {
		a.fields = append(a.fields, a.fbuf[start:end:end])
		start = end
	}
	// notRebuildable names the line and column, counted from 1.
	notRebuildable := func(col int, err error) ([]byte, recInfo, error) {
		return fail(col, fmt.Errorf("%w: line %d, column %d: %w", ErrNotRebuildable, index-a.f.firstIndex+1, col+1, err))
	}
	if k, err := template.CheckFieldLengths(desc, a.fields); err != nil {
		return notRebuildable(a.cols[k], err)
	}

	e := &a.entry
	a.digests[0] = tpmext.Digest{Alg: a.f.col, Value: a.digest[:ds]}
	*e = template.Entry{PCR: uint32(pcr), Desc: desc, Fields: a.fields, Digests: a.digests[:]}
	recStart := len(dst)
	dst, err = e.AppendBinary(dst, 0, a.f.order)
	if err != nil {
		return fail(0, fmt.Errorf("%w: %v", ErrNotRebuildable, err))
	}
	rec := dst[recStart:]
	r, err := a.p.scan(rec, index, off)
	if err != nil {
		// Only limits the binary form has (name length, the ima n
		// field, the PCR range) can fail here; report them at the line.
		var de *template.DecodeError
		if errors.As(err, &de) {
			de.Offset, de.RecordOffset = off, off
			return dst[:recStart], recInfo{}, de
		}
		return fail(0, fmt.Errorf("%w: %v", ErrNotRebuildable, err))
	}
	// The record that is verified is the one scanned: it must be all of
	// the rebuilt bytes and render back to the line byte for byte.
	if r.end != len(rec) {
		return notRebuildable(0, fmt.Errorf("the rebuilt record of %d bytes scans as one of %d", len(rec), r.end))
	}
	if col := a.renderScanned(rec, line); col >= 0 {
		return notRebuildable(col, errors.New("the scanned record renders differently from here on"))
	}
	r.start += recStart
	r.end += recStart
	r.data += recStart
	r.off = off
	r.next = off + int64(len(line)) + 1
	return dst, r, nil
}

// renderScanned renders the record just scanned (rec, framed in a.p.f) as
// an ASCII line and returns the first column where it differs from line,
// or -1 if it is line byte for byte.
func (a *asciiParser) renderScanned(rec, line []byte) int {
	f := &a.p.f
	a.scanned = a.scanned[:0]
	for _, s := range f.Fields[:f.NumFields] {
		a.scanned = append(a.scanned, s.In(rec)) // the ima n without NUL renders the same
	}
	a.digests[0].Value = f.Digest.In(rec)
	e := &a.entry
	*e = template.Entry{PCR: f.PCR, Desc: f.Desc, Fields: a.scanned, Digests: a.digests[:]}
	var err error
	a.render, err = e.AppendASCII(a.render[:0], 0, a.f.order)
	if err == nil && len(a.render) == len(line)+1 && bytes.Equal(a.render[:len(line)], line) {
		return -1
	}
	col := 0
	for col < len(line) && col < len(a.render) && line[col] == a.render[col] {
		col++
	}
	return col
}

// field appends the stored bytes of field f rendered as tok: the inverse
// of security/integrity/ima/ima_template_lib.c:ima_show_template_data_ascii()
// for the bytes the field's init function stores (ima_eventname_init()
// appends a NUL to names; ima_eventinodeuid_init() stores a u32 uid/gid,
// ima_eventinodemode_init() a u16 mode).
func (a *asciiParser) field(f template.FieldID, tok []byte) error {
	var err error
	switch f {
	case template.FieldN, template.FieldNNG:
		a.fbuf = append(append(a.fbuf, tok...), 0)
	case template.FieldXattrNames:
		if len(tok) > 0 {
			a.fbuf = append(append(a.fbuf, tok...), 0)
		}
	case template.FieldDNG, template.FieldDNGv2, template.FieldDModsig:
		colon := bytes.LastIndexByte(tok, ':')
		if colon < 0 {
			a.fbuf, err = appendHex(a.fbuf, tok)
			break
		}
		a.fbuf = append(append(a.fbuf, tok[:colon+1]...), 0)
		a.fbuf, err = appendHex(a.fbuf, tok[colon+1:])
	case template.FieldIUID, template.FieldIGID, template.FieldIMode:
		if len(tok) == 0 {
			break
		}
		bits := 32
		if f == template.FieldIMode {
			bits = 16
		}
		var v uint64
		if v, err = strconv.ParseUint(string(tok), 10, bits); err != nil {
			return fmt.Errorf("%w: %v", ErrASCII, err)
		}
		if bits == 16 {
			a.fbuf = a.f.order.AppendUint16(a.fbuf, uint16(v))
		} else {
			a.fbuf = a.f.order.AppendUint32(a.fbuf, uint32(v))
		}
	default: // d, sig, buf, modsig, evmsig, xattrlengths, xattrvalues
		a.fbuf, err = appendHex(a.fbuf, tok)
	}
	return err
}

func appendHex(dst, h []byte) ([]byte, error) {
	if len(h)%2 != 0 {
		return dst, fmt.Errorf("%w: odd number of hex digits", ErrASCII)
	}
	n := len(dst)
	dst = append(dst, make([]byte, len(h)/2)...)
	if _, err := hex.Decode(dst[n:], h); err != nil {
		return dst[:n], fmt.Errorf("%w: %v", ErrASCII, err)
	}
	return dst, nil
}

// asciiSource reads ASCII lines from an io.Reader and hands out their
// rebuilt binary records.
type asciiSource struct {
	br    *bufio.Reader
	a     *asciiParser
	long  []byte // a line longer than br's buffer
	index int
	off   int64
	err   error
}

func newASCIISource(r io.Reader, f *format) *asciiSource {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 16<<10)
	}
	return &asciiSource{br: br, a: newASCIIParser(f), index: f.firstIndex, off: f.firstOff}
}

// readLine returns the next line with its newline (without one at the end
// of the input), valid until the next call. A line longer than
// MaxLineLen is an error, found without holding more than that.
func (s *asciiSource) readLine() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	limit := MaxLineLen(s.a.f.dataLimit)
	s.long = append(s.long[:0], line...)
	for err == bufio.ErrBufferFull {
		if len(s.long) > limit {
			return nil, errLineTooLong(s.index, s.off, s.a.f.firstIndex, limit)
		}
		line, err = s.br.ReadSlice('\n')
		s.long = append(s.long, line...)
	}
	if len(s.long) > limit+1 {
		return nil, errLineTooLong(s.index, s.off, s.a.f.firstIndex, limit)
	}
	return s.long, err
}

func (s *asciiSource) fill(b *batch) error {
	b.reset()
	if s.err != nil {
		return s.err
	}
	if cap(s.long) > maxKeptBuf {
		s.long = nil
	}
	b.first = s.index
	for len(b.recs) < batchRecords && len(b.buf) < batchBytes {
		line, err := s.readLine()
		var de *template.DecodeError
		if errors.As(err, &de) {
			s.err = err
			break
		}
		if err != nil {
			switch {
			case err == io.EOF && len(line) == 0:
				s.err = io.EOF
			case err == io.EOF:
				s.err = &template.DecodeError{Index: s.index, Offset: s.off + int64(len(line)), RecordOffset: s.off,
					Err: fmt.Errorf("%w: the last line has no newline", template.ErrTruncated)}
			default:
				s.err = &template.DecodeError{Index: s.index, Offset: s.off + int64(len(line)), RecordOffset: s.off,
					Err: fmt.Errorf("reading the list: %w", err)}
			}
			break
		}
		var r recInfo
		b.buf, r, err = s.a.line(b.buf, line[:len(line)-1], s.index, s.off)
		if err != nil {
			s.err = err
			break
		}
		b.recs = append(b.recs, r)
		s.index++
		s.off = r.next
	}
	b.own = b.recs[:0]
	if len(b.recs) > 0 && s.err == io.EOF {
		return nil
	}
	return s.err
}
