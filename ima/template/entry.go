package template

import (
	"errors"
	"fmt"
	"sync"

	"github.com/imasim/imasim/tpmext"
)

// Entry is one measurement record: the kernel's struct ima_template_entry
// together with the violation flag its caller passes along.
//
// An Entry is not modified by this package once built, except by
// Layout.ComputeDigests; readers may share it freely.
type Entry struct {
	// PCR is the PCR the record was extended into.
	PCR uint32
	// Desc is the template descriptor.
	Desc *Descriptor
	// Fields holds the stored bytes of each of Desc's fields, in order (the
	// kernel's template_data[i]). An absent value is a zero-length field.
	Fields [][]byte
	// Digests holds the template digest of each slot, in slot order, each
	// Slot.Size bytes, with the slot's TPM algorithm id (0 for an extra slot
	// without one). An entry read from a binary list holds one digest: the
	// column it was read from.
	Digests []tpmext.Digest
	// Violation marks a violation record: its digests are all zero and the
	// TPM is extended with 0xFF instead (Layout.ExtendDigests).
	Violation bool
}

// TemplateDataLen returns template_data_len: the sum over the fields of 4
// plus the field's length. The kernel computes it this way for every
// template, the legacy "ima" one included.
func (e *Entry) TemplateDataLen() int {
	n := 0
	for _, f := range e.Fields {
		n += 4 + len(f)
	}
	return n
}

// BinaryRuntimeSize returns what the kernel adds to binary_runtime_size for
// this entry: 4 + 20 + 4 + strlen(name) + 4 + template_data_len.
//
// Mirrors security/integrity/ima/ima_queue.c:get_binary_runtime_size().
//
// Like the kernel it counts the descriptor's name, which is "" for a custom
// format (whose records carry the fmt), and template_data_len for the "ima"
// template (whose records carry neither that length nor the d field's
// prefix), so the sum does not always equal the size of the kexec dump.
func (e *Entry) BinaryRuntimeSize() int {
	return 4 + sha1Size + 4 + len(e.Desc.Name()) + 4 + e.TemplateDataLen()
}

// check validates the shape of e: a descriptor and one field per
// descriptor field.
func (e *Entry) check() error {
	if e == nil || e.Desc == nil {
		return errors.New("template: entry has no descriptor")
	}
	if len(e.Fields) != e.Desc.NumFields() {
		return fmt.Errorf("template: entry has %d fields, template %s has %d", len(e.Fields), e.Desc, e.Desc.NumFields())
	}
	return nil
}

// appendHashInput appends the bytes every slot's template digest is
// computed over.
//
// For every template not named "ima": each field as u32(len) || data (the
// template data of the binary record, with lengths in order o). For "ima":
// the d field raw, then the n field copied into a 256-byte zero buffer.
func (e *Entry) appendHashInput(dst []byte, o Order) []byte {
	ima := e.Desc.IsIMA()
	for i, f := range e.Fields {
		if !ima {
			dst = o.AppendUint32(dst, uint32(len(f)))
			dst = append(dst, f...)
			continue
		}
		if e.Desc.Field(i) != FieldN {
			dst = append(dst, f...)
			continue
		}
		// IMA_EVENT_NAME_LEN_MAX + 1 bytes, zero padded. The kernel
		// would overrun its buffer for a longer field; this model
		// hashes the first 256 bytes.
		n := min(len(f), imaNameBuf)
		dst = append(dst, f[:n]...)
		dst = append(dst, zeros[:imaNameBuf-n]...)
	}
	return dst
}

const (
	// MaxEventNameLen is IMA_EVENT_NAME_LEN_MAX, the limit of the n field.
	MaxEventNameLen = 255
	imaNameBuf      = MaxEventNameLen + 1
)

var zeros [imaNameBuf]byte

// scratch buffers for the template-hash input; buffers that grew past
// maxPooled are left to the garbage collector.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooled = 64 << 10

// ComputeDigests computes the template digest of every slot into
// e.Digests, reusing e.Digests when it already has the layout's shape. A
// violation gets all-zero digests.
//
// Mirrors security/integrity/ima/ima_crypto.c:ima_calc_field_array_hash()
// (and ima_calc_field_array_hash_tfm()), as called by ima_store_template().
//
// Differences from Linux:
//   - The hash input is built once and hashed by each algorithm in one
//     call, instead of one update per field and algorithm; the bytes hashed
//     are the same.
func (l *Layout) ComputeDigests(e *Entry) error {
	if err := e.check(); err != nil {
		return err
	}
	l.shapeDigests(e)
	if e.Violation {
		for i := range e.Digests {
			clear(e.Digests[i].Value)
		}
		return nil
	}
	bp := scratchPool.Get().(*[]byte)
	in := e.appendHashInput((*bp)[:0], l.order)

	sha1 := e.Digests[l.sha1Idx].Value
	hashInfos[HashSHA1].sum(sha1, in)
	for i, s := range l.slots {
		if i == l.sha1Idx {
			continue
		}
		v := e.Digests[i].Value
		if !s.Hashed {
			clear(v[copy(v, sha1):])
			continue
		}
		hashInfos[s.Algo].sum(v, in)
	}

	putScratch(bp, in)
	return nil
}

