package measlist

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/imasim/imasim/htable"
	"github.com/imasim/imasim/htable/rcu"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// Counter names one of the kernel's per-type counters, enum binary_lists
// of ima.h ([PATCH v7 03/12, 09/12]).
type Counter int

const (
	// Binary counts the records in the current list.
	Binary Counter = iota
	// BinaryStaged counts the records in the staged list.
	BinaryStaged
	// BinaryFull counts every record appended since IMA init in this
	// kernel, restored ones included; it never decreases.
	BinaryFull
	numCounters
)

func (c Counter) String() string {
	switch c {
	case Binary:
		return "BINARY"
	case BinaryStaged:
		return "BINARY_STAGED"
	case BinaryFull:
		return "BINARY_FULL"
	}
	return fmt.Sprintf("Counter(%d)", int(c))
}

// NotTracked is ULONG_MAX on a 64-bit kernel: the value of every
// binary_runtime_size without CONFIG_IMA_KEXEC, and where sizes saturate.
const NotTracked = math.MaxUint64

// KexecHeaderSize is sizeof(struct ima_kexec_hdr).
const KexecHeaderSize = 24

// Config is the kernel configuration the queue depends on. The zero values
// are the kernel's defaults except Layout, which is required.
type Config struct {
	// Layout gives the digest slots (the TPM's banks and ima_hash) and the
	// byte order of the records.
	Layout *template.Layout
	// TPM is extended on every append; nil is the kernel's TPM-bypass
	// mode (no TPM chip).
	TPM tpmext.TPM
	// HtableDisabled is CONFIG_IMA_DISABLE_HTABLE: no duplicate lookups,
	// no insertions, and every deletion frees records completely.
	HtableDisabled bool
	// FlushHtable is the ima_flush_htable boot parameter. It is ignored,
	// with a warning in Warnings, when HtableDisabled is set.
	FlushHtable bool
	// Kexec is CONFIG_IMA_KEXEC: the binary_runtime_size values are
	// tracked (otherwise they are NotTracked).
	Kexec bool
	// RCU is the grace-period domain shared with the hash table; nil
	// gives the queue its own.
	RCU *rcu.Domain
	// Locking is the model's safe default, or the kernel's exact locking
	// (Locking.KernelExact) with chosen fixes.
	Locking Locking
}

// Queue is the kernel's measurement queue: the current and staged lists,
// the hash table, the counters and the suspended flag.
//
// Every method is safe for concurrent use.
type Queue struct {
	cfg    Config
	layout *template.Layout
	flush  bool // ima_flush_htable as set up at boot
	rcu    *rcu.Domain
	ht     *htable.Table[*qentry]

	// numRecords is ima_num_records[]: atomic, read without the mutex.
	numRecords [numCounters]atomic.Int64
	// numViolations is ima_num_violations.
	numViolations atomic.Int64
	// generation is bumped, under extendListMutex, by every change that
	// is not an append (A, D, N). No kernel counterpart; readers that
	// cache a position use it to know when to re-walk from the head.
	generation atomic.Uint64
	// lastHold is the mutex hold time of the last A, D or N, in ns.
	lastHold atomic.Int64
	// kmem models the kernel memory of the records.
	kmem kmemCounters

	// writerMutex serialises Stage, DeleteStaged and DeletePartial (unless
	// Locking.KernelExact). It stands in for the single-writer exclusion
	// that ima_fs.c is meant to enforce around every A, D and N (the
	// kernel's queue relies on it: "qe remains valid because ima_fs.c
	// enforces single-writer exclusion"), so that the queue is safe when
	// called directly from many goroutines. It never blocks Add.
	writerMutex sync.Mutex
	// extendListMutex is ima_extend_list_mutex.
	extendListMutex sync.Mutex
	// current is ima_measurements; protected by extendListMutex for
	// writers, read lock-free.
	current list
	// staged is ima_measurements_staged; protected by extendListMutex
	// for writers, read lock-free.
	staged list
	// binaryRuntimeSize is binary_runtime_size[]; protected by
	// extendListMutex.
	binaryRuntimeSize [numCounters]uint64
	// suspended is ima_measurements_suspended; protected by
	// extendListMutex.
	suspended bool
	// tpmErrors and lastTPMError record TPM extend failures, which the
	// kernel only audits; protected by extendListMutex.
	tpmErrors    int64
	lastTPMError *TPMError

	warnings []string // set at New, read-only afterwards

	// hooks lets tests stop an operation between its phases; nil in
	// normal use. Set before the queue is shared.
	hooks *Hooks
	// faultLog holds what kernel-exact interleavings did wrong.
	faultLog faultLog
}

