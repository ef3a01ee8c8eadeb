package measlist

import (
	"sync/atomic"

	"github.com/imasim/imasim/htable/rcu"
	"github.com/imasim/imasim/ima/template"
)

// qentry is struct ima_queue_entry: the list link ("later"), and the entry.
// The hash-table link lives in the htable package's node.
type qentry struct {
	// next is the "later" link; published with Store so that lock-free
	// readers see a fully built qentry (list_add_tail_rcu).
	next  atomic.Pointer[qentry]
	entry *template.Entry
	// inHtable records whether the hash table references this record
	// (every live record unless CONFIG_IMA_DISABLE_HTABLE; never a
	// restored one). Set under the mutex before publication.
	inHtable bool
	// state is live, dataFreed (template data released, the rest kept
	// for the hash table) or freed (everything released). A reader that
	// reaches a record that is not live fails loudly.
	state atomic.Int32
	// freedBy names the operation that released the record (freedByD,
	// freedByN), so that a kernel-exact use after free can name it. Set
	// before state.
	freedBy uint8
}

const (
	live int32 = iota
	dataFreed
	freed
)

// list is a struct list_head with its tail cached: a singly linked chain
// whose head is published atomically.
type list struct {
	head atomic.Pointer[qentry]
	tail *qentry // protected by extendListMutex
}

// appendLocked links qe at the tail.
//
// Mirrors include/linux/rculist.h:list_add_tail_rcu().
//
// Preconditions: extendListMutex is held.
func (l *list) appendLocked(qe *qentry) {
	if l.tail == nil {
		l.head.Store(qe)
	} else {
		l.tail.next.Store(qe)
	}
	l.tail = qe
}

// emptyLocked reports list_empty().
//
// Preconditions: extendListMutex is held.
func (l *list) emptyLocked() bool { return l.tail == nil }

// replaceLocked moves the whole chain of l to dst (which must be empty)
// and re-initialises l, in O(1).
//
// Mirrors include/linux/list.h:list_replace() followed by INIT_LIST_HEAD().
//
// Preconditions: extendListMutex is held.
func (l *list) replaceLocked(dst *list) {
	dst.head.Store(l.head.Load())
	dst.tail = l.tail
	l.head.Store(nil)
	l.tail = nil
}

// detachLocked empties l and returns its first record, in O(1); the
// detached chain is walked by count.
//
// Mirrors include/linux/list.h:list_replace() into a local head followed
// by INIT_LIST_HEAD(), without the local head, which would escape to the
// heap and be allocated under the mutex.
//
// Preconditions: extendListMutex is held.
func (l *list) detachLocked() *qentry {
	first := l.head.Load()
	l.head.Store(nil)
	l.tail = nil
	return first
}

// cutLocked detaches the records from the head up to and including last,
// in O(1), and returns the first of them. With endChain the detached
// chain ends at last, as the kernel's trim list does (entry->next = list);
// otherwise last's link still points into l, so that a reader that is on
// the detached records in the safe model walks on into l.
//
// Mirrors include/linux/list.h:__list_cut_position().
//
// Preconditions: extendListMutex is held; last is in l.
func (l *list) cutLocked(last *qentry, endChain bool) *qentry {
	first := l.head.Load()
	rest := last.next.Load()
	l.head.Store(rest)
	if rest == nil {
		l.tail = nil
	}
	if endChain {
		last.next.Store(nil)
	}
	return first
}

// Head selects one of the two lists.
type Head int

const (
	// Current is ima_measurements, the list the original files show.
	Current Head = iota
	// Staged is ima_measurements_staged, the list the _staged files show.
	Staged
)

func (h Head) String() string {
	if h == Staged {
		return "staged"
	}
	return "current"
}

func (q *Queue) list(h Head) *list {
	if h == Staged {
		return &q.staged
	}
	return &q.current
}

// Walk calls fn for the records of list h from position pos on, in order,
// until fn returns false or the list ends, inside one RCU read-side
// critical section. It returns the position after the last record passed
// to fn. The entry passed to fn must not be used after fn returns.
//
// Mirrors the seq_file iteration of security/integrity/ima/ima_fs.c:
// _ima_measurements_start() and _ima_measurements_next() ([PATCH v7
// 05/12]): a walk by position index from the head, under rcu_read_lock.
//
// What a walker may see: a prefix of the list as it stood when the walk
// began, possibly followed by records appended meanwhile; if records are
// staged or deleted during the walk, the rest of the old chain (records
// that were there when the walk started). Never a released record: releases
// wait for a grace period, and a walker that reached one would panic.
func (q *Queue) Walk(h Head, pos int, fn func(index int, e *template.Entry) bool) int {
	return q.WalkAt(h, pos, nil, fn)
}

// Cursor remembers the last record a walk of one list visited, so that the
// next walk from a later position need not start from the head. The zero
// value is an empty cursor.
type Cursor struct {
	head  Head
	gen   uint64
	index int
	qe    *qentry
}

