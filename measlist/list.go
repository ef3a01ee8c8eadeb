package measlist

import (
	"sync/atomic"

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
// in O(1), and returns the first of them. The detached chain's last link
// still points into l; releasers walk it by count.
//
// Mirrors include/linux/list.h:__list_cut_position().
//
// Preconditions: extendListMutex is held; last is in l.
func (l *list) cutLocked(last *qentry) *qentry {
	first := l.head.Load()
	rest := last.next.Load()
	l.head.Store(rest)
	if rest == nil {
		l.tail = nil
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
		if i >= pos && !fn(i, qe.entry) {
			return i + 1
		}
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
