package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
)

// Flavour is the staging flavour a collection cycle uses.
type Flavour int

const (
	// Prompt stages everything with A on the _staged file, reads it,
	// saves it and deletes it with D, in one O_RDWR transaction.
	Prompt Flavour = iota
	// DeleteN reads the current list through the original file, saves it
	// and deletes the first N records with N, in one O_RDWR transaction.
	DeleteN
)

func (f Flavour) String() string {
	if f == DeleteN {
		return "n"
	}
	return "prompt"
}

// BootKind says how the running kernel relates to the one the store last
// saw, when their boot ids differ.
type BootKind int

const (
	// Unknown: Open fails if the boot id changed.
	Unknown BootKind = iota
	// Reboot: a cold boot; the store starts a new log. A batch left
	// pending is kept (committed): its records belong to the old log.
	Reboot
	// Kexec: the kernel was kexec'd and carried the old kernel's lists
	// over; the log continues. A batch left pending is kept only if the
	// new kernel's lists do not start with it.
	Kexec
)

// Step names a point of a collection cycle, for Options.Hook.
type Step int

const (
	StepStaged      Step = iota // A answered (prompt), or the writer file is open (N)
	StepReadPartial             // part of the list has been read
	StepRead                    // the list has been read to EOF
	StepWritten                 // the batch is written to the store, not yet fsynced
	StepSealed                  // the batch is durable; the kernel is not yet asked to delete
	StepDeleted                 // the kernel deleted the batch; the store does not know yet
)

// Options configure a collector.
type Options struct {
	// Flavour is the staging flavour of Cycle.
	Flavour Flavour
	// BootID identifies the running kernel instance
	// (/proc/sys/kernel/random/boot_id; ima.Kernel.BootID in simulation).
	BootID string
	// NewBoot says what happened when BootID differs from the store's.
	NewBoot BootKind
	// Layout is the kernel's record layout (banks, ima_hash, byte order),
	// needed to parse the lists and to serve columns other than SHA-1.
	// Nil means a little-endian kernel with a SHA-1 bank only.
	Layout *template.Layout
	// Cover, if set, chooses how many of the records read from the
	// current list a DeleteN cycle saves and deletes (for example the
	// number a quote covers, from eventlog); it gets the log's committed
	// record count and the records read. Nil deletes everything read.
	Cover func(committed int, records [][]byte) (int, error)
	// Quote, if set (and Cover is not), makes a DeleteN cycle delete only
	// the records a quote covers, as the documentation's "Remote
	// Attestation Agent Workflow" asks: the cycle calls it before reading
	// the current list (so the list holds at least what the quote covers),
	// then replays the log since boot (the store's records, then the
	// records read) with ima/eventlog until the target matches. What
	// follows stays in the kernel for the next cycle. Return
	// eventlog.QuoteTarget of a fresh quote, or PCR values read from the
	// TPM as a target.
	Quote func() (eventlog.Target, error)
	// PCRs, if set, reads the PCRs the log extends (PCR 10, in one bank
	// or more) from the TPM, as a target (eventlog.Target{PCRs: ...}, or
	// eventlog.QuoteTarget of a fresh quote). A pending batch that the
	// kernel's lists cannot decide (its records may have been deleted and
	// then repeated byte for byte, as violations can be) is decided by
	// replaying the log since boot against them. Without it such a batch
	// of violations is ErrAmbiguous.
	PCRs func() (eventlog.Target, error)
	// Retries and Backoff bound the retries of an open refused with
	// EBUSY (another actor has the files): Backoff doubles after each
	// attempt up to one second. Zero values mean 50 attempts from 1 ms.
	Retries int
	Backoff time.Duration
	// Verify makes Open read and check every frame of the store, as
	// before the store had checkpoints: damage anywhere is then reported
	// by Open (a CorruptError) rather than when the damaged record is
	// served. Opening then costs time in proportion to the store.
	Verify bool
	// Hook, if set, runs at each step of a cycle; an error stops the
	// cycle there, as if the process had died, with no cleanup. For
	// crash tests.
	Hook func(Step) error
}

