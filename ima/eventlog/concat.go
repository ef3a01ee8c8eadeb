package eventlog

import (
	"errors"
	"fmt"

	"github.com/imasim/imasim/ima/template"
)

// Kinds of ChunkError (test with errors.Is).
var (
	// ErrTornRecord: a chunk ends inside a record (or line), so the
	// record straddles a chunk boundary.
	ErrTornRecord = errors.New("chunk ends inside a record")
	// ErrMixedFormat: a chunk is a list of another byte order or column
	// width than the others.
	ErrMixedFormat = errors.New("chunk has another byte order or column width")
)

// ChunkError reports a chunk that cannot be part of a concatenation.
type ChunkError struct {
	// Chunk is the index of the chunk.
	Chunk int
	// Records and Offset are where the chunk starts in the concatenation:
	// the number of records and bytes of the chunks before it.
	Records int
	Offset  int64
	// Kind is ErrTornRecord, ErrMixedFormat, or nil for another malformed
	// record.
	Kind error
	// Err is the *template.DecodeError of the chunk, its Index and Offset
	// relative to the chunk.
	Err error
	// Detected, for ErrMixedFormat, is a format under which the chunk
	// parses whole.
	Detected *Options
}

func (e *ChunkError) Error() string {
	s := fmt.Sprintf("chunk %d (starting at record %d, offset %d)", e.Chunk, e.Records, e.Offset)
	switch {
	case e.Kind == ErrMixedFormat && e.Detected != nil:
		return fmt.Sprintf("%s: %v: it parses whole as %s, not as the list's format: %v", s, e.Kind, describe(*e.Detected), e.Err)
	case e.Kind != nil:
		return fmt.Sprintf("%s: %v: %v", s, e.Kind, e.Err)
	}
	return fmt.Sprintf("%s: %v", s, e.Err)
}

func (e *ChunkError) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Err}
}

func describe(o Options) string {
	if o.ASCII {
		return fmt.Sprintf("an ASCII list with a %d-byte column", o.DigestSize)
	}
	return fmt.Sprintf("a %v list with a %d-byte %v column", o.Order, o.DigestSize, o.ColumnAlg)
}

// Concat joins the chunks of a list (the staged chunks user space saved,
// in order, then the kernel's current list) into the list as if staging
// had never happened, checking that every chunk parses whole with opts,
// that none ends inside a record (a torn record at a boundary), and that
// all have opts' byte order and column width (for ASCII lists, the width
// of the first chunk). A failing chunk gives a *ChunkError.
//
// IMA lists have no header, so the result is the chunks' bytes end to
// end, as with go-attestation's attest.AppendEvents for TCG logs. Follows
// the "Remote Attestation Agent Workflow" of
// Documentation/security/IMA-export-delete.rst ([PATCH v7 12/12]).
func Concat(opts Options, chunks ...[]byte) ([]byte, error) {
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	out := make([]byte, 0, total)
	records := 0
	opts.FirstIndex, opts.FirstOffset = 0, 0
	for i, c := range chunks {
		l, err := ParseEventLog(c, opts)
		if err != nil {
			return nil, chunkError(i, records, int64(len(out)), c, opts, err)
		}
		if opts.ASCII && opts.DigestSize == 0 {
			opts.DigestSize = l.f.ds
		}
		records += l.Len()
		out = append(out, c...)
	}
	return out, nil
}

func chunkError(i, records int, off int64, c []byte, opts Options, err error) error {
	ce := &ChunkError{Chunk: i, Records: records, Offset: off, Err: err}
	f, ferr := opts.check()
	if ferr != nil {
		return ce
	}
	if d, derr := DetectFormat(c); derr == nil && len(c) > 0 &&
		(d.ASCII != f.ascii || (!d.ASCII && d.Order != f.order) || (f.ds != 0 && d.DigestSize != f.ds)) {
		ce.Kind, ce.Detected = ErrMixedFormat, &d
		return ce
	}
	var de *template.DecodeError
	if errors.As(err, &de) && errors.Is(err, template.ErrTruncated) {
		ce.Kind = ErrTornRecord
	}
	return ce
}

// DetectFormat returns a format under which data parses whole: ASCII, or
// binary with one of the byte orders and column widths 20, 32, 48, 64
// (little-endian and narrower columns first). An empty list gives the
// zero Options. If no format fits, the error is that of the format under
// which the most records parse.
func DetectFormat(data []byte) (Options, error) {
	if len(data) == 0 {
		return Options{}, nil
	}
	var best error
	bestN := -1
	try := func(o Options) bool {
		_, err := ParseEventLog(data, o)
		if err == nil {
			return true
		}
		n := 0
		var de *template.DecodeError
		if errors.As(err, &de) {
			n = de.Index + 1
		}
		if n > bestN {
			best, bestN = err, n
		}
		return false
	}
	if c := data[0]; c == ' ' || c >= '0' && c <= '9' {
		o := Options{ASCII: true}
		if try(o) {
			l, _ := ParseEventLog(data, o)
			return l.Options(), nil
		}
	}
	for _, order := range []template.Order{template.LittleEndian, template.BigEndian} {
		for _, ds := range []int{20, 32, 48, 64} {
			o := Options{Order: order, DigestSize: ds}
			if try(o) {
				o.ColumnAlg, _ = columnAlgBySize(ds)
				return o, nil
			}
		}
	}
	return Options{}, fmt.Errorf("eventlog: no list format fits: %w", best)
}
