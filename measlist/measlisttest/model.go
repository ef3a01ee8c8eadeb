// Package measlisttest is a reference model of package measlist's queue,
// for tests, in the manner of testing/fstest: the kernel's measurement list
// after the staging series ("[PATCH v7 00/12] ima: Exporting and deleting
// IMA measurement records from kernel memory", Linux 7.2), written as
// plainly as the rules of docs/SPEC.md §2 and §4 allow: slices and maps
// under one mutex, no RCU, no lock-free readers, no split between work done
// under the mutex and work done outside it, sizes recomputed from the lists
// rather than kept as running sums.
//
// A test applies the same operations to a measlist.Queue and to a Model and
// compares what Snapshot says with what the queue shows: measlist's own
// property test does, and so does the whole-system harness of imasim, whose
// securityfs reference (staging/stagingtest) is built on this model. An
// agent's tests can use it the same way, as the expected state of a kernel
// they drive.
//
// It reuses only the record layer (ima/template) and the extend oracle
// (tpmext.ExtendValue); it does not import measlist, so it is a second,
// independent statement of the same rules.
//
// No kernel counterpart as code: every method says which transition of
// ima_queue.c or ima_kexec.c it stands for.
//
// Lock order: Model.mu only.
package measlisttest

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// The three lists counted by the kernel (enum binary_lists), in measlist's
// order: the indexes of Snapshot.Counts and Snapshot.Sizes.
const (
	Binary = iota
	BinaryStaged
	BinaryFull
)

// NotTracked is ULONG_MAX on a 64-bit kernel.
const NotTracked = math.MaxUint64

// HeaderSize is sizeof(struct ima_kexec_hdr).
const HeaderSize = 24

// Config is the kernel configuration of a model.
type Config struct {
	// Layout is the records' digest slots and byte order.
	Layout *template.Layout
	// Banks are the TPM's banks; nil is TPM bypass.
	Banks []tpmext.Algorithm
	// HtableDisabled is CONFIG_IMA_DISABLE_HTABLE, FlushHtable
	// ima_flush_htable (ignored without a table), Kexec CONFIG_IMA_KEXEC
	// (without it the sizes are NotTracked and nothing is carried).
	HtableDisabled bool
	FlushHtable    bool
	Kexec          bool
}

// Key is a hash-table key: the template digest in the ima_hash slot and
// the PCR.
type Key struct {
	Digest string
	PCR    uint32
}

// HtableBytes is the kernel's bucket array: 1024 struct hlist_head.
const HtableBytes = 1024 * 8

// Footprint is the kernel memory of a record with the given number of
// digest slots, from the x86-64 struct sizes of ima.h and the generic
// kmalloc caches: the queue entry (hnext 16 + later 16 + entry 8), the
// template entry (32 bytes before template_data[], 16 per field), the
// digests (66 bytes per struct tpm_digest) and each field's data; what
// stays after a deletion without flush (retained) is all but the field
// data.
func Footprint(e *template.Entry, slots int) (live, retained int) {
	retained = kmalloc(40) + kmalloc(32+16*len(e.Fields)) + kmalloc(66*slots)
	live = retained
	for _, f := range e.Fields {
		live += kmalloc(len(f))
	}
	return live, retained
}

// kmalloc is the size kmalloc(n) takes: the smallest of the generic caches
// (kmalloc-8 to kmalloc-8k) that holds n, whole pages above, nothing for 0.
func kmalloc(n int) int {
	if n <= 0 {
		return 0
	}
	for _, c := range []int{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192} {
		if n <= c {
			return c
		}
	}
	return (n + 4095) / 4096 * 4096
}

// FileEntry builds the record tests use most: an ima-ng measurement of
// the file path with the given content into PCR 10, under layout l.
func FileEntry(l *template.Layout, path string, content []byte) (*template.Entry, error) {
	ev, err := template.NewFileEvent(path, &template.File{Content: content}, l.HashAlgo(), nil)
	if err != nil {
		return nil, err
	}
	return l.NewEntry(template.Builtin("ima-ng"), 10, ev)
}

// KeyOf returns e's hash-table key under layout l.
func KeyOf(l *template.Layout, e *template.Entry) Key {
	return Key{string(e.Digests[l.HashIndex()].Value), e.PCR}
}