// TemplateDigest returns e's template digest with algorithm a and length
// prefixes in order o: what a slot of algorithm a holds (for a violation
// the kernel stores zeros instead). Verifiers use it to check a list's
// digest column.
//
// Mirrors security/integrity/ima/ima_crypto.c:ima_calc_field_array_hash_tfm().
func (e *Entry) TemplateDigest(a HashAlgo, o Order) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	if !a.Available() {
		return nil, fmt.Errorf("template: hash algorithm %v has no implementation", a)
	}
	bp := scratchPool.Get().(*[]byte)
	in := e.appendHashInput((*bp)[:0], o)
	out := make([]byte, a.Size())
	hashInfos[a].sum(out, in)
	putScratch(bp, in)
	return out, nil
}

func putScratch(bp *[]byte, used []byte) {
	if cap(used) <= maxPooled {
		*bp = used[:0]
		scratchPool.Put(bp)
	}
}

// shapeDigests makes e.Digests one digest per slot with the slot's size and
// algorithm id, reusing the existing storage when it fits.
func (l *Layout) shapeDigests(e *Entry) {
	if len(e.Digests) == len(l.slots) {
		ok := true
		for i, s := range l.slots {
			if e.Digests[i].Alg != s.Bank || len(e.Digests[i].Value) != s.Size {
				ok = false
				break
			}
		}
		if ok {
			return
		}
	}
	total := 0
	for _, s := range l.slots {
		total += s.Size
	}
	buf := make([]byte, total)
	e.Digests = make([]tpmext.Digest, len(l.slots))
	for i, s := range l.slots {
		e.Digests[i] = tpmext.Digest{Alg: s.Bank, Value: buf[:s.Size:s.Size]}
		buf = buf[s.Size:]
	}
}

// ExtendDigests returns the digests the kernel extends into the TPM for e,
// one per bank in the TPM's order: each bank's slot digest (padded SHA-1
// for unmapped banks), or, for a violation, 0xFF over the bank's size
// (0xFF×20 then zeros for an unmapped bank). It returns nil without a TPM.
// The result shares storage with e and with the layout; do not modify it.
//
// Mirrors the digests_arg choice of
// security/integrity/ima/ima_queue.c:ima_add_template_entry() and the
// truncation of tpm_pcr_extend().
func (l *Layout) ExtendDigests(e *Entry) ([]tpmext.Digest, error) {
	if l.nrBanks == 0 {
		return nil, nil
	}
	if e.Violation {
		return l.violation, nil
	}
	if len(e.Digests) != len(l.slots) {
		return nil, fmt.Errorf("template: entry has %d digests, layout has %d slots", len(e.Digests), len(l.slots))
	}
	for i, s := range l.slots[:l.nrBanks] {
		if e.Digests[i].Alg != s.Bank || len(e.Digests[i].Value) != s.Bank.Size() {
			return nil, fmt.Errorf("template: entry digest %d is not for bank %v", i, s.Bank)
		}
	}
	return e.Digests[:l.nrBanks], nil
}

// RestoreEntry turns a record read from a kexec dump (DecodeOptions.Restore
// with the 20-byte SHA-1 column) into an entry of this kernel: if the dumped
// digest is not all zero, every slot is recomputed for this layout (the
// dumped digest is not checked); if it is all zero the entry is a violation
// and every slot stays zero.
//
// Mirrors the digest part of
// security/integrity/ima/ima_template.c:ima_restore_measurement_list().
func (l *Layout) RestoreEntry(rec *Entry) (*Entry, error) {
	if err := rec.check(); err != nil {
		return nil, err
	}
	if len(rec.Digests) != 1 {
		return nil, fmt.Errorf("template: restored record has %d digests, want the dumped one", len(rec.Digests))
	}
	e := &Entry{PCR: rec.PCR, Desc: rec.Desc, Fields: rec.Fields, Violation: allZero(rec.Digests[0].Value)}
	if err := l.ComputeDigests(e); err != nil {
		return nil, err
	}
	return e, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