// Errors a cycle can end with; test with errors.Is.
var (
	// ErrStale: the kernel refused the deletion with ESTALE because a
	// kexec is under way; the copy was discarded, and the records come
	// back in the next kernel's list.
	ErrStale = errors.New("collector: kexec in progress: records left to the next kernel")
	// ErrSuspended: the kernel refused to stage with EACCES (measurement
	// suspended for a reboot or kexec).
	ErrSuspended = errors.New("collector: measurement suspended: nothing staged")
	// ErrBusy: the files stayed busy (EBUSY) through every retry.
	ErrBusy = errors.New("collector: securityfs busy")
	// ErrCrashed: Options.Hook stopped the cycle.
	ErrCrashed = errors.New("collector: stopped by hook")
)

// Result reports one cycle.
type Result struct {
	// Read is the number of records read from the kernel.
	Read int
	// Saved is the number of records made durable and deleted from the
	// kernel (committed).
	Saved int
	// Note says why nothing was saved, if so ("nothing to stage", ...).
	Note string
}

// Collector saves what the kernel stages and serves the log since boot.
// Its methods are safe for concurrent use; cycles and serving are
// serialised.
type Collector struct {
	mu     sync.Mutex
	st     *store
	fsys   staging.FS
	opts   Options
	layout *template.Layout
	// stuck is set when the store and the kernel cannot be reconciled
	// safely (ErrPartlyCarried); every later cycle and request returns it.
	stuck error
}

// Open opens the store in dir (creating it), takes its lock, recovers it
// after a crash, and reconciles it with the running kernel seen through
// fsys: a new log after a reboot, the same log after a kexec, and a
// decision on any batch left pending (see Options.NewBoot).
func Open(dir string, fsys staging.FS, opts Options) (*Collector, error) {
	if opts.BootID == "" {
		return nil, errors.New("collector: Options.BootID is required")
	}
	layout := opts.Layout
	if layout == nil {
		var err error
		if layout, err = template.NewLayout(nil, template.HashSHA1, template.LittleEndian); err != nil {
			return nil, err
		}
	}
	st, err := openStore(dir, opts.Verify)
	if err != nil {
		return nil, err
	}
	c := &Collector{st: st, fsys: fsys, opts: opts, layout: layout}
	if err := c.checkTail(opts.BootID, opts.NewBoot); err != nil {
		st.close()
		return nil, err
	}
	if err := c.reconcile(opts.BootID, opts.NewBoot); err != nil {
		st.close()
		return nil, err
	}
	return c, nil
}

// Close releases the store.
func (c *Collector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil {
		return os.ErrClosed
	}
	err := c.st.close()
	c.st = nil
	return err
}

// SetHook replaces Options.Hook for the next cycles.
func (c *Collector) SetHook(h func(Step) error) {
	c.mu.Lock()
	c.opts.Hook = h
	c.mu.Unlock()
}

// SwitchKernel points the collector at another kernel instance (after a
// reboot or a kexec, in simulations where the collector outlives the
// kernel) and reconciles the store as Open would.
func (c *Collector) SwitchKernel(fsys staging.FS, bootID string, kind BootKind) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fsys = fsys
	err := c.reconcile(bootID, kind)
	if errors.Is(err, ErrPartlyCarried) {
		c.stuck = err
	}
	return err
}

// ErrTailNotInKernel is returned by Open when records found after the
// store's durable end, which recovery would cut (the kernel was never asked
// to delete them), are not at the head of the kernel's lists: cutting them
// would lose them. The store is left as it is.
var ErrTailNotInKernel = errors.New("collector: records after the store's durable end are not in the kernel")