// WalkAt is Walk starting from the record c remembers when that is on list
// h at or before pos and no record has left a list or moved between lists
// since (the same generation); otherwise it walks from the head. It leaves
// c at the last record visited. c may be nil.
//
// Differences from Linux: the kernel re-walks from the head on every
// read() call; resuming gives the same records at the same positions,
// because a record keeps its position until a generation change, and turns
// a full read of the list from quadratic into linear time.
func (q *Queue) WalkAt(h Head, pos int, c *Cursor, fn func(index int, e *template.Entry) bool) int {
	if q.cfg.Locking.KernelExact {
		return q.walkExact(h, pos, fn)
	}
	tok := q.rcu.ReadLock()
	defer q.rcu.ReadUnlock(tok)
	gen := q.generation.Load()
	qe, i := q.list(h).head.Load(), 0
	if c != nil && c.qe != nil && c.head == h && c.gen == gen && c.index <= pos {
		qe, i = c.qe, c.index
	}
	for ; qe != nil; qe = qe.next.Load() {
		if qe.state.Load() != live {
			panic("measlist: reader reached a released record (use after free)")
		}
		if c != nil {
			*c = Cursor{head: h, gen: gen, index: i, qe: qe}
		}
		if i >= pos {
			q.yield(showPoint(h))
			if !fn(i, qe.entry) {
				return i + 1
			}
		}
		i++
	}
	return i
}

// walkExact is WalkAt in kernel-exact mode: a walk from the head to pos
// (_ima_measurements_start()), then for each record show() and a step to
// the next one (_ima_measurements_next()), each fetch inside its own
// read-side section and show() outside it, unless Locking.ReadersHoldRCU
// keeps one section from start to stop. A record that is no longer live
// when it is shown or stepped from, or the end of a chain whose records
// have left list h, is recorded as a Fault and ends the walk, as the kernel
// would have read freed memory or a foreign list head there.
//
// Mirrors security/integrity/ima/ima_fs.c:_ima_measurements_start(),
// _ima_measurements_next() and ima_measurements_show() ([PATCH v7 05/12]).
func (q *Queue) walkExact(h Head, pos int, fn func(index int, e *template.Entry) bool) int {
	op := "read " + h.String()
	if q.cfg.Locking.SerializeRequests {
		// The fix that excludes requests also excludes the writer's own
		// reads, from start() to stop().
		q.lockWriter()
		defer q.unlockWriter()
	}
	hold := q.cfg.Locking.readersHoldRCU()
	var tok rcu.Token
	lock := func() {
		if !hold {
			tok = q.rcu.ReadLock()
		}
	}
	unlock := func() {
		if !hold {
			q.rcu.ReadUnlock(tok)
		}
	}
	if hold {
		tok = q.rcu.ReadLock()
		defer q.rcu.ReadUnlock(tok)
	}
	// step returns the record after qe, or nil at the end of list h; ok
	// is false where the kernel would have gone wrong.
	step := func(qe *qentry) (next *qentry, ok bool) {
		if qe.state.Load() != live {
			_ = q.fault(Fault{Kind: UseAfterFree, Op: op, By: freerName(qe.freedBy), Detail: "list_next_or_null_rcu() from a freed ima_queue_entry"})
			return nil, false
		}
		next = qe.next.Load()
		if next == nil && !q.list(h).onList(qe) {
			by := "A or N" // what moves records off the current list
			if h == Staged {
				by = "D"
			}
			_ = q.fault(Fault{Kind: ForeignHead, Op: op, By: by, Detail: "the walk left " + h.String() + " with the records it was on; the next pointer is another list's head"})
			return nil, false
		}
		return next, true
	}
	lock()
	qe, i := q.list(h).head.Load(), 0
	for ; qe != nil && i < pos; i++ {
		var ok bool
		if qe, ok = step(qe); !ok {
			unlock()
			return i
		}
	}
	unlock()
	for qe != nil {
		q.yield(showPoint(h))
		if qe.state.Load() != live {
			_ = q.fault(Fault{Kind: UseAfterFree, Op: op, By: freerName(qe.freedBy), Detail: "ima_measurements_show() of a freed record"})
			return i
		}
		if !fn(i, qe.entry) {
			return i + 1
		}
		lock()
		next, ok := step(qe)
		unlock()
		if !ok {
			return i + 1
		}
		qe = next
		i++
	}
	return i
}

// Entries returns the entries of list h as they are now. No kernel
// counterpart; a convenience for tests and examples. The entries must not
// be used after a deletion that releases them.
func (q *Queue) Entries(h Head) []*template.Entry {
	var out []*template.Entry
	q.Walk(h, 0, func(_ int, e *template.Entry) bool {
		out = append(out, e)
		return true
	})
	return out
}
