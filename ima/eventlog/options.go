package eventlog

import (
	"errors"
	"fmt"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// Options says how to read a measurement list.
//
// The zero value reads the legacy binary list (binary_runtime_measurements,
// or binary_runtime_measurements_sha1): little-endian, a 20-byte SHA-1
// template-digest column.
type Options struct {
	// ASCII reads ascii_runtime_measurements lines instead of binary
	// records. Each line's template data is rebuilt from its rendered
	// fields (see the package doc).
	ASCII bool
	// Order is the byte order of the list's integers: the record's PCR and
	// lengths and the field length prefixes hashed into the template
	// digest. For ASCII lists it is the order the template data is rebuilt
	// in (the ASCII lines do not show it).
	Order template.Order
	// DigestSize is the width of the template-digest column: 20 (the
	// legacy and *_sha1 files), 32 (*_sha256, *_sm3), 48 (*_sha384) or 64
	// (*_sha512). Zero means ColumnAlg's size, else 20 for binary lists,
	// else (ASCII) the width of the first line's digest.
	DigestSize int
	// ColumnAlg is the algorithm of the template-digest column, in which
	// each record's digest is checked against its template data. Zero
	// means by width: SHA-1 for 20 bytes, SHA-256 for 32, SHA-384 for 48,
	// SHA-512 for 64. Name SM3_256 for a *_sm3 list. An algorithm the
	// kernel does not map (the SHA-3 banks) holds the padded SHA-1 digest,
	// as the kernel's tpm_alg_<id> files do.
	ColumnAlg tpmext.Algorithm
	// MaxNameLen is the longest template name accepted; 0 means
	// template.MaxNameLenEvmctl (255).
	MaxNameLen int
	// MaxDataLen is the largest template data a record may have; 0 means
	// template.MaxTemplateDataLen (16 MiB; see there why). It also bounds
	// an ASCII line, to MaxLineLen(MaxDataLen). No reader holds more than
	// one record or line of this size at a time.
	MaxDataLen int
	// FirstIndex and FirstOffset number the first record of the input:
	// set them when the input is the tail of a list (the records from
	// FirstIndex on, starting at byte FirstOffset of the whole list), so
	// that errors and states use the list's absolute numbering.
	FirstIndex  int
	FirstOffset int64
}

// format is a checked Options.
type format struct {
	ascii      bool
	order      template.Order
	ds         int // 0 until an ASCII list's first line sets it
	col        tpmext.Algorithm
	nameLimit  int
	dataLimit  int
	firstIndex int
	firstOff   int64
}

// ErrOptions is wrapped by the errors of invalid Options.
var ErrOptions = errors.New("eventlog: invalid options")

// columnAlgBySize is the column algorithm a width implies.
func columnAlgBySize(size int) (tpmext.Algorithm, bool) {
	switch size {
	case 20:
		return tpmext.SHA1, true
	case 32:
		return tpmext.SHA256, true
	case 48:
		return tpmext.SHA384, true
	case 64:
		return tpmext.SHA512, true
	}
	return 0, false
}

func (o Options) check() (*format, error) {
	f := &format{
		ascii:      o.ASCII,
		order:      o.Order,
		ds:         o.DigestSize,
		col:        o.ColumnAlg,
		nameLimit:  o.MaxNameLen,
		dataLimit:  o.MaxDataLen,
		firstIndex: o.FirstIndex,
		firstOff:   o.FirstOffset,
	}
	if f.order != template.LittleEndian && f.order != template.BigEndian {
		return nil, fmt.Errorf("%w: byte order %d", ErrOptions, f.order)
	}
	if f.nameLimit < 0 {
		return nil, fmt.Errorf("%w: negative name limit %d", ErrOptions, f.nameLimit)
	}
	if f.nameLimit == 0 {
		f.nameLimit = template.MaxNameLenEvmctl
	}
	if f.dataLimit < 0 {
		return nil, fmt.Errorf("%w: negative data limit %d", ErrOptions, f.dataLimit)
	}
	if f.dataLimit == 0 {
		f.dataLimit = template.MaxTemplateDataLen
	}
	if f.firstIndex < 0 || f.firstOff < 0 {
		return nil, fmt.Errorf("%w: negative first index %d or offset %d", ErrOptions, f.firstIndex, f.firstOff)
	}
	if f.col != 0 && !f.col.Known() {
		return nil, fmt.Errorf("%w: unknown column algorithm %v", ErrOptions, f.col)
	}
	if f.ds == 0 && f.col != 0 {
		f.ds = f.col.Size()
	}
	if f.ds == 0 && !f.ascii {
		f.ds = 20
	}
	if f.ds != 0 {
		if err := f.setDigestSize(f.ds); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// setDigestSize fixes the column width (and the column algorithm when it
// was not given).
func (f *format) setDigestSize(ds int) error {
	if f.col == 0 {
		a, ok := columnAlgBySize(ds)
		if !ok {
			return fmt.Errorf("%w: a %d-byte template-digest column needs ColumnAlg (widths 20, 32, 48 and 64 imply one)", ErrOptions, ds)
		}
		f.col = a
	}
	if f.col.Size() != ds {
		return fmt.Errorf("%w: column algorithm %v has %d-byte digests, the column is %d bytes", ErrOptions, f.col, f.col.Size(), ds)
	}
	f.ds = ds
	return nil
}

// decodeOptions returns the template package's options for this format's
// binary records.
func (f *format) decodeOptions() template.DecodeOptions {
	return template.DecodeOptions{Order: f.order, DigestSize: f.ds, Alg: f.col, MaxNameLen: f.nameLimit, MaxDataLen: f.dataLimit}
}

// MaxLineLen returns the longest ascii_runtime_measurements line (without
// its newline) accepted for records of at most maxDataLen bytes of template
// data (0: template.MaxTemplateDataLen): the hex of that much data, which
// no field's rendering exceeds, and 1024 bytes for the PCR, the digest, the
// template name and the separators (at most 11+1+128+1+255+15).
//
// No kernel counterpart: the kernel's seq_file grows its buffer to any
// line; this bounds what a reader holds for one line.
func MaxLineLen(maxDataLen int) int {
	if maxDataLen <= 0 {
		maxDataLen = template.MaxTemplateDataLen
	}
	return 2*maxDataLen + 1024
}

// errLineTooLong is the error of a line over the cap: line index at byte
// off of the text, of which more than limit bytes came without a newline.
func errLineTooLong(index int, off int64, firstIndex, limit int) error {
	return &template.DecodeError{Index: index, Offset: off + int64(limit), RecordOffset: off,
		Err: fmt.Errorf("%w: line %d is longer than %d bytes (MaxLineLen for MaxDataLen)", ErrASCII, index-firstIndex+1, limit)}
}

// Options returns the options that read the binary encoding of this list
// (the list itself for binary input, the rebuilt records for ASCII input).
func (f *format) binaryOptions() Options {
	return Options{Order: f.order, DigestSize: f.ds, ColumnAlg: f.col, MaxNameLen: f.nameLimit, MaxDataLen: f.dataLimit}
}
