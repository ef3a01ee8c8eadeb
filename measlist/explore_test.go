package measlist

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist/internal/explore"
)

// race is two operations of the kernel's writer (threads sharing its
// descriptors, which ima_fs.c's per-task rule does not exclude) on a queue
// prepared by setup.
type race struct {
	name  string
	setup func(f *fixture) // records added (and staged) before the race
	ops   []string         // "A", "D", "N2", "read current", "read staged", "add"
}

var races = []race{
	{"A vs N", addFour, []string{"N2", "A"}},
	{"N vs N", addFour, []string{"N2", "N3"}},
	{"D vs read staged", addFourStaged, []string{"D", "read staged"}},
	{"A vs read current", addFour, []string{"A", "read current"}},
	{"N vs read current", addFour, []string{"N2", "read current"}},
	{"D vs A", addFourStaged, []string{"D", "A"}},
	{"N vs add", addFour, []string{"N2", "add"}},
}

func addFour(f *fixture) { f.addFiles("/r", 4) }

func addFourStaged(f *fixture) {
	f.addFiles("/s", 4)
	if err := f.q.Stage(); err != nil {
		f.t.Fatal(err)
	}
	f.addFiles("/c", 1)
}

// lockings are the configurations explored: the model's default, the
// kernel's exact locking, and the kernel's with each proposed fix.
var lockings = []struct {
	name string
	l    Locking
}{
	{"default", Locking{}},
	{"kernel", Locking{KernelExact: true}},
	{"kernel+serialize", Locking{KernelExact: true, SerializeRequests: true}},
	{"kernel+synchronize", Locking{KernelExact: true, SynchronizeBeforeFree: true}},
	{"kernel+synchronize+readers-hold-rcu", Locking{KernelExact: true, SynchronizeBeforeFree: true, ReadersHoldRCU: true}},
}

// exploreRace enumerates every interleaving of r's operations under l and
// returns what went wrong.
func exploreRace(t *testing.T, r race, l Locking) explore.Result {
	t.Helper()
	setup := func(yield func(string)) explore.System {
		f := newFixture(t, Config{Kexec: true, Locking: l})
		r.setup(f)
		var mu sync.Mutex
		all := f.q.chainEntries() // every record, to account for each one
		deleted := 0              // records D and N reported deleted
		var ops []explore.Op
		for _, name := range r.ops {
			ops = append(ops, explore.Op{Name: name, Run: func() {
				n, err := runOp(f, name, &mu, &all)
				mu.Lock()
				deleted += n
				mu.Unlock()
				if err != nil && !expected(name, err) {
					t.Errorf("%s: %v", name, err)
				}
			}})
		}
		f.q.SetHooks(&Hooks{Yield: yield})
		return explore.System{Ops: ops, Check: func() error {
			if fs := f.q.Faults(); len(fs) > 0 {
				return errors.New(fs[0].String())
			}
			return f.q.checkConsistency(all, deleted)
		}}
	}
	return explore.Explore(setup, 5000)
}

// runOp runs one operation and returns how many records it says it
// deleted.
func runOp(f *fixture, name string, mu *sync.Mutex, all *[]*qentry) (int, error) {
	switch {
	case name == "A":
		return 0, f.q.Stage()
	case name == "D":
		return f.q.DeleteStaged()
	case strings.HasPrefix(name, "N"):
		var n int
		fmt.Sscanf(name, "N%d", &n)
		if err := f.q.DeletePartial(uint64(n)); err != nil {
			return 0, err
		}
		return n, nil
	case name == "add":
		e := fileEntry(f.t, f.l, "/added", "x", 10)
		err := f.q.Add(e)
		mu.Lock()
		*all = append(*all, f.q.findEntry(e))
		mu.Unlock()
		return 0, err
	case strings.HasPrefix(name, "read "):
		h := Current
		if name == "read staged" {
			h = Staged
		}
		f.q.Walk(h, 0, func(_ int, e *template.Entry) bool {
			_ = e.Fields[0] // show() reads the template data
			return true
		})
		return 0, nil
	}
	panic("unknown op " + name)
}

// expected reports whether err is one of the kernel's ordinary answers to
// name (which depend on the order), or a recorded fault.
func expected(name string, err error) bool {
	return errors.Is(err, ErrFault) || errors.Is(err, syscall.ENOENT) ||
		(name == "A" && errors.Is(err, syscall.EEXIST))
}

// chainEntries returns every record now on either list. No concurrency.
func (q *Queue) chainEntries() []*qentry {
	var out []*qentry
	for _, l := range []*list{&q.current, &q.staged} {
		for qe := l.head.Load(); qe != nil; qe = qe.next.Load() {
			out = append(out, qe)
		}
	}
	return out
}