// Model is the reference queue. Its methods take one mutex each.
type Model struct {
	mu  sync.Mutex
	cfg Config
	// flush is ima_flush_htable as in effect (ignored without a table).
	flush bool

	current, staged []*template.Entry
	// freed are the records deleted by D or N, whose template data the
	// queue must have released; lost are the records of a D whose flush
	// allocation failed (Q3): in no list, not released.
	freed, lost []*template.Entry

	h          map[Key]bool
	hlen       int // insertions into the current table (violations repeat keys)
	full       int64
	fullSize   uint64 // saturating Σ sz of every appended record
	suspended  bool
	violations int64
	generation uint64
	pcrs       tpmext.PCRValues
	tpmErrors  int64
	failAlloc  func() bool

	// retained and added are kernel memory (Footprint): what deleted
	// records still hold, and every record ever appended, whole.
	retained, added int64
}

// New returns an empty model, with PCRs at their reset values.
func New(cfg Config) *Model {
	m := &Model{cfg: cfg, flush: cfg.FlushHtable && !cfg.HtableDisabled, h: map[Key]bool{}}
	if cfg.Banks != nil {
		m.pcrs = make(tpmext.PCRValues, len(cfg.Banks))
		for _, alg := range cfg.Banks {
			vals := make([][]byte, tpmext.NumPCRs)
			for p := range vals {
				vals[p] = tpmext.InitialPCRValue(p, alg)
			}
			m.pcrs[alg] = vals
		}
	}
	return m
}

// Warnings are the kernel's setup messages.
func (m *Model) Warnings() []string {
	if m.cfg.FlushHtable && m.cfg.HtableDisabled {
		return []string{"Hash table not enabled, ignoring request to flush"}
	}
	return nil
}

// FlushHtable reports whether ima_flush_htable is in effect.
func (m *Model) FlushHtable() bool { return m.flush }

func (m *Model) key(e *template.Entry) Key { return KeyOf(m.cfg.Layout, e) }

// Add is measure(r): ima_add_template_entry() with ima_add_digest_entry()
// and ima_pcr_extend(). It refuses a record while suspended (ENODEV) and a
// non-violation record whose key the hash table holds (EEXIST); otherwise
// it appends, inserts the key and extends the record's PCR in every bank
// (0xFF… for a violation). A PCR the TPM refuses (17–22, or 24 and above)
// is counted in Snapshot.TPMErrors and the record stays, as in the kernel.
func (m *Model) Add(e *template.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.suspended {
		return syscall.ENODEV
	}
	if !e.Violation && !m.cfg.HtableDisabled && m.h[m.key(e)] {
		return syscall.EEXIST
	}
	m.appendLocked(e)
	if !m.cfg.HtableDisabled {
		m.h[m.key(e)] = true
		m.hlen++
	}
	if m.pcrs == nil {
		return nil
	}
	if e.PCR >= tpmext.NumPCRs || (e.PCR >= 17 && e.PCR <= 22) {
		m.tpmErrors++ // the TPM refuses; the record stays
		return nil
	}
	for _, alg := range m.cfg.Banks {
		d := bytes.Repeat([]byte{0xff}, alg.Size())
		if !e.Violation {
			d = digestOf(e, alg)
		}
		m.pcrs[alg][e.PCR] = tpmext.ExtendValue(alg, m.pcrs[alg][e.PCR], d)
	}
	return nil
}

func digestOf(e *template.Entry, alg tpmext.Algorithm) []byte {
	for _, d := range e.Digests {
		if d.Alg == alg {
			return d.Value
		}
	}
	panic("measlisttest: entry has no digest for a TPM bank")
}

func (m *Model) appendLocked(e *template.Entry) {
	live, _ := Footprint(e, m.cfg.Layout.NumSlots())
	m.added += int64(live)
	m.current = append(m.current, e)
	m.full++
	if sz := uint64(e.BinaryRuntimeSize()); m.fullSize < NotTracked-sz {
		m.fullSize += sz
	} else {
		m.fullSize = NotTracked
	}
}

// AddViolation counts a violation (ima_num_violations); the caller adds
// the violation record with Add, as ima_add_violation() does.
func (m *Model) AddViolation() {
	m.mu.Lock()
	m.violations++
	m.mu.Unlock()
}

// Restore appends records carried over by kexec, as
// ima_restore_measurement_entry() does: no hash table, no TPM, no
// suspension check.
func (m *Model) Restore(es ...*template.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		m.appendLocked(e)
	}
}

// Stage is A: ima_queue_stage() ([PATCH v7 09/12]) moves the whole current
// list to the staged list.
//
// Errors, in the kernel's order: EEXIST (something is staged), ENOENT
// (nothing to stage), EACCES (suspended).
func (m *Model) Stage() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case len(m.staged) > 0:
		return syscall.EEXIST
	case len(m.current) == 0:
		return syscall.ENOENT
	case m.suspended:
		return syscall.EACCES
	}
	m.staged, m.current = m.current, nil
	m.generation++
	return nil
}