// checkTail checks, before recovery cuts the records written after the
// store's durable end, that the kernel still holds them at the head of its
// lists, staged then current (where a prompt batch is, staged, and an N
// batch, at the head of the current list; a kexec restores both first),
// then lets recovery cut them. After a reboot the old kernel's lists are
// gone and nothing can be checked.
func (c *Collector) checkTail(bootID string, kind BootKind) error {
	st := c.st
	if cur := st.currentBoot(); len(st.tail) > 0 && (cur == bootID || kind == Kexec) {
		head, err := c.kernelRecords(len(st.tail))
		if err != nil {
			return err
		}
		if !recordsEqual(head, st.tail) {
			return fmt.Errorf("%w: %d records (store %s, after record %d)", ErrTailNotInKernel, len(st.tail), st.dir, st.log.committed)
		}
	}
	return st.finishRecovery()
}

func (c *Collector) reconcile(bootID string, kind BootKind) error {
	st := c.st
	switch cur := st.currentBoot(); {
	case cur == "":
		return st.startLog(bootID)
	case cur == bootID:
		return c.resolvePending(false)
	case kind == Reboot:
		if st.log.state == batchPending {
			if err := st.resolve(true); err != nil {
				return err
			}
		}
		return st.startLog(bootID)
	case kind == Kexec:
		if err := c.checkPartlyCarried(); err != nil {
			return err
		}
		if err := c.resolvePending(true); err != nil {
			return err
		}
		return st.continueLog(bootID)
	default:
		return fmt.Errorf("collector: the store was last written under boot %s, the kernel is boot %s: say whether it rebooted or kexec'd (Options.NewBoot)", cur, bootID)
	}
}

// resolvePending decides the fate of a sealed batch whose kernel answer was
// never recorded (a crash between the seal and the commit, or an answer that
// does not say), from kernel facts; kexeced says whether the kernel has
// been kexec'd since the batch was sealed.
//
//   - A prompt batch in the same kernel is the whole staged list, which
//     only D empties and nothing else changes while it holds records (A is
//     refused with EEXIST): the kernel kept the batch exactly when its
//     staged list still holds it.
//   - Otherwise (an N batch, or any batch after a kexec) a batch the kernel
//     kept is at the head of its lists, staged then current: a DeleteN cycle
//     takes its batch while nothing is staged (takeStaged), and a kexec
//     restores staged then current at the head of the new current list. If
//     the head does not start with the batch, the kernel deleted it.
//   - If it does, the kernel either kept the batch or deleted it and then
//     appended records that repeat it byte for byte. Only some records can
//     repeat: violations (a zero digest, not kept out by the hash table), or
//     records let in again by ima_flush_htable or CONFIG_IMA_DISABLE_HTABLE.
//     With Options.PCRs the replay of the log since boot decides
//     (decideByPCRs), exactly. Without it, a batch holding a record that is
//     not a violation is taken as kept (exact while the hash table keeps
//     digests of deleted records: ima_flush_htable and
//     CONFIG_IMA_DISABLE_HTABLE need Options.PCRs), and a batch of
//     violations only is ErrAmbiguous: it stays pending rather than be
//     guessed at.
func (c *Collector) resolvePending(kexeced bool) error {
	st := c.st
	if st.log.state != batchPending {
		return nil
	}
	p := st.log.pending
	staged, current, err := c.kernelLists()
	if err != nil {
		return err
	}
	if st.log.pendingFlavour == Prompt && !kexeced {
		return st.resolve(!recordsEqual(staged, p))
	}
	head := append(staged, current...)
	if len(head) < len(p) || !recordsEqual(head[:len(p)], p) {
		return st.resolve(true)
	}
	if c.opts.PCRs != nil {
		commit, err := c.decideByPCRs(p)
		if err != nil {
			return err
		}
		return st.resolve(commit)
	}
	for _, r := range p {
		if !c.isViolation(r) {
			return st.resolve(false)
		}
	}
	return fmt.Errorf("%w: a pending batch of %d violation records may have been deleted and repeated since; set Options.PCRs", ErrAmbiguous, len(p))
}

