package scenario

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
)

// points are the preemption points "at" can name: where the C can be
// interrupted between the statements that matter (measlist.Hooks.Yield).
var points = []string{"N: walked", "N: release", "D: release", "read current: show", "read staged: show"}

// armed is a command that runs, as another thread of the machine, when the
// next command reaches a preemption point.
type armed struct {
	point string
	run   action
}

// parseAt parses "at POINT COMMAND...": arm COMMAND to run once, as
// another thread, when the next command reaches POINT.
func parseAt(args []word) (action, error) {
	usage := fmt.Errorf("usage: at POINT COMMAND..., with POINT one of %q", points)
	if len(args) < 2 || args[0].op {
		return nil, usage
	}
	point := args[0].text
	known := false
	for _, p := range points {
		known = known || p == point
	}
	if !known {
		return nil, usage
	}
	inner, err := parseCommand(args[1:], false, false)
	if err != nil {
		return nil, err
	}
	return func(x *execCtx) error {
		if _, err := x.kernel(); err != nil {
			return err
		}
		x.m.armed = &armed{point: point, run: inner}
		return nil
	}, nil
}

// arm installs a on the kernel k for the command whose context is x, and
// returns the function that ends it once that command has returned.
//
// When the command reaches a.point, a's command starts in a goroutine of
// its own (another thread of the writer: it shares the machine's fds) and
// the first command waits until it has returned or must wait for the
// first (a "wait:" point: a mutex, a grace period); then the first goes
// on, and the second finishes after it. What the second printed, and its
// errno, are added to the first's output, each line starting "[POINT] ".
//
// No kernel counterpart; it exists so that a script can force the
// interleavings docs/FINDINGS.md describes.
func (m *machine) arm(a *armed, k *ima.Kernel, x *execCtx) (finish func()) {
	var (
		fired, inThread, free atomic.Bool
		done                  = make(chan struct{})
		blocked               = make(chan struct{})
		resume                = make(chan struct{})
		tx                    = &execCtx{m: m, task: staging.Root(1)}
		terr                  error
	)
	yield := func(p string) {
		if inThread.Load() {
			if !free.Load() && strings.HasPrefix(p, "wait:") {
				inThread.Store(false)
				blocked <- struct{}{}
				<-resume
			}
			return
		}
		if p != a.point || fired.Swap(true) {
			return
		}
		inThread.Store(true)
		go func() {
			defer close(done)
			terr = a.run(tx)
		}()
		select {
		case <-done:
		case <-blocked:
		}
		inThread.Store(false)
	}
	k.Queue().SetHooks(&measlist.Hooks{Yield: yield})
	return func() {
		defer k.Queue().SetHooks(nil)
		prefix := "[" + a.point + "] "
		if !fired.Load() {
			fmt.Fprintln(&x.out, prefix+"not reached")
			return
		}
		select {
		case <-done:
		default:
			free.Store(true)
			inThread.Store(true)
			resume <- struct{}{}
			<-done
		}
		for _, l := range splitOutput(tx.out.String()) {
			fmt.Fprintln(&x.out, prefix+l)
		}
		if terr != nil && !errors.Is(terr, measlist.ErrFault) {
			if e, ok := errnoOf(terr); ok {
				fmt.Fprintln(&x.out, prefix+"! "+errnoName(e))
			} else {
				fmt.Fprintln(&x.out, prefix+"error: "+terr.Error())
			}
		}
	}
}

// printFaults prints the kernel-exact faults k recorded since the last
// call, one "fault: ..." line each.
func (m *machine) printFaults(k *ima.Kernel, x *execCtx) {
	if m.faultsSeen == nil {
		m.faultsSeen = map[*ima.Kernel]int{}
	}
	fs := k.Queue().Faults()
	for _, f := range fs[m.faultsSeen[k]:] {
		fmt.Fprintf(&x.out, "fault: %s: %s (after %s)\n", f.Kind, f.Op, f.By)
	}
	m.faultsSeen[k] = len(fs)
}
