package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

// workload is a seeded run of a simulated kernel with a collector. The
// measurements depend only on the seed, the record count, the violations
// and the template, so every flavour and staging interval produce the same
// log since boot (unless ima_flush_htable lets duplicates back in).
type workload struct {
	Records    int    // measurement events (files and violations)
	Flavour    string // "prompt", "n", "both" (alternating) or "none"
	StageEvery int    // run a collection cycle every this many events
	Banks      []tpmext.Algorithm
	Template   string
	Violations int // violation events among Records
	KexecAfter int // kexec after this many events (0: never); between A and D with "prompt"
	Flush      bool
	Seed       int64
	TPMKind    string // a --tpm spec: "auto" or tpmext.Open's spelling
	StoreDir   string
	Hash       string    // ima_hash; empty is sha256
	NoStaging  bool      // CONFIG_IMA_STAGING=n
	PageSize   int       // PAGE_SIZE; 0 is 4096
	BootIDRand io.Reader // ima.Config.BootIDRand: nil is random

	// Filled by run.
	kernel   *ima.Kernel
	tpm      tpmext.TPM
	tpmWhat  string
	coll     *collector.Collector
	stats    workloadStats
	progress func(string)
}

type workloadStats struct {
	measured, duplicates, violations int
	cycles, saved, stale             int
	kexecs                           int
	tpmErrors                        int64
	lastTPMError                     error
	peakKernelRecords                int64
	peakKernelBytes                  uint64
}

// firmware extends PCRs 0-9 with seeded events, as firmware and the boot
// loader would, so that boot_aggregate is not trivial.
func firmware(seed int64) func(tpmext.TPM) error {
	return func(tpm tpmext.TPM) error {
		r := rand.New(rand.NewSource(seed ^ 0x5eed))
		for pcr := 0; pcr < 10; pcr++ {
			ev := make([]byte, 32)
			r.Read(ev)
			var ds []tpmext.Digest
			for _, alg := range tpm.Banks() {
				ds = append(ds, tpmext.Digest{Alg: alg, Value: alg.Sum(ev)})
			}
			if err := tpm.Extend(pcr, ds); err != nil {
				return err
			}
		}
		return nil
	}
}

func (w *workload) logf(format string, args ...any) {
	if w.progress != nil {
		w.progress(fmt.Sprintf(format, args...))
	}
}

// boot opens the TPM and boots the workload's kernel: CONFIG_IMA_KEXEC,
// CONFIG_IMA_STAGING unless NoStaging, the seeded firmware.
func (w *workload) boot() error {
	var err error
	if w.tpm, w.tpmWhat, err = openTPM(w.TPMKind, w.Banks); err != nil {
		return err
	}
	hash := w.Hash
	if hash == "" {
		hash = "sha256"
	}
	cfg := ima.Config{
		TPM: w.tpm, HashAlgo: hash, Template: w.Template, Staging: !w.NoStaging,
		FlushHtable: w.Flush, Kexec: true, Firmware: firmware(w.Seed), PageSize: w.PageSize,
		BootIDRand: w.BootIDRand,
	}
	if w.kernel, err = ima.New(cfg); err != nil {
		w.tpm.Close()
		return err
	}
	return nil
}

// run boots the kernel, measures, collects and kexecs as configured.
func (w *workload) run() error {
	if err := w.boot(); err != nil {
		return err
	}
	root := staging.Root(4242)
	if err := os.MkdirAll(filepath.Dir(w.StoreDir), 0o755); err != nil {
		return err
	}
	var err error
	if w.coll, err = collector.Open(w.StoreDir, w.kernel.FS(root), collector.Options{
		BootID: w.kernel.BootID(), Layout: w.kernel.Layout(),
	}); err != nil {
		return err
	}
	r := rand.New(rand.NewSource(w.Seed))
	violationAt := map[int]bool{}
	for len(violationAt) < w.Violations && len(violationAt) < w.Records {
		violationAt[r.Intn(w.Records)] = true
	}
	for i := 0; i < w.Records; i++ {
		if err := w.measure(r, i, violationAt[i]); err != nil {
			return err
		}
		w.notePeak()
		if w.KexecAfter > 0 && i+1 == w.KexecAfter {
			if err := w.kexec(root); err != nil {
				return err
			}
			continue
		}
		if w.Flavour != "none" && w.StageEvery > 0 && (i+1)%w.StageEvery == 0 {
			if err := w.cycle(w.nextFlavour(), nil); err != nil {
				return err
			}
		}
	}
	w.noteTPMErrors()
	if w.stats.tpmErrors > 0 {
		return fmt.Errorf("%d TPM extends failed (the kernel kept the records, audited the failure and did not extend PCR 10); the last: %v", w.stats.tpmErrors, w.stats.lastTPMError)
	}
	return nil
}