// ErrAmbiguous is returned when the kernel's lists cannot say whether it
// deleted a pending batch (its records may repeat) and no PCR reader was
// given to decide: the batch stays pending.
var ErrAmbiguous = errors.New("collector: cannot tell whether the kernel deleted a pending batch")

// pcrSettle is how long decideByPCRs waits before it trusts that the last
// record of the kernel's lists is in the PCRs. The kernel appends a record,
// then extends the TPM (both under ima_extend_list_mutex); the wait
// outlasts an extend that was still under way.
const pcrSettle = 20 * time.Millisecond

// decideByPCRs decides a pending batch p from the TPM: the log since boot
// is either D, the store's records, p, then the kernel's lists (the kernel
// deleted p: commit), or K, the store's records then the kernel's lists
// (it kept p).
//
// Each reading takes the lists, then the PCRs, then
// runtime_measurements_count; it is used only if the count still equals
// the current list's length, so that no record arrived after the lists
// were read. Then the PCRs cover every record of the lists but perhaps the
// last, whose extend may still be under way (the kernel appends, then
// extends, under one mutex): the true candidate replays to the PCRs at its
// whole length or one less, and the other does not (a hash chain does not
// come back to a value it had). Only a batch of one record lets both
// candidates end there; then the reading is repeated after pcrSettle and
// only a whole-length match with nothing changed decides. A reading that
// is not used is retried; a steady stream of records therefore delays the
// decision, it does not make it wrong.
func (c *Collector) decideByPCRs(p [][]byte) (commit bool, err error) {
	var last string // what the last reading showed, for the error
	for attempt := 0; attempt < 200; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Millisecond << min(attempt/20, 8))
		}
		t, head, ok, err := c.quietReading()
		if err != nil {
			return false, err
		}
		if !ok {
			last = "records kept arriving"
			continue
		}
		store, err := c.st.committedRecords()
		if err != nil {
			return false, err
		}
		dN, dLen, err := c.replayedBy(t, store, p, head)
		if err != nil {
			return false, err
		}
		kN, kLen, err := c.replayedBy(t, store, head)
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("store %d, batch %d, kernel lists %d: the PCRs match record %d of %d if deleted, %d of %d if kept", len(store), len(p), len(head), dN, dLen, kN, kLen)
		deleted, kept := dN >= dLen-1, kN >= kLen-1
		if deleted != kept {
			return deleted, nil
		}
		if deleted && kept {
			time.Sleep(pcrSettle)
			t2, head2, ok, err := c.quietReading()
			if err != nil {
				return false, err
			}
			if ok && reflect.DeepEqual(t, t2) && recordsEqual(head, head2) && (dN == dLen) != (kN == kLen) {
				return dN == dLen, nil
			}
		}
	}
	return false, fmt.Errorf("%w: the replay of the log since boot did not settle on one answer (%s)", ErrAmbiguous, last)
}

// currentCount reads runtime_measurements_count (ima_num_records[BINARY]:
// the records of the current list). The counter files are not under the
// one-writer rule, so reading it never waits.
func (c *Collector) currentCount() (int64, error) {
	b, err := staging.ReadFile(c.fsys, staging.RuntimeMeasurementsCount)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("collector: %s: %q is not a count", staging.RuntimeMeasurementsCount, b)
	}
	return n, nil
}

// quietReading reads the kernel's lists (staged then current), the PCRs,
// and runtime_measurements_count; ok reports that the count still equals
// the current list's length, so that the PCRs cover the lists (but
// perhaps their last record) and nothing after them.
func (c *Collector) quietReading() (t eventlog.Target, head [][]byte, ok bool, err error) {
	staged, current, err := c.kernelLists()
	if err != nil {
		return t, nil, false, err
	}
	if t, err = c.opts.PCRs(); err != nil {
		return t, nil, false, fmt.Errorf("collector: reading the PCRs: %w", err)
	}
	n, err := c.currentCount()
	if err != nil {
		return t, nil, false, err
	}
	return t, append(staged, current...), n == int64(len(current)), nil
}

