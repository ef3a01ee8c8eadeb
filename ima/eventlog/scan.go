package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// ErrPCRIndex is wrapped by the error of a record whose PCR is not one of
// the 24 PCRs of a TPM bank. evmctl refuses such records too ("Invalid
// PCR").
var ErrPCRIndex = errors.New("PCR index out of range")

// recInfo locates one record's parts in a buffer holding its binary
// encoding. Positions are byte positions in that buffer.
type recInfo struct {
	off  int64 // offset of the record (binary) or of its line (ASCII) in the input
	next int64 // offset just after it in the input
	desc *template.Descriptor
	// start and end delimit the binary record; the column digest starts
	// at start+4.
	start, end int
	// data is where the hash input starts: the template data for every
	// template but "ima", the d field for "ima".
	data int
	// dataLen is the template data's length, or for "ima" the n field's
	// length (n follows d and its u32 length: at data+24).
	dataLen int
	pcr     uint32
	ima     bool
}

// shortError reports a record that needs more bytes than the buffer has;
// at the end of the input it becomes a truncation error.
type shortError struct {
	at         int // position of the incomplete item, relative to the record
	what       string
	need, have int
}

func (*shortError) Error() string { return "short record" }

// truncated turns s into the error the template package gives for the
// same truncation.
func (s *shortError) truncated(index int, recOff int64) error {
	return &template.DecodeError{
		Index:        index,
		Offset:       recOff + int64(s.at),
		RecordOffset: recOff,
		Err:          fmt.Errorf("%w: %s needs %d bytes, %d remain", template.ErrTruncated, s.what, s.need, s.have),
	}
}

// parser reads the binary records of one list.
type parser struct {
	f *format
	// descriptors by template name; lastName/lastDesc short-cut the
	// common case of a list of one template.
	descs    map[string]*template.Descriptor
	lastName []byte
	lastDesc *template.Descriptor
}

func newParser(f *format) *parser {
	return &parser{f: f, descs: map[string]*template.Descriptor{}}
}