// Hooks are test points between the phases of the operations whose work is
// split around the mutex. No kernel counterpart; they exist so that tests
// can interleave other operations exactly where the kernel allows them.
type Hooks struct {
	// AfterPartialWalk runs in DeletePartial after the lock-free walk and
	// before the mutex is taken.
	AfterPartialWalk func()
	// BeforeRelease runs after the mutex is dropped and before detached
	// records are released (D and N).
	BeforeRelease func()
	// Yield, if set, is called at every preemption point: where the C can
	// be interrupted between the statements that matter (after N's walk,
	// before a release, between a reader's fetch of a record and its
	// show(), and while waiting for the request mutex or a grace period,
	// with a point name starting "wait:"). A test scheduler that runs one
	// operation at a time uses it to force any interleaving.
	Yield func(point string)
}

// New returns an empty queue, its hash table allocated as ima_init_htable()
// does.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_init_htable() and the
// static initialisers of ima_queue.c ([PATCH v7 02/12, 04/12, 10/12]).
func New(cfg Config) (*Queue, error) {
	if cfg.Layout == nil {
		return nil, errors.New("measlist: Config.Layout is required")
	}
	q := &Queue{cfg: cfg, layout: cfg.Layout, rcu: cfg.RCU}
	if q.rcu == nil {
		q.rcu = new(rcu.Domain)
	}
	q.flush = cfg.FlushHtable
	if cfg.FlushHtable && cfg.HtableDisabled {
		// ima_flush_htable_setup()
		q.flush = false
		q.warnings = append(q.warnings, "Hash table not enabled, ignoring request to flush")
	}
	if !cfg.Kexec {
		for i := range q.binaryRuntimeSize {
			q.binaryRuntimeSize[i] = NotTracked
		}
	}
	q.ht = htable.New[*qentry](q.rcu)
	q.extendListMutex.Lock()
	old, err := q.ht.ReplaceLocked()
	q.extendListMutex.Unlock()
	if err != nil {
		return nil, err
	}
	q.ht.Release(old)
	return q, nil
}

// SetHooks installs test hooks. Call it before the queue is shared. With
// Hooks.Yield set, grace periods of the queue's RCU domain wait by
// yielding too.
func (q *Queue) SetHooks(h *Hooks) {
	q.hooks = h
	if h != nil && h.Yield != nil {
		q.rcu.SetWait(func() { q.yield("wait: synchronize_rcu") })
	} else {
		q.rcu.SetWait(nil)
	}
}

// SetFailAlloc makes the hash table's next bucket-array allocations fail
// while fail returns true (the kcalloc() of ima_alloc_replace_htable()).
// Call it before the queue is shared. No kernel counterpart; exists so that
// tests can reach the -ENOMEM path of a flushing D (docs/SPEC.md Q3).
func (q *Queue) SetFailAlloc(fail func() bool) { q.ht.FailAlloc = fail }

// Layout returns the record layout the queue was built with.
func (q *Queue) Layout() *template.Layout { return q.layout }

// FlushHtable reports whether ima_flush_htable is in effect.
func (q *Queue) FlushHtable() bool { return q.flush }

// Warnings returns the messages the kernel would have logged at setup.
func (q *Queue) Warnings() []string { return append([]string(nil), q.warnings...) }

// RCU returns the queue's grace-period domain.
func (q *Queue) RCU() *rcu.Domain { return q.rcu }