// findEntry returns the queue entry of e, searching the current list.
func (q *Queue) findEntry(e *template.Entry) *qentry {
	q.extendListMutex.Lock()
	defer q.extendListMutex.Unlock()
	for qe := q.current.head.Load(); qe != nil; qe = qe.next.Load() {
		if qe.entry == e {
			return qe
		}
	}
	return nil
}

// checkConsistency checks, with every operation returned: each list is a
// chain of live records that ends (no cycle) and shares no record with the
// other; the counters equal the lengths; and every record of all is on a
// list or was freed, with as many freed as D and N reported.
func (q *Queue) checkConsistency(all []*qentry, deleted int) error {
	on := map[*qentry]Head{}
	for _, h := range []Head{Current, Staged} {
		n := 0
		for qe := q.list(h).head.Load(); qe != nil; qe = qe.next.Load() {
			if n++; n > len(all)+1 {
				return fmt.Errorf("the %s list does not end", h)
			}
			if other, ok := on[qe]; ok {
				return fmt.Errorf("a record is on both the %s and the %s list", other, h)
			}
			on[qe] = h
			if qe.state.Load() != live {
				return fmt.Errorf("a freed record (by %s) is still on the %s list", freerName(qe.freedBy), h)
			}
		}
		c := map[Head]Counter{Current: Binary, Staged: BinaryStaged}[h]
		if got := q.NumRecords(c); got != int64(n) {
			return fmt.Errorf("%v = %d, the %s list holds %d", c, got, h, n)
		}
	}
	freed := 0
	for _, qe := range all {
		if qe == nil {
			continue
		}
		_, listed := on[qe]
		switch {
		case qe.state.Load() != live:
			freed++
		case !listed:
			return errors.New("a live record is on no list (leaked, lost to the log)")
		}
	}
	if freed != deleted {
		return fmt.Errorf("%d records freed, D and N reported %d deleted", freed, deleted)
	}
	return nil
}

// failureKinds names the kinds of failure among res's schedules, sorted:
// the FaultKinds, and "counter" for a counter that disagrees with its list.
func failureKinds(res explore.Result) string {
	seen := map[string]bool{}
	for _, f := range res.Failures {
		k := "other: " + f.Err.Error()
		for _, fk := range []FaultKind{UseAfterFree, ForeignHead, CutOffList} {
			if strings.HasPrefix(f.Err.Error(), string(fk)) {
				k = string(fk)
			}
		}
		if strings.HasPrefix(f.Err.Error(), "BINARY") {
			k = "counter"
		}
		seen[k] = true
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// TestExploreRaces enumerates every interleaving of each race under each
// locking and checks which kinds of failure occur: none under the model's
// default and under the kernel's locking with requests serialised (readers
// included); under the kernel's own locking, the ones docs/FINDINGS.md
// describes, and which of them each partial fix leaves.
func TestExploreRaces(t *testing.T) {
	const (
		uaf     = string(UseAfterFree)
		foreign = string(ForeignHead)
		cut     = string(CutOffList)
	)
	kernel := map[string]string{
		"A vs N":            cut,
		"N vs N":            "counter, " + cut + ", " + uaf,
		"D vs read staged":  uaf + ", " + foreign,
		"A vs read current": foreign,
		"N vs read current": uaf + ", " + foreign,
	}
	want := map[string]map[string]string{
		"kernel": kernel,
		// synchronize_rcu() alone changes nothing: show() runs outside
		// the read-side section.
		"kernel+synchronize": kernel,
		// With readers inside RCU from start() to stop(), nothing is
		// used after free, but a reader still follows a moved list into
		// another head.
		"kernel+synchronize+readers-hold-rcu": {
			"A vs N":            cut,
			"N vs N":            "counter, " + cut + ", " + uaf,
			"D vs read staged":  foreign,
			"A vs read current": foreign,
			"N vs read current": foreign,
		},
	}
	for _, lk := range lockings {
		for _, r := range races {
			t.Run(lk.name+"/"+r.name, func(t *testing.T) {
				res := exploreRace(t, r, lk.l)
				if !res.Complete {
					t.Fatalf("%d schedules and not done", res.Schedules)
				}
				if got := failureKinds(res); got != want[lk.name][r.name] {
					t.Errorf("%d of %d schedules fail with [%s], want [%s]", len(res.Failures), res.Schedules, got, want[lk.name][r.name])
				}
				if testing.Verbose() && len(res.Failures) > 0 {
					t.Logf("%d of %d schedules fail; first: %v", len(res.Failures), res.Schedules, res.Failures[0])
				}
			})
		}
	}
}