// noteTPMErrors adds the current kernel's failed extends to the stats.
func (w *workload) noteTPMErrors() {
	n, err := w.kernel.Queue().TPMErrors()
	w.stats.tpmErrors += n
	if err != nil {
		w.stats.lastTPMError = err
	}
}

// measure makes event i: a violation, a re-measurement of an earlier file
// (same path and content: a duplicate the hash table rejects), or a new file.
func (w *workload) measure(r *rand.Rand, i int, violation bool) error {
	if violation {
		w.stats.violations++
		return w.kernel.Violation(fmt.Sprintf("/var/log/app-%d.log", r.Intn(50)), nil, ima.CauseToMToU)
	}
	n := i
	if i > 10 && r.Intn(10) == 0 {
		n = r.Intn(i) // re-measure an earlier file
	}
	content := fmt.Appendf(nil, "content of file %d seed %d", n, w.Seed)
	f := ima.NewFile(fmt.Sprintf("/usr/lib/imasim/file-%05d", n), content)
	f.Mode = 0o100755 // root:root
	err := w.kernel.Measure(f)
	switch {
	case err == nil:
		w.stats.measured++
	case errors.Is(err, syscall.EEXIST):
		w.stats.duplicates++
	default:
		return err
	}
	return nil
}

func (w *workload) notePeak() {
	q := w.kernel.Queue()
	n := q.NumRecords(measlist.Binary) + q.NumRecords(measlist.BinaryStaged)
	if n > w.stats.peakKernelRecords {
		w.stats.peakKernelRecords = n
	}
	if b := kernelListBytes(q); b > w.stats.peakKernelBytes {
		w.stats.peakKernelBytes = b
	}
}

// nextFlavour is the flavour of the next regular cycle: the configured one,
// or prompt and n in turn for "both".
func (w *workload) nextFlavour() collector.Flavour {
	if w.Flavour == "n" || (w.Flavour == "both" && w.stats.cycles%2 == 1) {
		return collector.DeleteN
	}
	return collector.Prompt
}

// cycle runs one collection cycle; hook, if set, runs at StepSealed.
func (w *workload) cycle(flavour collector.Flavour, hook func() error) error {
	w.coll.SetHook(func(s collector.Step) error {
		if s == collector.StepSealed && hook != nil {
			return hook()
		}
		return nil
	})
	res, err := w.coll.CycleFlavour(flavour)
	w.stats.cycles++
	w.stats.saved += res.Saved
	switch {
	case errors.Is(err, collector.ErrStale):
		w.stats.stale++
		return nil
	case err != nil:
		return fmt.Errorf("collection cycle %d: %w", w.stats.cycles, err)
	}
	return nil
}

// kexec executes a kexec: with the prompt flavour, between A and D of a
// cycle (D then gets ESTALE and the staged records ride along).
func (w *workload) kexec(root staging.Task) error {
	var next *ima.Kernel
	doKexec := func() error {
		var err error
		next, err = w.kernel.Kexec()
		return err
	}
	if w.Flavour == "prompt" || w.Flavour == "both" {
		if err := w.cycle(collector.Prompt, doKexec); err != nil {
			return err
		}
	}
	if next == nil {
		if err := doKexec(); err != nil {
			return err
		}
	}
	w.noteTPMErrors()
	w.kernel = next
	w.stats.kexecs++
	w.logf("kexec into boot %s", next.BootID())
	return w.coll.SwitchKernel(next.FS(root), next.BootID(), collector.Kexec)
}

// kernelListBytes is the serialized size of what the kernel holds, current
// and staged (binary_runtime_size without the kexec headers).
func kernelListBytes(q *measlist.Queue) uint64 {
	return q.BinaryRuntimeSize(measlist.Binary) + q.BinaryRuntimeSize(measlist.BinaryStaged) - 2*measlist.KexecHeaderSize
}
