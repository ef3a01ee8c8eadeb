package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
)

// collectorTID is the thread id of the collector daemon: a root process of
// its own, so that script tasks can hold the files against it.
const collectorTID = 100

func parseCollect(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	f := collector.Prompt
	switch {
	case len(a) == 0 || len(a) == 1 && a[0] == "prompt":
	case len(a) == 1 && a[0] == "n":
		f = collector.DeleteN
	default:
		return nil, errors.New("usage: collect [prompt | n]")
	}
	return func(x *execCtx) error { return x.collect(f) }, nil
}

// collect runs one cycle of the user-space collector (staging/collector),
// started at its first use with a store in a temporary directory. It
// prints "read R saved S", and the cycle's note if any. The kernel's
// refusals come back as errnos: ESTALE (a kexec is carrying the staged
// records; the copy is dropped), EACCES (measurement suspended) and EBUSY
// (another task holds the files; the collector tries once).
func (x *execCtx) collect(f collector.Flavour) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	m := x.m
	if m.coll == nil {
		dir, err := os.MkdirTemp("", "imasim-scenario-collector-")
		if err != nil {
			return err
		}
		c, err := collector.Open(dir, k.FS(staging.Root(collectorTID)), collector.Options{
			BootID: k.BootID(), Layout: k.Layout(), Retries: 1, Backoff: time.Microsecond,
		})
		if err != nil {
			os.RemoveAll(dir)
			return err
		}
		m.coll, m.collDir = c, dir
	}
	res, err := m.coll.CycleFlavour(f)
	fmt.Fprintf(&x.out, "read %d saved %d", res.Read, res.Saved)
	if res.Note != "" {
		fmt.Fprintf(&x.out, " (%s)", res.Note)
	}
	x.out.WriteString("\n")
	switch {
	case errors.Is(err, collector.ErrStale):
		return syscall.ESTALE
	case errors.Is(err, collector.ErrSuspended):
		return syscall.EACCES
	case errors.Is(err, collector.ErrBusy):
		return syscall.EBUSY
	}
	return err
}

// switchCollector points a running collector at the kernel that follows a
// kexec or a reboot, as a daemon restarted in the new kernel does.
func (m *machine) switchCollector(k *ima.Kernel, kind collector.BootKind) error {
	if m.coll == nil {
		return nil
	}
	return m.coll.SwitchKernel(k.FS(staging.Root(collectorTID)), k.BootID(), kind)
}

// collectedLog returns the collector's log since boot (its store, then
// the kernel's lists) with the template digests of slot.
func (m *machine) collectedLog(slot int) ([]byte, error) {
	var b bytes.Buffer
	if _, err := m.coll.WriteLog(&b, 0, collector.Binary, slot); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// shutdown stops the collector and removes its store.
func (m *machine) shutdown() {
	if m.coll != nil {
		m.coll.Close()
		os.RemoveAll(m.collDir)
		m.coll, m.collDir = nil, ""
	}
}