// pcrReading reads the PCRs, the kernel's lists (staged then current),
// and the PCRs again. It returns the lists only if the PCRs did not change
// meanwhile: then every record of the lists is in the PCRs, but perhaps
// the last (its extend still under way).
func (c *Collector) pcrReading() (eventlog.Target, [][]byte, error) {
	t, err := c.opts.PCRs()
	if err != nil {
		return t, nil, fmt.Errorf("collector: reading the PCRs: %w", err)
	}
	staged, current, err := c.kernelLists()
	if err != nil {
		return t, nil, err
	}
	t2, err := c.opts.PCRs()
	if err != nil {
		return t, nil, fmt.Errorf("collector: reading the PCRs: %w", err)
	}
	if !reflect.DeepEqual(t, t2) {
		return t, nil, nil // records arrived meanwhile
	}
	return t, append(staged, current...), nil
}

// replayedBy returns how many records of the concatenation of parts
// replay to t (-1 if no prefix does), and how many there are.
func (c *Collector) replayedBy(t eventlog.Target, parts ...[][]byte) (n, total int, err error) {
	var recs [][]byte
	for _, p := range parts {
		recs = append(recs, p...)
	}
	el, err := eventlog.ParseEventLog(bytes.Join(recs, nil), eventlog.Options{Order: c.layout.Order()})
	if err != nil {
		return 0, 0, err
	}
	n, _, err = el.ReplayUntil(t, eventlog.ReplayOptions{})
	if errors.Is(err, eventlog.ErrNotReached) {
		return -1, len(recs), nil
	}
	return n, len(recs), err
}

// isViolation reports whether a stored record is a violation: its SHA-1
// template digest is all zeros.
func (c *Collector) isViolation(rec []byte) bool {
	es, err := template.DecodeAll(rec, template.DecodeOptions{Order: c.layout.Order(), DigestSize: 20})
	return err == nil && len(es) == 1 && bytes.Equal(es[0].Digests[0].Value, make([]byte, 20))
}

func recordsEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// ErrPartlyCarried is returned when a kexec dump ran out of room inside a
// batch the collector had saved but not resolved: the new kernel restored
// only the batch's first records, then lost the rest (and everything after
// it). The store holds the whole batch, so the log can be made whole, but
// only by serving the batch in place of the restored copies, which this
// collector does not do; rather than lose or duplicate records it stops
// and keeps everything as it is.
var ErrPartlyCarried = errors.New("collector: a kexec carried only part of a pending batch")

// checkPartlyCarried detects, after a kexec, a pending batch whose first
// j records (0 < j < len) start the new kernel's list and are followed by
// the new kernel's own first record, its boot_aggregate: the kexec dump was
// cut inside the batch (measlist.Queue.DumpKexec).
func (c *Collector) checkPartlyCarried() error {
	p := c.st.log.pending
	if c.st.log.state != batchPending || len(p) < 2 {
		return nil
	}
	kernel, err := c.kernelRecords(len(p) + 1)
	if err != nil {
		return err
	}
	j := 0
	for j < len(p) && j < len(kernel) && bytes.Equal(kernel[j], p[j]) {
		j++
	}
	if j == 0 || j == len(p) || j >= len(kernel) {
		return nil
	}
	es, err := template.DecodeAll(kernel[j], template.DecodeOptions{Order: c.layout.Order(), DigestSize: 20})
	if err != nil || len(es) != 1 || eventName(es[0]) != template.BootAggregateName {
		return nil
	}
	if carried, err := c.wholeBatchReplays(p); err != nil || carried {
		return err
	}
	return fmt.Errorf("%w: %d of its %d records came back, then the new kernel's boot_aggregate; %d saved records the kernel lost are in the store",
		ErrPartlyCarried, j, len(p), len(p)-j)
}

