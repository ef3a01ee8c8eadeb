// Package explore runs a few operations in goroutines one step at a time
// and enumerates every order of their steps: a small stateless model
// checker in the manner of CHESS. The operations mark their preemption
// points by calling the Yield function a System gets; between two points a
// goroutine runs alone.
//
// A point whose name starts with "wait:" says the goroutine cannot go on
// until another one moves (a mutex, a grace period); such a goroutine is
// not scheduled again until another one has taken a step, so waiting does
// not multiply the schedules.
//
// No kernel counterpart; it exists so that the kernel-exact mode of
// measlist (and the layers above) can force every interleaving of two or
// three short operations and report each one that goes wrong.
package explore

import (
	"fmt"
	"strings"
)

// A System is one fresh run: its operations, each run in its own
// goroutine, and the check made after all of them have returned.
type System struct {
	// Ops are the operations, by name.
	Ops []Op
	// Check reports what is wrong once every operation has returned (nil
	// if nothing is).
	Check func() error
}

// Op is one operation of a System.
type Op struct {
	Name string
	Run  func()
}

// Setup builds a fresh System whose operations call yield at their
// preemption points.
type Setup func(yield func(point string)) System

// Failure is one schedule whose run went wrong.
type Failure struct {
	// Trace is the schedule: "op@point" for every step, in order.
	Trace []string
	Err   error
}

func (f Failure) String() string {
	return fmt.Sprintf("%v\n\tschedule: %s", f.Err, strings.Join(f.Trace, " -> "))
}

// Result is what Explore found.
type Result struct {
	Schedules int
	Failures  []Failure
	// Complete is false when maxSchedules cut the enumeration short.
	Complete bool
}

type event struct {
	op    int
	point string
	done  bool
}

// maxSteps bounds one schedule; a run that needs more is reported as a
// livelock.
const maxSteps = 10000

// Explore runs setup's system once per schedule until every order of
// steps has been tried or maxSchedules runs have been made.
func Explore(setup Setup, maxSchedules int) Result {
	var res Result
	var prefix []int
	for res.Schedules < maxSchedules {
		choices, options, fail := runOnce(setup, prefix)
		res.Schedules++
		if fail != nil {
			res.Failures = append(res.Failures, *fail)
		}
		// Backtrack: the last choice that has an untried alternative.
		i := len(choices) - 1
		for i >= 0 && choices[i]+1 >= options[i] {
			i--
		}
		if i < 0 {
			res.Complete = true
			return res
		}
		prefix = append(append([]int(nil), choices[:i]...), choices[i]+1)
	}
	return res
}

// runOnce runs one schedule: prefix's choices first, then always the first
// enabled operation. It returns the choices made and how many there were
// at each step.
func runOnce(setup Setup, prefix []int) (choices, options []int, fail *Failure) {
	events := make(chan event)
	var resume []chan struct{}
	current := -1
	yield := func(point string) {
		me := current
		events <- event{op: me, point: point}
		<-resume[me]
	}
	sys := setup(yield)
	n := len(sys.Ops)
	resume = make([]chan struct{}, n)
	for i := range resume {
		resume[i] = make(chan struct{})
	}
	for i, op := range sys.Ops {
		go func() {
			<-resume[i]
			op.Run()
			events <- event{op: i, done: true}
		}()
	}
	point := make([]string, n) // where each op is paused
	for i := range point {
		point[i] = "start"
	}
	done := make([]bool, n)
	waitedAt := make([]int, n) // step at which a waiting op last yielded
	for i := range waitedAt {
		waitedAt[i] = -1
	}
	var trace []string
	left := n
	for step := 0; left > 0; step++ {
		var enabled []int
		for i := range n {
			if !done[i] && (waitedAt[i] < 0 || waitedAt[i] < step-1) {
				enabled = append(enabled, i)
			}
		}
		if len(enabled) == 0 || step >= maxSteps {
			what := "deadlock"
			if step >= maxSteps {
				what = "livelock"
			}
			// Leave the goroutines blocked: the run is lost anyway, and
			// the failure says so.
			return choices, options, &Failure{Trace: trace, Err: fmt.Errorf("%s: %v", what, pausedAt(sys.Ops, point, done))}
		}
		c := 0
		if len(choices) < len(prefix) {
			c = prefix[len(choices)]
		}
		choices = append(choices, c)
		options = append(options, len(enabled))
		op := enabled[c]
		trace = append(trace, sys.Ops[op].Name+"@"+point[op])
		current = op
		resume[op] <- struct{}{}
		ev := <-events
		if ev.done {
			done[op] = true
			left--
			continue
		}
		point[op] = ev.point
		waitedAt[op] = -1
		if strings.HasPrefix(ev.point, "wait:") {
			waitedAt[op] = step
		}
	}
	if sys.Check != nil {
		if err := sys.Check(); err != nil {
			return choices, options, &Failure{Trace: trace, Err: err}
		}
	}
	return choices, options, nil
}

func pausedAt(ops []Op, point []string, done []bool) string {
	var parts []string
	for i, op := range ops {
		if !done[i] {
			parts = append(parts, op.Name+" at "+point[i])
		}
	}
	return strings.Join(parts, ", ")
}