func (p *parser) u32(b []byte) uint32 {
	if p.f.order == template.BigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// descriptor resolves a template name as template.DecodeAll does without
// Restore: exactly a builtin's name, else a custom format string.
func (p *parser) descriptor(name []byte) (*template.Descriptor, error) {
	if p.lastDesc != nil && bytes.Equal(name, p.lastName) {
		return p.lastDesc, nil
	}
	d := p.descs[string(name)]
	if d == nil {
		d = template.Builtin(string(name))
		if d == nil {
			var err error
			if d, err = template.ParseFmt(string(name)); err != nil {
				return nil, fmt.Errorf("%w: %v", template.ErrUnknownTemplate, err)
			}
		}
		p.descs[string(name)] = d
	}
	p.lastName = append(p.lastName[:0], name...)
	p.lastDesc = d
	return d, nil
}

// scan reads the record at the start of b, which sits at byte off of the
// input and is record index. It returns the record's parts with positions
// relative to b. A record that b holds only part of gives a *shortError
// (also when b is empty); a malformed one a *template.DecodeError.
//
// It accepts exactly what template.DecodeAll accepts (same checks, same
// messages, same offsets), and in addition refuses a PCR above 23 once the
// record is otherwise complete.
//
// Mirrors the record walk of
// security/integrity/ima/ima_template.c:ima_restore_measurement_list() in
// the stricter form of ima-evm-utils src/evmctl.c:ima_measurement(), as
// template's decoder does; it exists besides that decoder to read records
// in place, without allocating.
func (p *parser) scan(b []byte, index int, off int64) (recInfo, error) {
	var r recInfo
	fail := func(at int, err error) error {
		return &template.DecodeError{Index: index, Offset: off + int64(at), RecordOffset: off, Err: err}
	}
	if len(b) < 4 {
		return r, &shortError{at: 0, what: "PCR", need: 4, have: len(b)}
	}
	ds := p.f.ds
	pos := 4
	if len(b)-pos < ds {
		return r, &shortError{at: pos, what: "template digest", need: ds, have: len(b) - pos}
	}
	pos += ds
	if len(b)-pos < 4 {
		return r, &shortError{at: pos, what: "template name length", need: 4, have: len(b) - pos}
	}
	nameLen := p.u32(b[pos:])
	if uint64(nameLen) > uint64(p.f.nameLimit) {
		return r, fail(pos, fmt.Errorf("%w: template name length %d exceeds %d", template.ErrNameTooLong, nameLen, p.f.nameLimit))
	}
	if nameLen == 0 {
		return r, fail(pos, fmt.Errorf("%w: empty template name", template.ErrUnknownTemplate))
	}
	pos += 4
	nameAt := pos
	if len(b)-pos < int(nameLen) {
		return r, &shortError{at: pos, what: "template name", need: int(nameLen), have: len(b) - pos}
	}
	name := b[pos : pos+int(nameLen)]
	pos += int(nameLen)
	desc, err := p.descriptor(name)
	if err != nil {
		return r, fail(nameAt, err)
	}
	r.desc = desc

	if desc.IsIMA() {
		// Legacy layout: d raw (IMA_DIGEST_SIZE), u32 strlen(n), n.
		if len(b)-pos < 20 {
			return r, &shortError{at: pos, what: "ima d field", need: 20, have: len(b) - pos}
		}
		r.data = pos
		pos += 20
		if len(b)-pos < 4 {
			return r, &shortError{at: pos, what: "ima n field length", need: 4, have: len(b) - pos}
		}
		n := p.u32(b[pos:])
		if uint64(n) > template.MaxEventNameLen {
			return r, fail(pos, fmt.Errorf("%w: ima n field length %d exceeds %d", template.ErrTemplateData, n, template.MaxEventNameLen))
		}
		pos += 4
		if len(b)-pos < int(n) {
			return r, &shortError{at: pos, what: "ima n field", need: int(n), have: len(b) - pos}
		}
		if bytes.IndexByte(b[pos:pos+int(n)], 0) >= 0 {
			return r, fail(pos, fmt.Errorf("%w: ima n field contains NUL", template.ErrTemplateData))
		}
		pos += int(n)
		r.dataLen = int(n)
		r.ima = true
	} else {
		if len(b)-pos < 4 {
			return r, &shortError{at: pos, what: "template data length", need: 4, have: len(b) - pos}
		}
		dataLen := p.u32(b[pos:])
		if uint64(dataLen) > math.MaxInt32 {
			return r, fail(pos, fmt.Errorf("%w: template data length %d exceeds %d", template.ErrTemplateData, dataLen, math.MaxInt32))
		}
		pos += 4
		if len(b)-pos < int(dataLen) {
			return r, &shortError{at: pos, what: "template data", need: int(dataLen), have: len(b) - pos}
		}
		data := b[pos : pos+int(dataLen)]
		nf := desc.NumFields()
		o := 0
		for i := 0; i < nf; i++ {
			if len(data)-o < 4 {
				return r, fail(pos+o, fmt.Errorf("%w: template data holds %d of the %d fields of %s", template.ErrTemplateData, i, nf, desc))
			}
			fl := p.u32(data[o:])
			o += 4
			if uint64(fl) > uint64(len(data)-o) {
				return r, fail(pos+o-4, fmt.Errorf("%w: field %d (%s) length %d exceeds the %d bytes left of the template data", template.ErrTemplateData, i, desc.Field(i), fl, len(data)-o))
			}
			o += int(fl)
		}
		if o != len(data) {
			return r, fail(pos+o, fmt.Errorf("%w: %d bytes after the %d fields of %s", template.ErrTemplateData, len(data)-o, nf, desc))
		}
		r.data = pos
		r.dataLen = len(data)
		pos += len(data)
	}
	r.pcr = p.u32(b)
	if r.pcr >= tpmext.NumPCRs {
		return r, fail(0, fmt.Errorf("%w: PCR %d (a bank has PCRs 0-%d)", ErrPCRIndex, r.pcr, tpmext.NumPCRs-1))
	}
	r.end = pos
	r.off = off
	r.next = off + int64(pos)
	return r, nil
}

// hashInput returns the bytes the template digest of the record at r in
// buf is computed over: the template data, or for "ima" the d field and
// the n field zero-padded to 256 bytes (built in scratch).
//
// Mirrors security/integrity/ima/ima_crypto.c:ima_calc_field_array_hash_tfm().
func hashInput(buf []byte, r *recInfo, scratch *[imaHashInputLen]byte) []byte {
	if !r.ima {
		return buf[r.data : r.data+r.dataLen]
	}
	copy(scratch[:20], buf[r.data:r.data+20])
	n := copy(scratch[20:], buf[r.data+24:r.data+24+r.dataLen])
	clear(scratch[20+n:])
	return scratch[:]
}

// imaHashInputLen is the "ima" template's hash input: the 20-byte d field
// and IMA_EVENT_NAME_LEN_MAX + 1 bytes of name.
const imaHashInputLen = 20 + template.MaxEventNameLen + 1

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
