package measlist

import (
	"syscall"
	"time"

	"github.com/imasim/imasim/htable"
)

// Stage moves the whole current list to the staged list, in O(1) under the
// mutex, and moves the counters with it (the "A" request).
//
// Mirrors security/integrity/ima/ima_queue.c:ima_queue_stage() ([PATCH v7 09/12]).
//
// Errors, checked in this order: syscall.EEXIST if records are already
// staged; syscall.ENOENT if the current list is empty; syscall.EACCES if
// measurement is suspended.
func (q *Queue) Stage() error {
	q.lockWriter()
	defer q.unlockWriter()
	start := q.lockTimed()
	defer q.unlockTimed(start)
	if !q.staged.emptyLocked() {
		return syscall.EEXIST
	}
	if q.current.emptyLocked() {
		return syscall.ENOENT
	}
	if q.suspended {
		return syscall.EACCES
	}
	q.current.replaceLocked(&q.staged)
	q.numRecords[BinaryStaged].Store(q.numRecords[Binary].Load())
	q.numRecords[Binary].Store(0)
	if q.cfg.Kexec {
		q.binaryRuntimeSize[BinaryStaged] = q.binaryRuntimeSize[Binary]
		q.binaryRuntimeSize[Binary] = 0
	}
	q.bumpGenerationLocked()
	return nil
}

// DeleteStaged detaches every staged record under the mutex, flushes the
// hash table there if ima_flush_htable is set, and releases the records
// after dropping it (the "D" request). It returns the number of records
// deleted.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_queue_staged_delete_all()
// ([PATCH v7 09/12, 10/12]).
//
// Errors: syscall.ENOENT if nothing is staged; syscall.ESTALE if
// measurement is suspended (the records are being carried over by kexec);
// syscall.ENOMEM if the flush cannot allocate the new bucket array. In that
// last case, as in the kernel, the staged records have already been
// detached and the counters zeroed: they are in no list any more and are
// never released (docs/SPEC.md Q3).
//
// Differences from Linux: the release waits for a grace period first (see
// releaseDetached).
func (q *Queue) DeleteStaged() (int, error) {
	q.lockWriter()
	defer q.unlockWriter()
	start := q.lockTimed()
	if q.staged.emptyLocked() {
		q.unlockTimed(start)
		return 0, syscall.ENOENT
	}
	if q.suspended {
		q.unlockTimed(start)
		return 0, syscall.ESTALE
	}
	last := q.staged.tail
	first := q.staged.detachLocked()
	q.bumpGenerationLocked()
	n := q.numRecords[BinaryStaged].Swap(0)
	if q.cfg.Kexec {
		q.binaryRuntimeSize[BinaryStaged] = 0
	}
	var old *htable.Array[*qentry]
	if q.flush {
		var err error
		if old, err = q.ht.ReplaceLocked(); err != nil {
			q.unlockTimed(start)
			q.loseDetached(first, int(n))
			return 0, syscall.ENOMEM
		}
	}
	q.unlockTimed(start)

	if q.flush {
		q.ht.Release(old) // synchronize_rcu(); kfree(old_queue);
	}
	q.releaseDetached(first, last, int(n), q.flush, freedByD)
	return int(n), nil
}

// DeletePartial deletes the first n records of the current list (the "N"
// request): a lock-free walk finds the n-th record and sums the sizes, then
// an O(1) cut under the mutex detaches them, and they are released after
// the mutex is dropped. The hash table is never flushed on this path.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_queue_delete_partial()
// ([PATCH v7 11/12]).
//
// Errors: syscall.ENOENT if the current list holds fewer than n records at
// walk time (nothing changes); syscall.ESTALE if measurement is suspended
// when the mutex is taken (nothing changes). n == 0 is refused by the
// caller (ima_fs.c) with EINVAL, and here too.
//
// Differences from Linux (unless Locking.KernelExact): the walk runs
// inside an RCU read-side section (the kernel walks without one, relying on
// the one-writer rule of ima_fs.c), and the release waits for a grace
// period first. In kernel-exact mode a walk or cut that would touch a freed
// record, or cut at a record that has left the current list, stops with a
// Fault and ErrFault instead.
func (q *Queue) DeletePartial(n uint64) error {
	if n == 0 {
		return syscall.EINVAL
	}
	q.lockWriter()
	defer q.unlockWriter()
	exact := q.cfg.Locking.KernelExact
	var (
		last      *qentry
		remaining = n
		size      uint64
	)
	tok := q.rcu.ReadLock()
	for qe := q.current.head.Load(); qe != nil; qe = qe.next.Load() {
		if exact && qe.state.Load() != live {
			q.rcu.ReadUnlock(tok)
			return q.fault(Fault{Kind: UseAfterFree, Op: "N", By: freerName(qe.freedBy), Detail: "list_for_each_entry_rcu() walk of ima_measurements reached a freed record"})
		}
		size += uint64(qe.entry.BinaryRuntimeSize())
		last = qe
		if remaining--; remaining == 0 {
			break
		}
	}
	q.rcu.ReadUnlock(tok)
	if remaining > 0 {
		return syscall.ENOENT // not enough records to delete
	}
	if q.hooks != nil && q.hooks.AfterPartialWalk != nil {
		q.hooks.AfterPartialWalk()
	}
	q.yield("N: walked")

	start := q.lockTimed()
	if q.suspended {
		q.unlockTimed(start)
		return syscall.ESTALE
	}
	// last remains valid because ima_fs.c enforces single-writer
	// exclusion: nothing but appends changed the current list since the
	// walk. In kernel-exact mode that is checked, as the kernel does not.
	if exact {
		if err := q.checkCutLocked(last); err != nil {
			q.unlockTimed(start)
			return err
		}
	}
	first := q.current.cutLocked(last, exact)
	q.bumpGenerationLocked()
	q.numRecords[Binary].Add(-int64(n))
	if q.cfg.Kexec {
		q.binaryRuntimeSize[Binary] -= size
	}
	q.unlockTimed(start)

	q.releaseDetached(first, last, int(n), false, freedByN)
	return nil
}