// wholeBatchReplays reports whether the log "store ++ p ++ the kernel's
// lists" replays to the PCRs (all of it, or all but a last record still
// being extended): then the records the new list starts with are not a
// cut-short copy of p but later records that repeat it, since a dump cut
// inside p loses records the TPM has. Without Options.PCRs it reports
// false. It retries while records keep arriving.
func (c *Collector) wholeBatchReplays(p [][]byte) (bool, error) {
	if c.opts.PCRs == nil {
		return false, nil
	}
	for attempt := 0; attempt < 60; attempt++ {
		t, head, err := c.pcrReading()
		if err != nil || head == nil {
			if err != nil {
				return false, err
			}
			time.Sleep(time.Millisecond << min(attempt, 9))
			continue
		}
		store, err := c.st.committedRecords()
		if err != nil {
			return false, err
		}
		n, total, err := c.replayedBy(t, store, p, head)
		return err == nil && n >= total-1, err
	}
	return false, nil
}

// eventName returns an entry's n-ng (or n) field without its NUL, or "".
func eventName(e *template.Entry) string {
	for i := range e.Desc.NumFields() {
		if f := e.Desc.Field(i); f == template.FieldNNG || f == template.FieldN {
			return string(bytes.TrimRight(e.Fields[i], "\x00"))
		}
	}
	return ""
}

// openRetry opens name, retrying while the kernel answers EBUSY.
func (c *Collector) openRetry(name string, flag int) (staging.File, error) {
	retries, backoff := c.opts.Retries, c.opts.Backoff
	if retries <= 0 {
		retries = 50
	}
	if backoff <= 0 {
		backoff = time.Millisecond
	}
	for attempt := 0; ; attempt++ {
		f, err := c.fsys.OpenFile(name, flag)
		if !errors.Is(err, syscall.EBUSY) {
			return f, err
		}
		if attempt+1 >= retries {
			return nil, fmt.Errorf("%w: %v", ErrBusy, err)
		}
		time.Sleep(backoff)
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

func (c *Collector) hook(s Step) error {
	if c.opts.Hook != nil {
		if err := c.opts.Hook(s); err != nil {
			return fmt.Errorf("%w at step %d: %v", ErrCrashed, s, err)
		}
	}
	return nil
}

// readRecords reads f to EOF and splits it into records. With hooks set,
// Options.Hook runs between reads.
func (c *Collector) readRecords(f staging.File, hooks bool) ([][]byte, error) {
	var data []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		data = append(data, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if hooks {
			if err := c.hook(StepReadPartial); err != nil {
				return nil, err
			}
		}
	}
	return c.split(data)
}

// split cuts a binary list (SHA-1 column) into records, checking each.
func (c *Collector) split(data []byte) ([][]byte, error) {
	return template.Split(data, template.DecodeOptions{Order: c.layout.Order(), DigestSize: 20})
}

// Cycle runs one collection cycle of the configured flavour.
func (c *Collector) Cycle() (Result, error) { return c.CycleFlavour(c.opts.Flavour) }

// CycleFlavour runs one collection cycle of flavour f.
//
// The cycle runs on one locked OS thread: the kernel's writer is a thread,
// and a cycle opens and closes list files (one writer descriptor at a
// time), which on a real kernel must come from the same thread
// (docs/FINDINGS.md).
func (c *Collector) CycleFlavour(f Flavour) (Result, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil {
		return Result{}, os.ErrClosed
	}
	if c.stuck != nil {
		return Result{}, c.stuck
	}
	if err := c.resolvePending(false); err != nil {
		return Result{}, err
	}
	if f == DeleteN {
		return c.cycleN()
	}
	return c.cyclePrompt()
}

// cyclePrompt: open the staged binary file O_RDWR, A, read to EOF, save, D.
func (c *Collector) cyclePrompt() (res Result, err error) {
	f, err := c.openRetry(staging.BinaryRuntimeMeasurementsStaged, os.O_RDWR)
	if err != nil {
		return res, err
	}
	// The file is closed on every path, a simulated crash included: a
	// process that dies has its files released by the kernel.
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := f.Write([]byte("A\n")); err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT):
			res.Note = "nothing to stage"
			return res, nil
		case errors.Is(err, syscall.EACCES):
			return res, ErrSuspended
		case !errors.Is(err, syscall.EEXIST):
			return res, err
		}
		// EEXIST: records are already staged (a crash between A and D,
		// or another actor): take them as this cycle's batch.
	}
	if err := c.hook(StepStaged); err != nil {
		return res, err
	}
	records, err := c.readRecords(f, true)
	if err != nil {
		return res, err
	}
	res.Read = len(records)
	if err := c.hook(StepRead); err != nil {
		return res, err
	}
	if len(records) == 0 {
		res.Note = "staged list empty"
		return res, nil
	}
	return c.saveAndDelete(res, f, records, "D\n", Prompt)
}