// SetFailAlloc sets the hook the flush of D asks before it allocates the
// new hash table: when fail returns true, the allocation fails (-ENOMEM),
// as measlist.Queue.SetFailAlloc's hook makes it fail. nil never fails.
func (m *Model) SetFailAlloc(fail func() bool) {
	m.mu.Lock()
	m.failAlloc = fail
	m.mu.Unlock()
}

// DeleteStaged is D: ima_queue_staged_delete_all() with the flush of
// [PATCH v7 10/12]. It returns the records taken from the staged list: the
// deleted ones, or with ENOMEM the ones a failed flush allocation lost
// (docs/SPEC.md Q3: they are detached before the allocation, so they are in
// no list and never released).
//
// Errors, in the kernel's order: ENOENT (nothing staged), ESTALE
// (suspended), ENOMEM.
func (m *Model) DeleteStaged() ([]*template.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case len(m.staged) == 0:
		return nil, syscall.ENOENT
	case m.suspended:
		return nil, syscall.ESTALE
	}
	trim := m.staged
	m.staged = nil
	m.generation++
	if m.flush {
		if m.failAlloc != nil && m.failAlloc() {
			m.lost = append(m.lost, trim...)
			return trim, syscall.ENOMEM
		}
		m.h = map[Key]bool{}
		m.hlen = 0
	}
	m.releaseLocked(trim, m.flush)
	return trim, nil
}

// DeletePartial is N: ima_queue_delete_partial() ([PATCH v7 11/12]). It
// returns the n records deleted from the head of the current list.
//
// Errors, in the kernel's order: EINVAL (n is 0), ENOENT (fewer than n
// records), ESTALE (suspended).
func (m *Model) DeletePartial(n uint64) ([]*template.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case n == 0:
		return nil, syscall.EINVAL
	case n > uint64(len(m.current)):
		return nil, syscall.ENOENT
	case m.suspended:
		return nil, syscall.ESTALE
	}
	trim := m.current[:n:n]
	m.releaseLocked(trim, false)
	m.current = append([]*template.Entry(nil), m.current[n:]...)
	m.generation++
	return trim, nil
}

// releaseLocked records deleted records: their field data is freed; the
// rest too when the hash table is flushed or disabled, else it stays for
// the hash table (retained).
func (m *Model) releaseLocked(es []*template.Entry, flushed bool) {
	m.freed = append(m.freed, es...)
	if flushed || m.cfg.HtableDisabled {
		return
	}
	for _, e := range es {
		_, retained := Footprint(e, m.cfg.Layout.NumSlots())
		m.retained += int64(retained)
	}
}

// Suspend sets ima_measurements_suspended, as a kexec's
// ima_measurements_suspend() does.
func (m *Model) Suspend() {
	m.mu.Lock()
	m.suspended = true
	m.mu.Unlock()
}

// Snapshot is everything the model says is observable.
type Snapshot struct {
	Current, Staged []*template.Entry
	Counts          [3]int64
	Sizes           [3]uint64
	Violations      int64
	Generation      uint64
	HtableLen       int
	Suspended       bool
	TPMErrors       int64
	PCRs            tpmext.PCRValues
	// Kernel memory: records in the lists, retained by deleted records,
	// lost by a failed flush (all from Footprint), the bucket array, and
	// every record ever appended plus the bucket array.
	KmemLists, KmemRetained, KmemLost, KmemHtable, KmemWithoutStaging int64
}

// Snapshot returns the observable state, sharing nothing with the model.
func (m *Model) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{
		Current:    append([]*template.Entry(nil), m.current...),
		Staged:     append([]*template.Entry(nil), m.staged...),
		Counts:     [3]int64{int64(len(m.current)), int64(len(m.staged)), m.full},
		Violations: m.violations,
		Generation: m.generation,
		HtableLen:  m.hlen,
		Suspended:  m.suspended,
		TPMErrors:  m.tpmErrors,
	}
	s.Sizes = [3]uint64{NotTracked, NotTracked, NotTracked}
	if m.cfg.Kexec {
		s.Sizes = [3]uint64{withHeader(sumSize(m.current)), withHeader(sumSize(m.staged)), withHeader(m.fullSize)}
	}
	slots := m.cfg.Layout.NumSlots()
	for _, e := range append(append([]*template.Entry(nil), m.current...), m.staged...) {
		live, _ := Footprint(e, slots)
		s.KmemLists += int64(live)
	}
	for _, e := range m.lost {
		live, _ := Footprint(e, slots)
		s.KmemLost += int64(live)
	}
	s.KmemRetained = m.retained
	s.KmemHtable = HtableBytes
	s.KmemWithoutStaging = m.added + HtableBytes
	if m.pcrs != nil {
		s.PCRs = make(tpmext.PCRValues, len(m.pcrs))
		for alg, vals := range m.pcrs {
			s.PCRs[alg] = append([][]byte(nil), vals...)
		}
	}
	return s
}