// hashDigest returns the digest the hash table is keyed by: the template
// digest in the ima_hash algorithm's slot.
func (q *Queue) hashDigest(e *template.Entry) []byte {
	return e.Digests[q.layout.HashIndex()].Value
}

// Add appends a measurement and extends the TPM.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_add_template_entry().
//
// The entry must have its digests computed (Layout.ComputeDigests). Add
// takes ownership: after a deletion the queue releases its template data.
//
// Errors: syscall.ENODEV when measurement is suspended; syscall.EEXIST for
// a non-violation whose (digest, pcr) is in the hash table (the record is
// not added, nothing is extended). A TPM failure, like in the kernel, is
// not an error: the record stays in the list and the PCR diverges; see
// TPMErrors.
//
// Differences from Linux: no audit record; the kmalloc of the queue entry
// cannot fail.
func (q *Queue) Add(e *template.Entry) error {
	if len(e.Digests) != q.layout.NumSlots() {
		return fmt.Errorf("measlist: entry has %d digests, the layout has %d slots: compute its digests first", len(e.Digests), q.layout.NumSlots())
	}
	live, _ := RecordFootprint(e, q.layout.NumSlots())
	q.extendListMutex.Lock()
	defer q.extendListMutex.Unlock()
	if q.suspended {
		return syscall.ENODEV // audit cause "measurements_suspended"
	}
	if !e.Violation && !q.cfg.HtableDisabled {
		if _, dup := q.ht.Lookup(q.hashDigest(e), e.PCR); dup {
			return syscall.EEXIST // audit cause "hash_exists"
		}
	}
	q.addDigestEntryLocked(e, !q.cfg.HtableDisabled, live)
	if q.cfg.TPM == nil {
		return nil
	}
	digests, err := q.layout.ExtendDigests(e)
	if err == nil {
		err = q.cfg.TPM.Extend(int(e.PCR), digests)
	}
	if err != nil {
		q.tpmErrors++
		q.lastTPMError = &TPMError{Result: tpmext.Result(err), PCR: int(e.PCR), Err: err}
	}
	return nil
}

// TPMError is a failed TPM extend of one record, which the kernel reports
// with pr_err() and an audit record whose cause is "TPM_error(<result>)"
// (Cause); the record stays in the list and the operation succeeds.
//
// Mirrors the tpmresult handling of
// security/integrity/ima/ima_queue.c:ima_add_template_entry() and
// ima_pcr_extend().
type TPMError struct {
	// Result is what tpm_pcr_extend() returned: the TPM's response code,
	// or a negative errno when the command did not complete
	// (tpmext.Result).
	Result int
	PCR    int
	Err    error
}

// Cause is the audit cause: "TPM_error(<result>)".
func (e *TPMError) Cause() string { return fmt.Sprintf("TPM_error(%d)", e.Result) }

func (e *TPMError) Error() string {
	return fmt.Sprintf("%s extending PCR %d: %v", e.Cause(), e.PCR, e.Err)
}

func (e *TPMError) Unwrap() error { return e.Err }

// addDigestEntryLocked appends e to the current list, counts it, inserts it
// in the hash table if asked, and grows the sizes.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_add_digest_entry()
// ([PATCH v7 09/12]).
//
// Preconditions: extendListMutex is held; live is e's RecordFootprint.
func (q *Queue) addDigestEntryLocked(e *template.Entry, updateHtable bool, live int) {
	qe := &qentry{entry: e}
	q.kmem.lists.Add(int64(live))
	q.kmem.added.Add(int64(live))
	q.current.appendLocked(qe)
	q.numRecords[Binary].Add(1)
	q.numRecords[BinaryFull].Add(1)
	if updateHtable {
		q.ht.InsertLocked(q.hashDigest(e), e.PCR, qe)
		qe.inHtable = true
	}
	q.updateSizeLocked(Binary, e)
	q.updateSizeLocked(BinaryFull, e)
}

