package eventlog

import (
	"errors"
	"fmt"

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

// parser reads the binary records of one list with the template
// package's scanner, the one parser of the binary record format.
type parser struct {
	fm *format
	s  *template.Scanner // for a column of ds bytes
	ds int
	f  template.Frame
}

func newParser(f *format) *parser { return &parser{fm: f} }

// scanner returns the scanner for the list's column width, which an ASCII
// list's first line sets (until then, one that only resolves names).
func (p *parser) scanner() *template.Scanner {
	if p.s == nil || p.ds != p.fm.ds {
		o := p.fm.decodeOptions()
		if o.DigestSize == 0 {
			o.DigestSize = template.MaxDigestSize
		}
		// Options.check and format.setDigestSize validated every
		// option, so NewScanner cannot fail.
		p.s, _ = template.NewScanner(o)
		p.ds = p.fm.ds
	}
	return p.s
}

// descriptor resolves a template name as template.DecodeAll does without
// Restore: exactly a builtin's name, else a custom format string.
func (p *parser) descriptor(name []byte) (*template.Descriptor, error) {
	return p.scanner().Descriptor(name)
}

// scan reads the record at the start of b, which sits at byte off of the
// input and is record index. It returns the record's parts with positions
// relative to b. A record that b holds only part of gives a
// *template.ShortError (also when b is empty); a malformed one a
// *template.DecodeError.
//
// It accepts exactly what template.DecodeAll accepts (it is the same
// scanner), and in addition refuses a PCR above 23 once the record is
// otherwise complete, as ima-evm-utils src/evmctl.c:ima_measurement() does.
func (p *parser) scan(b []byte, index int, off int64) (recInfo, error) {
	f := &p.f
	if err := p.scanner().Scan(b, index, off, f); err != nil {
		return recInfo{}, err
	}
	if f.PCR >= tpmext.NumPCRs {
		return recInfo{}, &template.DecodeError{Index: index, Offset: off, RecordOffset: off,
			Err: fmt.Errorf("%w: PCR %d (a bank has PCRs 0-%d)", ErrPCRIndex, f.PCR, tpmext.NumPCRs-1)}
	}
	r := recInfo{off: off, next: off + int64(f.Len), desc: f.Desc, end: f.Len, pcr: f.PCR,
		data: f.Data.Off, dataLen: f.Data.Len, ima: f.IMA()}
	if r.ima {
		r.data, r.dataLen = f.Fields[0].Off, f.Fields[1].Len
	}
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
