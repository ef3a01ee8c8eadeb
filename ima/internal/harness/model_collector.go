package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging/collector"
)

// The model of staging/collector, as its documentation describes a cycle
// (collector/doc.go), for a collector opened with Retries 1 (an EBUSY open
// fails at once with ErrBusy) and no Cover and no hooks. The collector is
// user space: what is modelled here is its protocol with the kernel files
// and the fate of each batch in its store, not its file format.

// collOpen opens name on kernel k as the collector's task; EBUSY becomes
// ErrBusy as openRetry reports it after its last attempt.
func (m *model) collOpen(k *mKernel, name string, flag int) (*mFile, error) {
	f, err := m.open(k, -1, name, flag)
	if errors.Is(err, syscall.EBUSY) {
		return nil, collector.ErrBusy
	}
	return f, err
}

// collKernelRecords reads up to max records (all if max < 0) from the head
// of the staged list and then the current list, holding both open as a
// reader (kernelRecords).
func (m *model) collKernelRecords(k *mKernel, max int) ([]*record, error) {
	var files []*mFile
	defer func() {
		for _, f := range files {
			m.close(f, -1)
		}
	}()
	for _, name := range []string{"binary_runtime_measurements_staged", "binary_runtime_measurements"} {
		f, err := m.collOpen(k, name, os.O_RDONLY)
		if errors.Is(err, syscall.ENOENT) && name == "binary_runtime_measurements_staged" {
			continue // CONFIG_IMA_STAGING=n
		}
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	var out []*record
	for _, f := range files {
		// A fresh file read to EOF shows the whole list.
		out = append(out, m.list(k, f.node.staged)...)
		if max >= 0 && len(out) >= max {
			return out[:max], nil
		}
	}
	return out, nil
}

// collResolvePending decides a batch whose answer was not recorded: kept by
// the kernel (aborted) if staged ++ current starts with its records; else
// committed.
func (m *model) collResolvePending() error {
	c := m.coll
	if !c.hasPend {
		return nil
	}
	kernel, err := m.collKernelRecords(c.k, len(c.pending))
	if err != nil {
		return err
	}
	present := len(kernel) == len(c.pending)
	for i := 0; present && i < len(kernel); i++ {
		present = bytes.Equal(kernel[i].dump, c.pending[i].dump)
	}
	// The model knows the truth: are the batch's records still in the
	// kernel's lists?
	lists := append(m.list(c.k, true), m.list(c.k, false)...)
	held := false
	for _, r := range c.pending {
		held = held || slices.Contains(lists, r)
	}
	switch {
	case !present && held:
		m.ep.collectorWrong = true
		m.knownBugs[limitCollectorCommitsHeld]++
	case present && !held:
		m.ep.collectorWrong = true
		m.knownBugs[limitCollectorAbortsDeleted]++
	}
	m.collResolve(!present)
	return nil
}

// collPartlyCarried is the collector's check after a kexec: a pending batch
// whose first j records (0 < j < len) start the new kernel's lists and are
// followed by a boot_aggregate was cut by the kexec dump.
func (m *model) collPartlyCarried() error {
	c := m.coll
	if !c.hasPend || len(c.pending) < 2 {
		return nil
	}
	kernel, err := m.collKernelRecords(c.k, len(c.pending)+1)
	if err != nil {
		return err
	}
	j := 0
	for j < len(c.pending) && j < len(kernel) && bytes.Equal(kernel[j].dump, c.pending[j].dump) {
		j++
	}
	if j == 0 || j == len(c.pending) || j >= len(kernel) || !isBootAggregate(kernel[j].entry) {
		return nil
	}
	c.stuck = true
	return collector.ErrPartlyCarried
}

func (m *model) collResolve(commit bool) {
	c := m.coll
	if commit {
		c.committed = append(c.committed, c.pending...)
	}
	c.pending, c.hasPend = nil, false
}

// collect runs one collector cycle on the kernel the collector is bound to.
func (m *model) collect(prompt bool) (collector.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.coll.stuck {
		return collector.Result{}, collector.ErrPartlyCarried
	}
	if err := m.collResolvePending(); err != nil {
		return collector.Result{}, err
	}
	if prompt {
		return m.collPrompt(m.coll.k)
	}
	return m.collN(m.coll.k)
}

// collPrompt: open the staged binary file O_RDWR, A, read, save, D, close.
func (m *model) collPrompt(k *mKernel) (res collector.Result, err error) {
	f, err := m.collOpen(k, "binary_runtime_measurements_staged", os.O_RDWR)
	if err != nil {
		return res, err
	}
	defer m.close(f, -1)
	if _, err := m.write(f, []byte("A\n"), true); err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT):
			res.Note = "nothing to stage"
			return res, nil
		case errors.Is(err, syscall.EACCES):
			return res, collector.ErrSuspended
		case !errors.Is(err, syscall.EEXIST):
			return res, err
		}
	}
	records := m.list(k, true)
	res.Read = len(records)
	if len(records) == 0 {
		res.Note = "staged list empty"
		return res, nil
	}
	m.coll.pending, m.coll.hasPend = records, true
	_, derr := m.write(f, []byte("D\n"), true)
	return m.collFinish(res, derr, len(records), false)
}