// updateSizeLocked adds e's serialized size to one binary_runtime_size,
// saturating, unless that size is not tracked.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_update_binary_runtime_size()
// ([PATCH v7 04/12]).
//
// Preconditions: extendListMutex is held.
func (q *Queue) updateSizeLocked(c Counter, e *template.Entry) {
	if q.binaryRuntimeSize[c] == NotTracked {
		return
	}
	size := uint64(e.BinaryRuntimeSize())
	if q.binaryRuntimeSize[c] < NotTracked-size {
		q.binaryRuntimeSize[c] += size
	} else {
		q.binaryRuntimeSize[c] = NotTracked
	}
}

// RestoreEntry appends a record carried over by kexec: no hash-table
// insertion, no TPM extend, no suspension check.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_restore_measurement_entry().
func (q *Queue) RestoreEntry(e *template.Entry) {
	live, _ := RecordFootprint(e, q.layout.NumSlots())
	q.extendListMutex.Lock()
	defer q.extendListMutex.Unlock()
	q.addDigestEntryLocked(e, false, live)
}

// NumRecords returns ima_num_records[c], read atomically as
// runtime_measurements_count reads BINARY.
func (q *Queue) NumRecords(c Counter) int64 { return q.numRecords[c].Load() }

// AddViolation counts one violation in ima_num_violations. The caller then
// builds and adds the violation record, which may still fail.
//
// Mirrors the atomic_long_inc() at the top of
// security/integrity/ima/ima_api.c:ima_add_violation().
func (q *Queue) AddViolation() { q.numViolations.Add(1) }

// NumViolations returns ima_num_violations.
func (q *Queue) NumViolations() int64 { return q.numViolations.Load() }

// BinaryRuntimeSize returns the size of the serialized list c plus the kexec
// header, or NotTracked; read under the mutex.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_get_binary_runtime_size()
// ([PATCH v7 04/12]).
func (q *Queue) BinaryRuntimeSize(c Counter) uint64 {
	q.extendListMutex.Lock()
	v := q.binaryRuntimeSize[c]
	q.extendListMutex.Unlock()
	if v >= NotTracked-KexecHeaderSize {
		return NotTracked
	}
	return v + KexecHeaderSize
}

// TPMErrors returns how many TPM extends failed (the kernel audits
// "TPM_error(<result>)" and keeps the record) and the last failure, a
// *TPMError (nil if none).
// No kernel counterpart beyond the audit record.
func (q *Queue) TPMErrors() (int64, error) {
	q.extendListMutex.Lock()
	defer q.extendListMutex.Unlock()
	if q.lastTPMError == nil {
		return q.tpmErrors, nil
	}
	return q.tpmErrors, q.lastTPMError
}

// Suspended reports whether measurement is suspended.
func (q *Queue) Suspended() bool {
	q.extendListMutex.Lock()
	defer q.extendListMutex.Unlock()
	return q.suspended
}

// Suspend stops measurement, as the reboot notifier does on every reboot:
// afterwards Add fails with ENODEV, Stage with EACCES, DeleteStaged and
// DeletePartial with ESTALE.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_measurements_suspend().
func (q *Queue) Suspend() {
	q.extendListMutex.Lock()
	q.suspended = true
	q.extendListMutex.Unlock()
}

// InHtable reports whether (digest, pcr) is in the hash table now. No
// kernel counterpart; exists so that tests and the reference model can
// compare hash-table contents.
func (q *Queue) InHtable(digest []byte, pcr uint32) bool {
	_, ok := q.ht.Lookup(digest, pcr)
	return ok
}

// HtableLen returns the number of keys in the current bucket array. No
// kernel counterpart.
func (q *Queue) HtableLen() int {
	if a := q.ht.Current(); a != nil {
		return a.Len()
	}
	return 0
}

// Generation returns a number that changes whenever records leave a list
// or move between lists (A, D, N). No kernel counterpart; seq_file-style
// readers that cache a position compare it to know when to re-walk.
func (q *Queue) Generation() uint64 { return q.generation.Load() }