// cycleN: save and delete what another actor left staged (its own
// transaction), then open the original binary file O_RDWR, read to EOF,
// save, N.
func (c *Collector) cycleN() (res Result, err error) {
	if res, err = c.takeStaged(); err != nil {
		return res, err
	}
	f, err := c.openRetry(staging.BinaryRuntimeMeasurements, os.O_RDWR)
	if err != nil {
		return res, err
	}
	// The file is closed on every path, a simulated crash included: a
	// process that dies has its files released by the kernel.
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	cover := c.opts.Cover
	if cover == nil && c.opts.Quote != nil {
		target, err := c.opts.Quote()
		if err != nil {
			return res, fmt.Errorf("collector: quote: %w", err)
		}
		cover = c.quoteCover(target)
	}
	if err := c.hook(StepStaged); err != nil {
		return res, err
	}
	records, err := c.readRecords(f, true)
	if err != nil {
		return res, err
	}
	res.Read += len(records)
	if err := c.hook(StepRead); err != nil {
		return res, err
	}
	n := len(records)
	if cover != nil {
		if n, err = cover(c.st.log.committed, records); err != nil {
			return res, err
		}
		if n < 0 || n > len(records) {
			return res, fmt.Errorf("collector: Cover chose %d of %d records", n, len(records))
		}
	}
	if n == 0 {
		res.Note = "nothing to delete"
		return res, nil
	}
	saved := res.Saved
	res, err = c.saveAndDelete(res, f, records[:n], strconv.Itoa(n)+"\n", DeleteN)
	res.Saved += saved
	return res, err
}

// takeStaged saves and deletes the records another actor left staged
// (or a prompt cycle that died between A and D), as the first transaction
// of a DeleteN cycle: they are older than every record of the current
// list, and the log is served as store ++ staged ++ current, so an N batch
// saved while they stay staged would be served before them.
//
// It is a transaction of its own, closed before the original file is
// opened for write, so that the collector never holds two writer
// descriptors. Two would be fatal on a real kernel: if the process is
// killed while it holds them and its files are released by another
// thread at exit, ima_measure_unlock() takes the "not the writer" path for
// each (users++) and the writer count stays positive until reboot
// (docs/FINDINGS.md, Q4). Between the two transactions another actor
// could stage again; one that bypasses the store already breaks the log
// (see the package doc), so this is not checked.
func (c *Collector) takeStaged() (res Result, err error) {
	f, err := c.openRetry(staging.BinaryRuntimeMeasurementsStaged, os.O_RDWR)
	if errors.Is(err, syscall.ENOENT) {
		return res, nil // CONFIG_IMA_STAGING=n
	}
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	records, err := c.readRecords(f, false)
	if err != nil || len(records) == 0 {
		return res, err
	}
	res.Read = len(records)
	return c.saveAndDelete(res, f, records, "D\n", Prompt)
}