// collN: open the original binary file O_RDWR, save and D what is staged
// (takeStaged), read the current list, save, N, close.
func (m *model) collN(k *mKernel) (res collector.Result, err error) {
	f, err := m.collOpen(k, "binary_runtime_measurements", os.O_RDWR)
	if err != nil {
		return res, err
	}
	defer m.close(f, -1)
	if res, err = m.collTakeStaged(k); err != nil {
		return res, err
	}
	records := m.list(k, false)
	res.Read += len(records)
	if len(records) == 0 {
		res.Note = "nothing to delete"
		return res, nil
	}
	m.coll.pending, m.coll.hasPend = records, true
	_, derr := m.write(f, []byte(fmt.Sprintf("%d\n", len(records))), true)
	saved := res.Saved
	res, err = m.collFinish(res, derr, len(records), true)
	res.Saved += saved
	return res, err
}

// collTakeStaged: the same task opens the staged file O_RDWR (an extra
// write), and saves and deletes what is staged.
func (m *model) collTakeStaged(k *mKernel) (res collector.Result, err error) {
	f, err := m.open(k, -1, "binary_runtime_measurements_staged", os.O_RDWR)
	if errors.Is(err, syscall.ENOENT) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer m.close(f, -1)
	records := m.list(k, true)
	if len(records) == 0 {
		return res, nil
	}
	res.Read = len(records)
	m.coll.pending, m.coll.hasPend = records, true
	_, derr := m.write(f, []byte("D\n"), true)
	return m.collFinish(res, derr, len(records), false)
}

// collFinish records the kernel's answer to D or N: success and ENOMEM
// commit, ESTALE aborts, EINVAL and ENOENT to N abort, anything else leaves
// the batch pending.
func (m *model) collFinish(res collector.Result, derr error, n int, isN bool) (collector.Result, error) {
	switch {
	case derr == nil, errors.Is(derr, syscall.ENOMEM):
		m.collResolve(true)
		res.Saved = n
		if derr != nil {
			res.Note = "kernel lost the staged records (ENOMEM); saved copy kept"
		}
		return res, nil
	case errors.Is(derr, syscall.ESTALE):
		m.collResolve(false)
		return res, collector.ErrStale
	case isN && (errors.Is(derr, syscall.EINVAL) || errors.Is(derr, syscall.ENOENT)):
		m.collResolve(false)
		return res, derr
	default:
		return res, derr
	}
}

// collectorSwitch points the collector at the running kernel and
// reconciles its store (SwitchKernel): after a reboot a pending batch is
// kept and a new log starts; after kexecs a pending batch is decided from
// the kernel's lists and the log continues. It returns the kind of boot it
// reports to the collector.
func (m *model) collectorSwitch() (collector.BootKind, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.coll
	target := m.cur()
	kind := collector.Kexec
	for _, k := range m.kernels[c.storeBoot.n:target.n] {
		if k.leftByReboot {
			kind = collector.Reboot
		}
	}
	c.k = target
	if c.storeBoot == target {
		return kind, m.collResolvePending()
	}
	if kind == collector.Reboot {
		if c.hasPend {
			m.collResolve(true)
		}
		c.committed = nil
		c.storeBoot = target
		return kind, nil
	}
	if err := m.collPartlyCarried(); err != nil {
		return kind, err
	}
	if err := m.collResolvePending(); err != nil {
		return kind, err
	}
	c.storeBoot = target
	return kind, nil
}

// collectorRecords is Collector.Records(0): the store's log, then what the
// kernel still holds, staged first.
func (m *model) collectorRecords() ([]*record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.coll.stuck {
		return nil, collector.ErrPartlyCarried
	}
	if err := m.collResolvePending(); err != nil {
		return nil, err
	}
	kernel, err := m.collKernelRecords(m.coll.k, -1)
	if err != nil {
		return nil, err
	}
	return append(append([]*record(nil), m.coll.committed...), kernel...), nil
}

// isBootAggregate reports whether e is a boot_aggregate record: its n-ng
// (or n) field names it.
func isBootAggregate(e *template.Entry) bool {
	for i, f := range e.Fields {
		if id := e.Desc.Field(i); id == template.FieldNNG || id == template.FieldN {
			return string(bytes.TrimRight(f, "\x00")) == template.BootAggregateName
		}
	}
	return false
}
