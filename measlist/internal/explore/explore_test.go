package explore

import (
	"fmt"
	"sync"
	"testing"
)

// counterSetup is two increments of a shared counter, each a read and a
// write with a preemption point between them: the classic lost update.
// With lock set each increment holds a mutex across both, waiting by
// yielding.
func counterSetup(lock bool) Setup {
	return func(yield func(string)) System {
		var n int
		var mu sync.Mutex
		inc := func() {
			if lock {
				for !mu.TryLock() {
					yield("wait: mutex")
				}
				defer mu.Unlock()
			}
			v := n
			yield("read")
			n = v + 1
		}
		return System{
			Ops: []Op{{"inc1", inc}, {"inc2", inc}},
			Check: func() error {
				if n != 2 {
					return fmt.Errorf("n = %d, want 2", n)
				}
				return nil
			},
		}
	}
}

func TestLostUpdate(t *testing.T) {
	res := Explore(counterSetup(false), 100)
	if !res.Complete {
		t.Fatal("not complete")
	}
	// Each op has two steps (start, after "read"): C(4,2) = 6 orders.
	if res.Schedules != 6 {
		t.Errorf("%d schedules, want 6", res.Schedules)
	}
	// The update is lost when both read before either writes: 4 orders.
	if len(res.Failures) != 4 {
		t.Errorf("%d failures, want 4: %v", len(res.Failures), res.Failures)
	}
}

func TestLockedNoFailure(t *testing.T) {
	res := Explore(counterSetup(true), 100)
	if !res.Complete || len(res.Failures) != 0 {
		t.Errorf("complete %v, failures %v; want complete and none", res.Complete, res.Failures)
	}
}

func TestDeadlockReported(t *testing.T) {
	setup := func(yield func(string)) System {
		return System{Ops: []Op{{"stuck", func() {
			for {
				yield("wait: forever")
			}
		}}}}
	}
	res := Explore(setup, 10)
	if len(res.Failures) == 0 {
		t.Fatalf("failures %v, want a deadlock", res.Failures)
	}
	if got := res.Failures[0].Err.Error(); got != "deadlock: stuck at wait: forever" {
		t.Errorf("got %q", got)
	}
}