// quoteCover returns the Cover that keeps the records a quote's target
// covers: the log since boot (the store's records, then the records read)
// is replayed until the target matches, and N is what that adds to the
// store.
func (c *Collector) quoteCover(target eventlog.Target) func(int, [][]byte) (int, error) {
	return func(committed int, records [][]byte) (int, error) {
		store, err := c.st.committedRecords()
		if err != nil {
			return 0, err
		}
		log := bytes.Join(append(store, records...), nil)
		el, err := eventlog.ParseEventLog(log, eventlog.Options{Order: c.layout.Order()})
		if err != nil {
			return 0, err
		}
		n, _, err := el.ReplayUntil(target, eventlog.ReplayOptions{})
		if err != nil {
			return 0, fmt.Errorf("collector: the log since boot does not reach the quote: %w", err)
		}
		return max(0, n-committed), nil
	}
}

// saveAndDelete makes records durable as a batch, then sends request (D or
// N) to f and records the kernel's answer.
func (c *Collector) saveAndDelete(res Result, f staging.File, records [][]byte, request string, flav Flavour) (Result, error) {
	if err := c.st.writeRecords(records, flav, func() error { return c.hook(StepWritten) }); err != nil {
		return res, err
	}
	if err := c.hook(StepSealed); err != nil {
		return res, err
	}
	_, derr := f.Write([]byte(request))
	return c.finish(res, derr, len(records), flav == DeleteN)
}

// finish records the kernel's answer to D or N.
//
// The answers that say the kernel kept the records abort the batch at once:
// ESTALE (kexec carries them), and for N, EINVAL (refused under
// ima_flush_htable) and ENOENT (fewer records than N). Any other answer
// leaves the batch pending, for resolvePending to decide from the kernel's
// lists.
func (c *Collector) finish(res Result, derr error, n int, isN bool) (Result, error) {
	switch {
	case derr == nil, errors.Is(derr, syscall.ENOMEM):
		// ENOMEM: a flushing D could not allocate the new hash table
		// after detaching the staged records (docs/SPEC.md Q3): they are gone
		// from the kernel all the same, so the saved copy is the only
		// one.
		if err := c.hook(StepDeleted); err != nil {
			return res, err
		}
		if err := c.st.resolve(true); err != nil {
			return res, err
		}
		res.Saved = n
		if derr != nil {
			res.Note = "kernel lost the staged records (ENOMEM); saved copy kept"
		}
		return res, nil
	case errors.Is(derr, syscall.ESTALE):
		if err := c.st.resolve(false); err != nil {
			return res, err
		}
		return res, ErrStale
	case isN && (errors.Is(derr, syscall.EINVAL) || errors.Is(derr, syscall.ENOENT)):
		if err := c.st.resolve(false); err != nil {
			return res, err
		}
		return res, fmt.Errorf("collector: the kernel kept the %d records: %w", n, derr)
	default:
		return res, fmt.Errorf("collector: deleting %d records: %w", n, derr)
	}
}

// kernelLists reads the kernel's staged and current lists, as a reader.
// Holding both files open keeps writers out, so the two reads are
// consistent.
func (c *Collector) kernelLists() (staged, current [][]byte, err error) {
	var files [2]staging.File
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, name := range []string{staging.BinaryRuntimeMeasurementsStaged, staging.BinaryRuntimeMeasurements} {
		f, err := c.openRetry(name, os.O_RDONLY)
		if errors.Is(err, syscall.ENOENT) && i == 0 {
			continue // CONFIG_IMA_STAGING=n: no staged list
		}
		if err != nil {
			return nil, nil, err
		}
		files[i] = f
	}
	var lists [2][][]byte
	for i, f := range files {
		if f == nil {
			continue
		}
		if lists[i], err = c.readRecords(f, false); err != nil {
			return nil, nil, err
		}
	}
	return lists[0], lists[1], nil
}

// kernelRecords returns the kernel's staged then current records, at most
// max (all if max < 0).
func (c *Collector) kernelRecords(max int) ([][]byte, error) {
	staged, current, err := c.kernelLists()
	if err != nil {
		return nil, err
	}
	out := append(staged, current...)
	if max >= 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}
