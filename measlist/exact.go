package measlist

import (
	"errors"
	"fmt"
	"sync"
)

// Locking chooses how much safety the queue adds to the kernel's own
// locking. The zero value is the model's default: A, D and N are
// serialised, releases wait for a grace period, and readers stay inside
// their read-side section while they use a record, so the queue is safe
// when called directly from many goroutines.
//
// KernelExact drops all three, leaving exactly the v7 code's protection:
// only ima_extend_list_mutex around the list moves, and whatever exclusion
// the caller (ima_fs.c's one-writer rule, which is per task) provides. The
// other fields then put back one protection each; they are the fixes one
// would propose upstream, so that a test can show which one removes a
// failure. In kernel-exact mode what the kernel would corrupt or touch
// after freeing is recorded as a Fault (see Queue.Faults) instead of being
// done.
type Locking struct {
	// KernelExact models the v7 code's locking and nothing more.
	KernelExact bool
	// SerializeRequests puts back a mutex around A, D and N and around
	// each seq_file read (start() to stop()): exclusion per request rather
	// than per task, so that other threads of the writer, or a fork
	// child, using the writer's descriptors are excluded too.
	SerializeRequests bool
	// SynchronizeBeforeFree puts back synchronize_rcu() before
	// ima_queue_delete() frees detached records.
	SynchronizeBeforeFree bool
	// ReadersHoldRCU keeps a seq_file reader inside rcu_read_lock() from
	// start() to stop(), across show(), instead of only around the pointer
	// fetch of _ima_measurements_start() and _ima_measurements_next().
	ReadersHoldRCU bool
}

func (l Locking) serialize() bool      { return !l.KernelExact || l.SerializeRequests }
func (l Locking) gracePeriod() bool    { return !l.KernelExact || l.SynchronizeBeforeFree }
func (l Locking) readersHoldRCU() bool { return !l.KernelExact || l.ReadersHoldRCU }

// FaultKind names what a kernel-exact interleaving did wrong.
type FaultKind string

const (
	// UseAfterFree: an operation reached a record after D or N freed it.
	UseAfterFree FaultKind = "use after free"
	// ForeignHead: a list walk ran past the end of the records it was
	// walking into another list's head, which the kernel would take for a
	// record (list_next_or_null_rcu() compares only with its own head).
	ForeignHead FaultKind = "walk into a foreign list head"
	// CutOffList: N's __list_cut_position() at a record that is no longer
	// on ima_measurements, which links the current list's head into
	// another list.
	CutOffList FaultKind = "list cut at a record on another list"
)

// Fault is one thing a kernel-exact interleaving would have done to kernel
// memory. No kernel counterpart; the kernel would corrupt memory or crash
// where the model records a Fault.
type Fault struct {
	Kind FaultKind
	// Op is the operation that did it ("read current", "N", ...); By is
	// the operation whose earlier step made it wrong ("D", "A", "N").
	Op, By string
	// Detail says where, in the C's terms.
	Detail string
}

func (f Fault) String() string {
	return fmt.Sprintf("%s: %s (after %s): %s", f.Kind, f.Op, f.By, f.Detail)
}

// ErrFault is returned by an operation that stopped at a Fault.
var ErrFault = errors.New("measlist: kernel-exact fault")

// faultLog holds the faults of a kernel-exact queue.
type faultLog struct {
	mu     sync.Mutex
	faults []Fault
}

func (q *Queue) fault(f Fault) error {
	q.faultLog.mu.Lock()
	q.faultLog.faults = append(q.faultLog.faults, f)
	q.faultLog.mu.Unlock()
	return fmt.Errorf("%w: %v", ErrFault, f)
}

// Faults returns the faults recorded so far (always none outside
// kernel-exact mode, where the same situations cannot arise or panic).
func (q *Queue) Faults() []Fault {
	q.faultLog.mu.Lock()
	defer q.faultLog.mu.Unlock()
	return append([]Fault(nil), q.faultLog.faults...)
}

// Operation codes recorded on a freed record, so that a later access can
// name who freed it.
const (
	freedByNone uint8 = iota
	freedByD
	freedByN
)

// releasePoint and showPoint are the yield points of a release and of a
// reader's show(), as constants so that the paths pay nothing without a
// scheduler.
func releasePoint(by uint8) string {
	if by == freedByD {
		return "D: release"
	}
	return "N: release"
}

func showPoint(h Head) string {
	if h == Staged {
		return "read staged: show"
	}
	return "read current: show"
}

func freerName(b uint8) string {
	switch b {
	case freedByD:
		return "D"
	case freedByN:
		return "N"
	}
	return "?"
}

// yield is a preemption point: where the C can be interrupted between the
// statements that matter. It calls Hooks.Yield, if set. No kernel
// counterpart; it exists so that tests can force interleavings.
func (q *Queue) yield(point string) {
	if q.hooks != nil && q.hooks.Yield != nil {
		q.hooks.Yield(point)
	}
}

// lockWriter takes the request mutex when requests are serialised, and
// unlockWriter drops it. Under a scheduler (Hooks.Yield) it waits by
// yielding, so that a controlled interleaving never blocks inside the Go
// runtime.
//
// No kernel counterpart: the v7 code relies on ima_fs.c's per-task
// one-writer rule instead; this mutex is the model's default and the fix
// Locking.SerializeRequests proposes.
func (q *Queue) lockWriter() {
	if !q.cfg.Locking.serialize() {
		return
	}
	if q.hooks != nil && q.hooks.Yield != nil {
		for !q.writerMutex.TryLock() {
			q.yield("wait: request mutex")
		}
		return
	}
	q.writerMutex.Lock()
}

func (q *Queue) unlockWriter() {
	if q.cfg.Locking.serialize() {
		q.writerMutex.Unlock()
	}
}

// synchronize waits for a grace period where the locking has one, yielding
// while it waits under a scheduler.
//
// Mirrors kernel/rcu/tree.c:synchronize_rcu() before the frees of
// security/integrity/ima/ima_queue.c:ima_queue_delete(), which the v7 code
// does not call there ([PATCH v7 09/12]); the model's default does.
func (q *Queue) synchronize() {
	if !q.cfg.Locking.gracePeriod() {
		return
	}
	q.rcu.Synchronize()
}

// onList reports whether qe is on list l now. O(length of l): used only in
// kernel-exact mode, where the kernel would not check at all, to find out
// what the C's pointers would do. No kernel counterpart (CONFIG_DEBUG_LIST
// checks neighbours, not membership).
func (l *list) onList(qe *qentry) bool {
	for x := l.head.Load(); x != nil; x = x.next.Load() {
		if x == qe {
			return true
		}
	}
	return false
}
