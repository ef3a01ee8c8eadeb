package measlist

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"syscall"

	"github.com/imasim/imasim/ima/template"
)

// KexecOptions are the kernel settings that size the kexec segment.
type KexecOptions struct {
	// ExtraMemoryKB is CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB; 0 or less means
	// half a page.
	ExtraMemoryKB int
	// PageSize is PAGE_SIZE; 0 means 4096.
	PageSize uint64
	// TotalRAM is the machine's RAM in bytes (totalram_pages() *
	// PAGE_SIZE); a segment over half of it is refused. 0 means 24 GiB.
	TotalRAM uint64
}

func (o KexecOptions) pageSize() uint64 { return PageSizeOr(o.PageSize) }

// ErrKexecTooLarge is returned by KexecSegmentSize when the kernel would
// log "Binary measurement list too large." and carry nothing over.
var ErrKexecTooLarge = errors.New("measlist: binary measurement list too large for a kexec segment")

// KexecSegmentSize returns the size of the kexec segment the kernel
// reserves at kexec_file_load: the serialized sizes of the current and the
// staged lists (each with its header, so the header is counted twice, spec
// Q9), plus the extra memory, rounded up to a page.
//
// Mirrors security/integrity/ima/ima_kexec.c:ima_add_kexec_buffer()
// ([PATCH v7 09/12]).
//
// Errors: ErrKexecTooLarge when the size saturates (always so without
// CONFIG_IMA_KEXEC, whose sizes are not tracked) or exceeds half of RAM.
// The size is returned with the error all the same (NotTracked when it
// saturated), because the kernel has already stored it in
// kexec_segment_size, which the kexec_execute record reports.
func (q *Queue) KexecSegmentSize(opts KexecOptions) (uint64, error) {
	page := opts.pageSize()
	extra := uint64(page / 2)
	if opts.ExtraMemoryKB > 0 {
		extra = uint64(opts.ExtraMemoryKB) * 1024
	}
	ram := opts.TotalRAM
	if ram == 0 {
		ram = 24 << 30
	}
	size := satAdd(satAdd(q.BinaryRuntimeSize(Binary), q.BinaryRuntimeSize(BinaryStaged)), extra)
	if size >= math.MaxUint64-page {
		return NotTracked, ErrKexecTooLarge
	}
	seg := (size + page - 1) / page * page
	if seg/page > ram/page/2 {
		return seg, ErrKexecTooLarge
	}
	return seg, nil
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// KexecEventCounts returns what the ima_kexec critical-data records report:
// ima_get_binary_runtime_size(BINARY_FULL) and ima_num_records[BINARY_FULL].
//
// Mirrors the reads of security/integrity/ima/ima_kexec.c:
// ima_measure_kexec_event() ([PATCH v7 09/12]).
func (q *Queue) KexecEventCounts() (size uint64, count int64) {
	return q.BinaryRuntimeSize(BinaryFull), q.NumRecords(BinaryFull)
}

// seqBuf is the kexec seq_file buffer: a fixed size, filled byte by byte
// as ima_putc() does with seq_putc(), which drops what does not fit.
type seqBuf struct {
	buf   []byte
	count int
}

func (s *seqBuf) write(p []byte) { s.count += copy(s.buf[s.count:], p) }

// DumpKexec serializes the staged records, then the current ones, into a
// segment of segmentSize bytes: a 24-byte header (version 1, buffer size,
// record count) and the binary records with the SHA-1 digest column. It
// returns the bytes the kernel copies to the next kernel (the header and
// everything written) and syscall.EINVAL if the segment filled up first.
//
// Mirrors security/integrity/ima/ima_kexec.c:ima_dump_measurement_list()
// and ima_dump_measurement() ([PATCH v7 08/12, 09/12]), writing each record
// as ima_measurements_show() does, byte by byte with ima_putc().
//
// As in the kernel, a record that does not fit is counted in the header and
// written up to the end of the segment (the header's buffer_size is then the
// whole segment), and the next record stops the dump with EINVAL; a record
// that fills the segment exactly is whole, and the next one stops the dump.
// If the staged walk fails the current list is skipped.
//
// Differences from Linux: the kernel walks without locks, relying on the
// suspension that precedes the dump; the model walks inside an RCU
// read-side section, so it is also safe without suspension.
func (q *Queue) DumpKexec(segmentSize uint64) ([]byte, error) {
	if segmentSize < KexecHeaderSize {
		return nil, fmt.Errorf("measlist: kexec segment of %d bytes cannot hold the header", segmentSize)
	}
	s := &seqBuf{buf: make([]byte, segmentSize), count: KexecHeaderSize}
	var count uint64
	var err error
	var rec []byte
	dump := func(_ int, e *template.Entry) bool {
		if s.count >= len(s.buf) {
			err = syscall.EINVAL
			return false
		}
		count++
		rec, err = q.showBinarySHA1(rec[:0], e, s)
		return err == nil
	}
	q.Walk(Staged, 0, dump)
	if err == nil {
		q.Walk(Current, 0, dump)
	}
	o := q.layout.Order()
	hdr := make([]byte, 0, KexecHeaderSize)
	hdr = o.AppendUint16(hdr, 1) // version
	hdr = append(hdr, 0, 0, 0, 0, 0, 0)
	hdr = o.AppendUint64(hdr, uint64(s.count))
	hdr = o.AppendUint64(hdr, count)
	copy(s.buf, hdr)
	return s.buf[:s.count], err
}

// showBinarySHA1 writes e's binary record with its SHA-1 digest into s, as
// ima_measurements_show() does for a seq_file without a file. rec is
// scratch space.
func (q *Queue) showBinarySHA1(rec []byte, e *template.Entry, s *seqBuf) ([]byte, error) {
	rec, err := e.AppendBinary(rec, q.layout.SHA1Index(), q.layout.Order())
	if err == nil {
		s.write(rec)
	}
	return rec, err
}

// RestoreResult reports what RestoreKexec did.
type RestoreResult struct {
	// Restored is the number of records appended.
	Restored int
	// Stopped is set when the restore stopped early without an error, as
	// the kernel does when a template name is neither a builtin nor a
	// valid format (restore_template_fmt() fails and the loop breaks with
	// the previous, successful return value).
	Stopped error
}

// RestoreKexec appends the records of a kexec dump to the current list,
// without hash-table insertion and without extending the TPM. Records
// restored before an error stay restored, as in the kernel.
//
// Mirrors security/integrity/ima/ima_template.c:ima_restore_measurement_list()
// and ima_restore_template_data().
//
// Rules, as the kernel's: a buffer shorter than the header restores nothing
// and is no error; version != 1 and count > ULONG_MAX-1 are EINVAL; records
// are read while bytes remain before buffer_size and fewer than count have
// been read; only the last counted record must end exactly at buffer_size;
// a template name of 69 bytes or more, the "ima" template, a malformed
// header or template data that does not split into the template's fields
// are EINVAL; a dumped digest of zero makes a violation record, any other
// is ignored and the digests are recomputed for this kernel's slots.
//
// Differences from Linux: a buffer_size larger than buf is refused with
// EINVAL instead of reading past the buffer.
func (q *Queue) RestoreKexec(buf []byte) (RestoreResult, error) {
	var res RestoreResult
	if len(buf) < KexecHeaderSize {
		return res, nil
	}
	o := q.layout.Order()
	if v := o.Uint16(buf); v != 1 {
		return res, fmt.Errorf("measlist: kexec buffer version %d: %w", v, syscall.EINVAL)
	}
	size := o.Uint64(buf[8:])
	count := o.Uint64(buf[16:])
	if count > math.MaxUint64-1 {
		return res, fmt.Errorf("measlist: kexec buffer claims %d records: %w", count, syscall.EINVAL)
	}
	if size > uint64(len(buf)) {
		return res, fmt.Errorf("measlist: kexec buffer_size %d exceeds the %d-byte buffer: %w", size, len(buf), syscall.EINVAL)
	}
	if size < KexecHeaderSize {
		return res, nil // bufp < bufendp fails at once
	}
	sc, err := template.NewScanner(template.DecodeOptions{Order: o, DigestSize: 20, Restore: true})
	if err != nil {
		return res, err
	}
	var f template.Frame
	body := buf[KexecHeaderSize:size]
	for pos, read := 0, uint64(0); pos < len(body) && read < count; pos += f.Len {
		read++
		index := int(read - 1)
		err := sc.Scan(body[pos:], index, KexecHeaderSize+int64(pos), &f)
		var short *template.ShortError
		switch {
		case errors.As(err, &short):
			return res, fmt.Errorf("measlist: restoring kexec record: %v: %w", short.Truncated(), syscall.EINVAL)
		case err != nil && !errors.Is(err, template.ErrUnknownTemplate):
			return res, fmt.Errorf("measlist: restoring kexec record: %v: %w", err, syscall.EINVAL)
		case read == count && f.Len != len(body)-pos:
			// ENFORCE_BUFEND on the header of the last counted record,
			// before its name is looked at.
			return res, fmt.Errorf("measlist: kexec record %d ends at offset %d, buffer_size is %d: %w",
				index, KexecHeaderSize+pos+f.Len, size, syscall.EINVAL)
		case err != nil:
			// restore_template_fmt() failed: the loop breaks with the
			// previous, successful return value.
			res.Stopped = err
			return res, nil
		}
		rec := f.Entry(bytes.Clone(body[pos:pos+f.Len]), 0)
		e, err := q.layout.RestoreEntry(rec)
		if err != nil {
			return res, fmt.Errorf("measlist: restoring kexec record %d: %v: %w", index, err, syscall.EINVAL)
		}
		q.RestoreEntry(e)
		res.Restored++
	}
	return res, nil
}
