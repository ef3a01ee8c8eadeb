package htable

import (
	"bytes"
	"errors"
	"sync/atomic"

	"github.com/imasim/imasim/htable/rcu"
)

// Bits and Size are IMA_HASH_BITS and IMA_MEASURE_HTABLE_SIZE (ima.h).
const (
	Bits = 10
	Size = 1 << Bits
)

// Key returns the bucket of a template digest: (d[0] | d[1] << 8) % 1024.
//
// Mirrors security/integrity/ima/ima.h:ima_hash_key().
func Key(digest []byte) int {
	var k uint
	if len(digest) > 0 {
		k = uint(digest[0])
	}
	if len(digest) > 1 {
		k |= uint(digest[1]) << 8
	}
	return int(k % Size)
}

// node is one hash-chain link: the struct ima_queue_entry's hnext, with the
// key it is found by. Nodes are immutable once published.
type node[V any] struct {
	digest []byte
	pcr    uint32
	value  V
	next   *node[V]
}

// Array is one bucket array, the object the kernel kcalloc()s in
// ima_alloc_replace_htable() and kfree()s after a grace period.
type Array[V any] struct {
	heads [Size]atomic.Pointer[node[V]]
	// released is set when the array is poisoned: after the grace period
	// that follows its replacement. A reader that reaches it then fails
	// loudly.
	released atomic.Bool
	n        atomic.Int64
}

// Len returns the number of keys inserted in the array.
func (a *Array[V]) Len() int { return int(a.n.Load()) }

// ErrNoMemory is what an injected allocation failure returns, as kcalloc()
// failing makes ima_alloc_replace_htable() return -ENOMEM.
var ErrNoMemory = errors.New("htable: cannot allocate bucket array")

// Table is the RCU-published pointer to the current bucket array, the
// kernel's `struct hlist_head __rcu *ima_htable`.
//
// Readers (Lookup) take no writer lock: they enter an RCU read-side
// critical section of the table's domain and see either the old or the new
// array across a replacement, never a released one. Writers (InsertLocked,
// ReplaceLocked) must hold the queue's extend-list mutex; the table does
// not own that mutex, exactly as ima_htable does not own
// ima_extend_list_mutex.
type Table[V any] struct {
	rcu *rcu.Domain
	cur atomic.Pointer[Array[V]]

	// FailAlloc, when set, is consulted before every allocation of a bucket
	// array; returning true makes the allocation fail with ErrNoMemory.
	// No kernel counterpart; exists so that tests can reach the -ENOMEM
	// paths (docs/SPEC.md Q3). Set it before the table is shared.
	FailAlloc func() bool
}

// New returns a table with no bucket array yet, using domain for its grace
// periods. The kernel allocates the first array in ima_init_htable(): call
// ReplaceLocked under the extend-list mutex, then Release the nil it
// returns after dropping the mutex, as measlist.New does.
func New[V any](domain *rcu.Domain) *Table[V] {
	return &Table[V]{rcu: domain}
}

// Current returns the published array (for statistics and tests).
func (t *Table[V]) Current() *Array[V] { return t.cur.Load() }

// Lookup returns the value stored under (digest, pcr): a full-digest match
// and an equal PCR, as ima_lookup_digest_entry() requires.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_lookup_digest_entry()
// ([PATCH v7 02/12]: rcu_dereference of the array inside rcu_read_lock).
func (t *Table[V]) Lookup(digest []byte, pcr uint32) (V, bool) {
	tok := t.rcu.ReadLock()
	defer t.rcu.ReadUnlock(tok)
	var zero V
	arr := t.cur.Load()
	if arr == nil {
		return zero, false
	}
	if arr.released.Load() {
		panic("htable: reader reached a released bucket array (use after free)")
	}
	for n := arr.heads[Key(digest)].Load(); n != nil; n = n.next {
		if n.pcr == pcr && bytes.Equal(n.digest, digest) {
			return n.value, true
		}
	}
	return zero, false
}

// InsertLocked adds (digest, pcr) → value at the head of its bucket. The
// digest is not copied; the caller must not change it afterwards.
//
// Mirrors the hlist_add_head_rcu() of
// security/integrity/ima/ima_queue.c:ima_add_digest_entry() ([PATCH v7 02/12]).
//
// Preconditions: the caller holds the extend-list mutex; the first array
// is published (ReplaceLocked has run).
func (t *Table[V]) InsertLocked(digest []byte, pcr uint32, value V) {
	arr := t.cur.Load()
	k := Key(digest)
	arr.heads[k].Store(&node[V]{digest: digest, pcr: pcr, value: value, next: arr.heads[k].Load()})
	arr.n.Add(1)
}

// ReplaceLocked allocates an empty array, publishes it, and returns the old
// one (nil at init). The caller must pass the old array to Release after
// dropping the mutex.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_alloc_replace_htable()
// ([PATCH v7 02/12]).
//
// Differences from Linux: allocation fails only when FailAlloc says so.
//
// Preconditions: the caller holds the extend-list mutex.
func (t *Table[V]) ReplaceLocked() (*Array[V], error) {
	if t.FailAlloc != nil && t.FailAlloc() {
		return nil, ErrNoMemory
	}
	return t.cur.Swap(new(Array[V])), nil
}

// Release waits for a grace period and then poisons old, so that the
// garbage collector can reclaim it and any reader that still reached it
// would fail. A nil array is a no-op after the grace period, as kfree(NULL).
//
// Mirrors the synchronize_rcu(); kfree(old) pair that follows
// ima_alloc_replace_htable() in ima_init_htable() and
// ima_queue_staged_delete_all() ([PATCH v7 02/12, 10/12]).
//
// Preconditions: the extend-list mutex is not held.
func (t *Table[V]) Release(old *Array[V]) {
	t.rcu.Synchronize()
	if old == nil {
		return
	}
	old.released.Store(true)
	for i := range old.heads {
		old.heads[i].Store(nil)
	}
}
