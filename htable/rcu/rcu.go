// Package rcu is the model of the kernel's RCU grace periods that imasim's
// lock-free readers and writers share.
//
// Readers bracket each read-side critical section with ReadLock and
// ReadUnlock, as the kernel's rcu_read_lock() and rcu_read_unlock(); they
// never block and never take a writer's mutex. A writer that has unpublished
// something (swapped an atomic pointer, cut a list) calls Synchronize, the
// model of synchronize_rcu(): it returns only after every reader that was
// inside a critical section when it was called has left it. After that the
// writer may poison and drop what it unpublished, because no reader can
// still hold it.
//
// The implementation is a two-phase epoch counter: readers count themselves
// in the counter of the current epoch's parity; Synchronize flips the epoch
// and waits for the old parity's counter to drain. It favours simplicity over
// scalability; readers pay two atomic additions.
//
// No kernel counterpart as code; it stands in for kernel/rcu.
package rcu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Domain is one RCU domain. The zero value is ready to use.
type Domain struct {
	epoch   atomic.Uint64
	readers [2]atomic.Int64
	// mu serialises grace periods.
	mu sync.Mutex
	// wait, if set, is called instead of sleeping while a grace period
	// waits; set before the domain is shared.
	wait func()
}

// SetWait makes every grace period call wait, instead of sleeping, each
// time it finds a reader still inside (or another grace period under way).
// Call it before the domain is shared. No kernel counterpart; exists so
// that a test scheduler that runs one goroutine at a time can let the
// readers go on.
func (d *Domain) SetWait(wait func()) { d.wait = wait }

// Token identifies a read-side critical section; pass it to ReadUnlock.
type Token uint64

// ReadLock enters a read-side critical section.
//
// Mirrors include/linux/rcupdate.h:rcu_read_lock().
func (d *Domain) ReadLock() Token {
	for {
		e := d.epoch.Load()
		d.readers[e&1].Add(1)
		if d.epoch.Load() == e {
			return Token(e)
		}
		// A grace period started between the load and the count: count
		// in the new epoch instead, so Synchronize need not wait for us.
		d.readers[e&1].Add(-1)
	}
}

// ReadUnlock leaves the critical section entered by ReadLock.
//
// Mirrors include/linux/rcupdate.h:rcu_read_unlock().
func (d *Domain) ReadUnlock(t Token) {
	if d.readers[uint64(t)&1].Add(-1) < 0 {
		panic("rcu: ReadUnlock without ReadLock")
	}
}

// Synchronize waits until every reader that entered a critical section
// before the call has left it. Readers that enter later are not waited for.
//
// Mirrors kernel/rcu/tree.c:synchronize_rcu().
func (d *Domain) Synchronize() {
	wait := d.wait
	if wait == nil {
		spins := 0
		wait = func() {
			if spins++; spins < 64 {
				runtime.Gosched()
			} else {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	for !d.mu.TryLock() {
		wait()
	}
	defer d.mu.Unlock()
	old := d.epoch.Add(1) - 1
	for d.readers[old&1].Load() != 0 {
		wait()
	}
}

// Readers returns the number of readers inside a critical section now. No
// kernel counterpart; exists so that tests can assert quiescence.
func (d *Domain) Readers() int64 {
	return d.readers[0].Load() + d.readers[1].Load()
}
