package template

import (
	"errors"
	"fmt"

	"github.com/imasim/imasim/tpmext"
)

// NewFileEvent returns the event for measuring a file at path: its digest
// with algorithm algo (computed from f.Content when digest is nil), and f's
// security.ima value as the event's xattr. Set Verity or Modsig on the
// result when the policy asks for them.
//
// Mirrors the event_data that security/integrity/ima/ima_api.c:
// ima_store_measurement() builds after ima_collect_measurement().
func NewFileEvent(path string, f *File, algo HashAlgo, digest []byte) (*Event, error) {
	if f == nil {
		return nil, errors.New("template: a file event needs a file")
	}
	if digest == nil {
		if !algo.Available() {
			return nil, fmt.Errorf("template: cannot hash file %q with %v", path, algo)
		}
		digest = algo.Sum(f.Content)
	}
	if err := checkDigest(algo, digest); err != nil {
		return nil, fmt.Errorf("template: file %q: %w", path, err)
	}
	return &Event{Name: path, HashAlgo: algo, Digest: digest, File: f, IMAXattr: f.IMAXattr}, nil
}

// NewViolationEvent returns the event of a violation on the file at path
// (f may be nil). Its digest fields are zero; the fields that read the file
// (iuid, evmsig, ...) are built normally, but no security.ima value is
// passed, so sig falls back to an EVM portable signature.
//
// Mirrors security/integrity/ima/ima_api.c:ima_add_violation().
func NewViolationEvent(path string, f *File, cause string) *Event {
	if cause == "" {
		cause = "violation"
	}
	return &Event{Name: path, File: f, Violation: cause}
}

// BufferEvent returns the event of a buffer measurement named name: the
// digest is H(buf) with ima_hash; with bufHash ("measure the hash of the
// buffer", as init_module critical data does) the buf field holds H(buf)
// and the digest is H(H(buf)).
//
// Mirrors security/integrity/ima/ima_main.c:process_buffer_measurement().
func (l *Layout) BufferEvent(name string, buf []byte, bufHash bool) *Event {
	d := l.hashAlgo.Sum(buf)
	if bufHash {
		buf = d
		d = l.hashAlgo.Sum(buf)
	}
	return &Event{Name: name, HashAlgo: l.hashAlgo, Digest: d, Buf: buf}
}

// BootAggregateEvent returns the event of the boot aggregate record, named
// "boot_aggregate", given the TPM's PCR 0-9 of each bank (ignored without a
// TPM).
//
// The bank is chosen as the kernel does: an exact match with ima_hash wins;
// else the last SHA-256 bank; else a SHA-1 bank met before any SHA-256.
// The digest is H(PCR0 || ... || PCR7) for a SHA-1 bank and H(PCR0 || ...
// || PCR9) for any other, with that bank's algorithm, which becomes the
// event's. No suitable bank, or no TPM, gives hash_digest_size[ima_hash]
// zero bytes with ima_hash. An "ima" template's d field retries the choice
// requesting SHA-1 and falls back to 20 zero bytes.
//
// Mirrors security/integrity/ima/ima_init.c:ima_add_boot_aggregate() with
// ima_crypto.c:ima_calc_boot_aggregate().
func (l *Layout) BootAggregateEvent(pcrs tpmext.PCRValues) (*Event, error) {
	ev := &Event{Name: BootAggregateName, HashAlgo: l.hashAlgo, boot: true, pcrs: pcrs, layout: l}
	if !l.HasTPM() {
		ev.Digest = make([]byte, l.hashAlgo.Size())
		return ev, nil
	}
	algo, digest, err := l.bootAggregate(l.hashAlgo, pcrs)
	if err != nil {
		return nil, err
	}
	if digest == nil { // "No suitable TPM algorithm for boot aggregate"
		digest = make([]byte, l.hashAlgo.Size())
	}
	ev.HashAlgo, ev.Digest = algo, digest
	return ev, nil
}

// bootAggregate computes the aggregate requesting algorithm want. It
// returns want and a nil digest when no bank is suitable.
//
// Mirrors security/integrity/ima/ima_crypto.c:ima_calc_boot_aggregate()
// and ima_calc_boot_aggregate_tfm().
func (l *Layout) bootAggregate(want HashAlgo, pcrs tpmext.PCRValues) (HashAlgo, []byte, error) {
	idx := -1
	for i, s := range l.slots[:l.nrBanks] {
		if s.Algo == want {
			idx = i
			break
		}
		if s.Algo == HashSHA256 {
			idx = i
		}
		if idx == -1 && s.Algo == HashSHA1 {
			idx = i
		}
	}
	if idx == -1 {
		return want, nil, nil
	}
	s := l.slots[idx]
	last := 8 // PCR 0-7
	if s.Bank != tpmext.SHA1 {
		last = 10 // PCR 0-9
	}
	bank := pcrs[s.Bank]
	if len(bank) < last {
		return 0, nil, fmt.Errorf("template: boot aggregate needs PCR 0-%d of bank %v, have %d PCRs", last-1, s.Bank, len(bank))
	}
	h := s.Algo.New()
	for i, v := range bank[:last] {
		if len(v) != s.Size {
			return 0, nil, fmt.Errorf("template: boot aggregate: PCR %d of bank %v has %d bytes, want %d", i, s.Bank, len(v), s.Size)
		}
		h.Write(v)
	}
	return s.Algo, h.Sum(nil), nil
}

// NewBootAggregate builds the boot aggregate entry for template desc and
// PCR pcr (CONFIG_IMA_MEASURE_PCR_IDX). It is BootAggregateEvent followed by
// NewEntry.
func (l *Layout) NewBootAggregate(desc *Descriptor, pcr uint32, pcrs tpmext.PCRValues) (*Entry, error) {
	ev, err := l.BootAggregateEvent(pcrs)
	if err != nil {
		return nil, err
	}
	return l.NewEntry(desc, pcr, ev)
}