func sumSize(es []*template.Entry) uint64 {
	var n uint64
	for _, e := range es {
		n += uint64(e.BinaryRuntimeSize())
	}
	return n
}

// withHeader is ima_get_binary_runtime_size().
func withHeader(v uint64) uint64 {
	if v >= NotTracked-HeaderSize {
		return NotTracked
	}
	return v + HeaderSize
}

// Lists returns the current and the staged list, oldest record first,
// sharing nothing with the model.
func (m *Model) Lists() (current, staged []*template.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*template.Entry(nil), m.current...), append([]*template.Entry(nil), m.staged...)
}

// InHtable reports whether k is in the hash table.
func (m *Model) InHtable(k Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.h[k]
}

// Freed returns the records deleted so far, in deletion order.
func (m *Model) Freed() []*template.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*template.Entry(nil), m.freed...)
}

// Lost returns the records lost by a failed flush (Q3).
func (m *Model) Lost() []*template.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*template.Entry(nil), m.lost...)
}

// KexecSegmentSize is the segment ima_add_kexec_buffer() reserves, or
// false when the kernel logs "Binary measurement list too large." (always
// without CONFIG_IMA_KEXEC); the size is the one the kernel stored in
// kexec_segment_size all the same (NotTracked when it saturated).
// extraKB <= 0 means half a page; page 0 means 4096; ram 0 means 24 GiB.
func (m *Model) KexecSegmentSize(extraKB int, page, ram uint64) (uint64, bool) {
	if !m.cfg.Kexec {
		return NotTracked, false
	}
	if page == 0 {
		page = 4096
	}
	if ram == 0 {
		ram = 24 << 30
	}
	extra := page / 2
	if extraKB > 0 {
		extra = uint64(extraKB) * 1024
	}
	s := m.Snapshot()
	size, over := bits.Add64(s.Sizes[Binary], s.Sizes[BinaryStaged], 0)
	size, over2 := bits.Add64(size, extra, 0)
	if over+over2 != 0 || size >= NotTracked-page {
		return NotTracked, false
	}
	seg := (size + page - 1) / page * page
	if seg/page > ram/page/2 {
		return seg, false
	}
	return seg, true
}

// Dump is the kexec segment written from S ++ C: the header and the SHA-1
// binary records, the segment filled byte by byte; a record is started
// only while the segment has room, and EINVAL is returned when one could
// not be started.
func (m *Model) Dump(segment uint64) ([]byte, error) {
	s := m.Snapshot()
	l := m.cfg.Layout
	out := make([]byte, HeaderSize)
	var count uint64
	var err error
	for _, e := range append(s.Staged, s.Current...) {
		if uint64(len(out)) >= segment {
			err = syscall.EINVAL
			break
		}
		count++
		rec, aerr := e.AppendBinary(nil, l.SHA1Index(), l.Order())
		if aerr != nil {
			panic(aerr)
		}
		out = append(out, rec[:min(uint64(len(rec)), segment-uint64(len(out)))]...)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if l.Order() == template.BigEndian {
		bo = binary.BigEndian
	}
	bo.PutUint16(out[0:], 1)
	bo.PutUint64(out[8:], uint64(len(out)))
	bo.PutUint64(out[16:], count)
	return out, err
}

// Carried returns the records a new kernel restores from Dump(segment),
// in order, and the error its restore ends with: every record counted in
// the header whose bytes all fit, and EINVAL when the last counted one was
// cut (its template is one a restore accepts: the model's callers use no
// other).
func (m *Model) Carried(segment uint64) ([]*template.Entry, error) {
	s := m.Snapshot()
	l := m.cfg.Layout
	pos := uint64(HeaderSize)
	var out []*template.Entry
	for _, e := range append(s.Staged, s.Current...) {
		if pos >= segment {
			break
		}
		pos += uint64(e.BinarySize(l.Slot(l.SHA1Index()).Size))
		if pos > segment {
			return out, syscall.EINVAL
		}
		out = append(out, e)
	}
	return out, nil
}

// Kexec returns the model of the next kernel after a kexec that carried
// the given records (restored entries built by the real restore): the
// same configuration, fail-allocation hook and TPM, whose PCRs are not
// reset, and nothing else.
func (m *Model) Kexec(restored []*template.Entry) *Model {
	next := New(m.cfg)
	m.mu.Lock()
	for alg, vals := range m.pcrs {
		next.pcrs[alg] = append([][]byte(nil), vals...)
	}
	next.failAlloc = m.failAlloc
	m.mu.Unlock()
	next.Restore(restored...)
	return next
}