// checkCutLocked records the Fault that __list_cut_position() at last
// would cause, if last is no longer a live record of the current list.
// O(length of the current list); kernel-exact mode only.
//
// Preconditions: extendListMutex is held.
func (q *Queue) checkCutLocked(last *qentry) error {
	if last.state.Load() != live {
		return q.fault(Fault{Kind: UseAfterFree, Op: "N", By: freerName(last.freedBy),
			Detail: "__list_cut_position() at the ima_queue_entry the walk found, since freed"})
	}
	if !q.current.onList(last) {
		by := "N"
		if q.staged.onList(last) {
			by = "A"
		}
		return q.fault(Fault{Kind: CutOffList, Op: "N", By: by,
			Detail: "__list_cut_position(&trim, &ima_measurements, &qe->later) with qe off ima_measurements: the current list's head is linked into the other list and trim starts at ima_measurements"})
	}
	return nil
}

// releaseDetached releases the records from first to last (at most count
// of them), which are in no list any more: their template data always; the
// whole record when the hash table is flushed or disabled (otherwise the
// hash table still references the queue entry, the template entry and its
// digests). by names the operation, for kernel-exact fault reports.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_queue_delete() ([PATCH v7
// 09/12, 10/12]).
//
// Differences from Linux:
//   - It first waits for a grace period (unless Locking.KernelExact
//     without SynchronizeBeforeFree). The kernel frees without one,
//     because ima_fs.c lets no reader open a list file while the writer
//     exists; the model's Walk may run concurrently with any operation, so
//     it waits for walkers that might still be on the detached chain. With
//     the securityfs exclusion in place the wait is immediate.
//   - Freeing is modelled by poisoning: the template data is dropped (the
//     entry's fields become nil) and the record is marked, so that a reader
//     that still reached it would fail loudly; the garbage collector
//     reclaims what is no longer referenced.
//   - Records restored by kexec are not in the hash table, yet without a
//     flush the kernel keeps their queue and template entries allocated
//     ("No leak if condition is false, referenced by ima_htable" does not
//     hold for them). The model marks them the same way; see
//     docs/FINDINGS.md.
//
// Preconditions: extendListMutex is not held.
func (q *Queue) releaseDetached(first, last *qentry, count int, flushHtable bool, by uint8) {
	if q.hooks != nil && q.hooks.BeforeRelease != nil {
		q.hooks.BeforeRelease()
	}
	q.yield(releasePoint(by))
	q.synchronize()
	full := q.cfg.HtableDisabled || flushHtable
	slots := q.layout.NumSlots()
	var lists, retained int64
	qe := first
	for i := 0; i < count && qe != nil; i++ {
		next := qe.next.Load()
		e := qe.entry
		live, kept := RecordFootprint(e, slots)
		lists += int64(live)
		if !full {
			retained += int64(kept)
		}
		for j := range e.Fields {
			e.Fields[j] = nil
		}
		qe.freedBy = by
		if full {
			qe.state.Store(freed)
			qe.entry = nil
		} else {
			qe.state.Store(dataFreed)
		}
		qe.next.Store(nil) // list_del()
		if qe == last {
			break
		}
		qe = next
	}
	// One atomic add each rather than one per record: Add updates the same
	// counters, and a cache line bounced between the adders and the
	// release at every record slowed both (BenchmarkAddDuringRelease).
	q.kmem.lists.Add(-lists)
	q.kmem.retained.Add(retained)
}

// loseDetached accounts for count records starting at first that a failed
// flush detached and nothing will free (docs/SPEC.md Q3): they move from the lists'
// memory to the lost memory. The records themselves are left as they are.
func (q *Queue) loseDetached(first *qentry, count int) {
	slots := q.layout.NumSlots()
	qe := first
	for i := 0; i < count && qe != nil; i++ {
		live, _ := RecordFootprint(qe.entry, slots)
		q.kmem.lists.Add(-int64(live))
		q.kmem.lost.Add(int64(live))
		qe = qe.next.Load()
	}
}

// bumpGenerationLocked announces that records left a list or moved
// between lists. It must come after the change: WalkAt reads the
// generation before a list's head, so a bump made first would let a
// reader see the new generation with the old list and save a cursor that
// later walks trust, pointing at a record since staged or released. Bumped
// after, a reader that still sees the old generation is inside a read-side
// section that began before the change, so the release waits for it too.
//
// Preconditions: extendListMutex is held.
func (q *Queue) bumpGenerationLocked() { q.generation.Add(1) }

// lockTimed takes extendListMutex and returns when it got it; unlockTimed
// drops it and records how long it was held (LastHold). Used by the
// staging operations only, so that the add path pays nothing. Nothing is
// allocated while the mutex is held: an allocation during a garbage
// collection's mark phase may have to assist the collector, which would
// make the hold grow with the heap, that is with the lists.
func (q *Queue) lockTimed() (start time.Time) {
	q.extendListMutex.Lock()
	return time.Now()
}

func (q *Queue) unlockTimed(start time.Time) {
	q.lastHold.Store(int64(time.Since(start)))
	q.extendListMutex.Unlock()
}

// LastHold returns how long the last Stage, DeleteStaged or DeletePartial
// held the extend-list mutex. No kernel counterpart; exists so that
// benchmarks can show the hold time does not grow with the list.
func (q *Queue) LastHold() time.Duration { return time.Duration(q.lastHold.Load()) }
