package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"syscall"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

// system is one simulated machine driven twice: through the real packages
// (ima, staging, measlist, the collector on a store directory) and through
// the model. step applies an operation to both and compares what each
// answered; check compares everything observable; finish closes the
// sequence and checks the end-of-sequence properties.
//
// A system is used by one goroutine.
type system struct {
	cfg     config
	m       *model
	tpm     *tpmext.Software
	kernels []*ima.Kernel
	files   []*staging.SimFile // parallel to m.files
	coll    *collector.Collector
	// failNext is read by the queues' allocation hook: the next bucket
	// array allocation fails.
	failNext bool
	// script is the transcript so far.
	script script
	// ops counts the operations stepped.
	ops int
}

// mismatchError reports a difference between the model and the system.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }

func mismatch(format string, args ...any) error {
	return &mismatchError{msg: fmt.Sprintf(format, args...)}
}

func (c config) imaConfig(tpm tpmext.TPM) ima.Config {
	return ima.Config{TPM: tpm, HashAlgo: c.hashAlgo, Template: c.template, BigEndian: c.bigEndian,
		Staging: c.staging, NDeleteNeedsStaging: c.nDeleteNeedsStaging, FlushHtable: c.flushHtable,
		HtableDisabled: c.htableDisabled, Kexec: c.kexec,
		CriticalData: c.criticalData, PageSize: c.pageSize}
}

// newSystem boots a machine with cfg on a fresh software TPM, and opens a
// collector whose store is in dir (a new, empty directory).
func newSystem(cfg config, dir string) (*system, error) {
	s := &system{cfg: cfg, script: script{config: cfg.String()}}
	var err error
	if s.tpm, err = tpmext.NewSoftware(cfg.banks...); err != nil {
		return nil, err
	}
	k, err := ima.New(cfg.imaConfig(s.tpm))
	if err != nil {
		return nil, err
	}
	s.addKernel(k)
	if s.coll, err = collector.Open(dir, k.FS(staging.Root(collectorTID)), collector.Options{
		Flavour: collector.Prompt, BootID: k.BootID(), Layout: k.Layout(), Retries: 1}); err != nil {
		return nil, err
	}
	if s.m, err = newModel(cfg); err != nil {
		return nil, err
	}
	return s, s.check()
}

// Close releases the collector's store.
func (s *system) Close() error { return s.coll.Close() }

func (s *system) addKernel(k *ima.Kernel) {
	k.Queue().SetFailAlloc(func() bool {
		fail := s.failNext
		s.failNext = false
		return fail
	})
	s.kernels = append(s.kernels, k)
}

func (s *system) cur() *ima.Kernel { return s.kernels[len(s.kernels)-1] }

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.EBADF: "EBADF", syscall.ENOMEM: "ENOMEM",
	syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY", syscall.EEXIST: "EEXIST",
	syscall.ENODEV: "ENODEV", syscall.EINVAL: "EINVAL", syscall.ENFILE: "ENFILE", syscall.ERANGE: "ERANGE",
	syscall.ESTALE: "ESTALE", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO",
}

// errString names an error for scripts.
func errString(err error) string {
	var e syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case err == io.EOF:
		return "EOF"
	case errors.Is(err, os.ErrClosed):
		return "closed"
	case errors.Is(err, collector.ErrBusy):
		return "ErrBusy"
	case errors.Is(err, collector.ErrSuspended):
		return "ErrSuspended"
	case errors.Is(err, collector.ErrStale):
		return "ErrStale"
	case errors.Is(err, collector.ErrPartlyCarried):
		return "ErrPartlyCarried"
	case err == errNoSegment || errors.Is(err, measlist.ErrKexecTooLarge):
		return "ErrKexecTooLarge"
	case errors.As(err, &e):
		if n, ok := errnoNames[e]; ok {
			return n
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	return err.Error()
}

// sameErr compares the model's error with the system's: the same errno
// (errors.Is on syscall.Errno), or the same sentinel.
func sameErr(model, sys error) bool {
	if model == nil || sys == nil {
		return model == nil && sys == nil
	}
	if model == errNoSegment {
		return errors.Is(sys, measlist.ErrKexecTooLarge)
	}
	var me syscall.Errno
	if errors.As(model, &me) {
		var se syscall.Errno
		return errors.As(sys, &se) && se == me && errors.Is(sys, me)
	}
	return errors.Is(sys, model)
}

// fileErr checks that a file operation's error is wrapped as the os package
// wraps it, then compares it.
func fileErr(model, sys error) bool {
	if sys != nil && sys != io.EOF {
		var pe *fs.PathError
		if !errors.As(sys, &pe) {
			return false
		}
	}
	return sameErr(model, sys)
}

// emit adds a script line for an operation and its result, and returns a
// mismatch if the model and the system disagree.
func (s *system) emit(line string, ok bool, model, sys string) error {
	if ok {
		s.script.add(line + " -> " + model)
		return nil
	}
	s.script.add(line + " -> MISMATCH")
	return mismatch("%s: model %s, system %s", line, model, sys)
}

// pickFile resolves an operation's file selector: mostly the file opened
// last (so that open, A, read, D on one file happen in a row), often
// another open file, sometimes any file of the sequence (closed ones too).
func (s *system) pickFile(sel int) int {
	var open []int
	for i, f := range s.m.files {
		if !f.closed {
			open = append(open, i)
		}
	}
	switch {
	case sel < 144 && len(open) > 0:
		return open[len(open)-1]
	case sel < 240 && len(open) > 0:
		return open[sel%len(open)]
	case len(s.m.files) > 0:
		return sel % len(s.m.files)
	}
	return -1
}

// step applies op to the model and to the system, and checks that they
// answer alike and end in the same state.
func (s *system) step(op op) error {
	s.ops++
	if err := s.apply(op); err != nil {
		return err
	}
	return s.check()
}

func (s *system) apply(op op) error {
	m := s.m
	k := s.cur()
	switch op.kind {
	case opMeasureFile:
		line := op.describe(0, nil)
		me := m.measureFile(op.path, op.content, op.pcr, op.template)
		f := ima.NewFile(op.path, op.content)
		f.PCR, f.Template = rulePCR(op.pcr), op.template
		se := k.Measure(f)
		return s.emit(line, sameErr(me, se), errString(me), errString(se))
	case opMeasureBuffer:
		line := op.describe(0, nil)
		me := m.measureBuffer(op.path, op.content, op.pcr, op.hash)
		se := k.MeasureBuffer(op.path, op.content, ima.BufferOptions{HashBuffer: op.hash, PCR: rulePCR(op.pcr)})
		return s.emit(line, sameErr(me, se), errString(me), errString(se))
	case opViolation:
		line := op.describe(0, nil)
		me := m.violation(op.path, op.cause)
		se := k.Violation(op.path, nil, op.cause)
		return s.emit(line, sameErr(me, se), errString(me), errString(se))
	case opOpen:
		line := op.describe(0, nil)
		mf, me := m.Open(op.task, op.file, op.flag)
		sf, se := k.SecurityFS().Open(tasks[op.task], op.file, op.flag)
		if me == nil && se == nil {
			s.files = append(s.files, sf)
			return s.emit(line, true, fmt.Sprintf("fd%d", mf.num), "")
		}
		if se == nil {
			sf.Close()
		}
		if me == nil {
			m.Close(mf, mf.task)
		}
		return s.emit(line, fileErr(me, se), errString(me), errString(se))
	case opWrite:
		i := s.pickFile(op.fd)
		if i < 0 {
			s.script.add(op.describe(0, op.data) + " -> (no file)")
			return nil
		}
		mf, sf := m.files[i], s.files[i]
		data := op.data
		if op.nRel {
			data = []byte(fmt.Sprintf("%d\n", m.currentLen(mf.k)+op.nDelta))
		}
		line := op.describe(mf.num, data)
		mn, me := m.Write(mf, data)
		sn, se := sf.Write(data)
		return s.emit(line, mn == sn && fileErr(me, se), resultString(mn, me), resultString(sn, se))
	case opRead:
		i := s.pickFile(op.fd)
		if i < 0 {
			s.script.add(op.describe(0, nil) + " -> (no file)")
			return nil
		}
		mf, sf := m.files[i], s.files[i]
		line := op.describe(mf.num, nil)
		mb, me := m.Read(mf, op.Size)
		buf := make([]byte, op.Size)
		sn, se := sf.Read(buf)
		ok := sn == len(mb) && bytes.Equal(buf[:sn], mb) && fileErr(me, se)
		err := s.emit(line, ok, bytesString(len(mb), me), bytesString(sn, se))
		if err != nil && sn == len(mb) {
			err = mismatch("%v\nmodel bytes  %q\nsystem bytes %q", err, mb, buf[:sn])
		}
		return err
	case opSeek:
		i := s.pickFile(op.fd)
		if i < 0 {
			s.script.add(op.describe(0, nil) + " -> (no file)")
			return nil
		}
		mf, sf := m.files[i], s.files[i]
		line := op.describe(mf.num, nil)
		mo, me := m.Seek(mf, op.offset, op.whence)
		so, se := sf.Seek(op.offset, op.whence)
		return s.emit(line, mo == so && fileErr(me, se), resultString(int(mo), me), resultString(int(so), se))
	case opClose:
		i := s.pickFile(op.fd)
		if i < 0 {
			s.script.add(op.describe(0, nil) + " -> (no file)")
			return nil
		}
		mf, sf := m.files[i], s.files[i]
		task := op.closeAs
		if task < 0 {
			task = mf.task
		}
		line := op.describe(mf.num, nil)
		me := m.Close(mf, task)
		se := sf.CloseAs(tasks[task])
		return s.emit(line, fileErr(me, se), errString(me), errString(se))
	case opCat:
		return s.cat(op)
	case opEcho:
		return s.echo(op)
	case opKexecLoad:
		line := op.describe(0, nil)
		mseg, me := m.kexecLoad()
		sseg, se := k.KexecLoad()
		return s.emit(line, mseg == sseg && sameErr(me, se), resultString(int(mseg), me), resultString(int(sseg), se))
	case opKexec:
		line := op.describe(0, nil)
		carried, lost, partial := m.kexec()
		nk, err := k.Kexec()
		if err != nil {
			return mismatch("%s: system: %v", line, err)
		}
		s.addKernel(nk)
		res, rerr := nk.Restored()
		want := fmt.Sprintf("carried %d, lost %d", carried, lost)
		got := "carried nothing (no CONFIG_IMA_KEXEC)"
		ok := res == nil && !s.cfg.kexec
		if res != nil {
			got = fmt.Sprintf("restored %d, restore error %v", res.Restored, rerr)
			ok = s.cfg.kexec && res.Restored == carried && (rerr != nil) == partial
		}
		if !s.cfg.kexec {
			want = got
		}
		if err := s.emit(line, ok, want, got); err != nil {
			return err
		}
		if op.follow {
			return s.collectorSwitch()
		}
		return nil
	case opReboot:
		line := op.describe(0, nil)
		m.reboot()
		nk, err := k.Reboot()
		if err != nil {
			return mismatch("%s: system: %v", line, err)
		}
		s.addKernel(nk)
		s.script.add(line)
		if op.follow {
			return s.collectorSwitch()
		}
		return nil
	case opCollect:
		line := op.describe(0, nil)
		flav := collector.DeleteN
		if op.prompt {
			flav = collector.Prompt
		}
		mr, me := m.collect(op.prompt)
		sr, se := s.coll.CycleFlavour(flav)
		return s.emit(line, mr == sr && sameErr(me, se), collString(mr, me), collString(sr, se))
	case opCollectorSwitch:
		return s.collectorSwitch()
	case opFailAlloc:
		m.armFailAlloc()
		s.failNext = true
		s.script.add(op.describe(0, nil))
		return nil
	}
	return fmt.Errorf("harness: unknown operation %d", op.kind)
}

func (s *system) collectorSwitch() error {
	kind, me := s.m.collectorSwitch()
	k := s.cur()
	se := s.coll.SwitchKernel(k.FS(staging.Root(collectorTID)), k.BootID(), kind)
	how := "kexec"
	if kind == collector.Reboot {
		how = "reboot"
	}
	line := fmt.Sprintf("collector switch to the running kernel (after a %s)", how)
	return s.emit(line, sameErr(me, se), errString(me), errString(se))
}

func resultString(n int, err error) string {
	if err != nil {
		return errString(err)
	}
	return fmt.Sprint(n)
}

func bytesString(n int, err error) string {
	if err != nil {
		return errString(err)
	}
	return fmt.Sprintf("%d bytes", n)
}

func collString(r collector.Result, err error) string {
	s := fmt.Sprintf("read %d saved %d", r.Read, r.Saved)
	if r.Note != "" {
		s += fmt.Sprintf(" (%s)", r.Note)
	}
	if err != nil {
		s += " " + errString(err)
	}
	return s
}

func (m *model) currentLen(k *mKernel) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, _ := k.q.Lists()
	return len(cur)
}

// cat opens a file as a task, reads it to EOF with reads of op.Size bytes,
// and closes it, on both sides.
func (s *system) cat(op op) error {
	m := s.m
	line := op.describe(0, nil)
	m.mu.Lock()
	mf, me := m.open(m.cur(), op.task, op.file, os.O_RDONLY)
	m.mu.Unlock()
	sf, se := s.cur().SecurityFS().Open(tasks[op.task], op.file, os.O_RDONLY)
	if me != nil || se != nil {
		if se == nil {
			sf.Close()
		}
		if me == nil {
			m.Close(mf, mf.task)
		}
		return s.emit(line, fileErr(me, se), "open "+errString(me), "open "+errString(se))
	}
	var mall, sall []byte
	var mrerr, srerr error
	for range 1 << 16 {
		b, err := m.Read(mf, op.Size)
		mall = append(mall, b...)
		if err != nil {
			mrerr = err
			break
		}
	}
	buf := make([]byte, op.Size)
	for range 1 << 16 {
		n, err := sf.Read(buf)
		sall = append(sall, buf[:n]...)
		if err != nil {
			srerr = err
			break
		}
	}
	mce := m.Close(mf, mf.task)
	sce := sf.Close()
	ok := bytes.Equal(mall, sall) && fileErr(mrerr, srerr) && sameErr(mce, sce)
	err := s.emit(line, ok, fmt.Sprintf("%d bytes, %s", len(mall), errString(mrerr)),
		fmt.Sprintf("%d bytes, %s, close %s", len(sall), errString(srerr), errString(sce)))
	if err != nil {
		err = mismatch("%v\nmodel  %q\nsystem %q", err, mall, sall)
	}
	return err
}

// echo is a shell's `echo -n DATA > FILE`: open O_WRONLY|O_CREAT|O_TRUNC,
// one write, close.
func (s *system) echo(op op) error {
	m := s.m
	k := m.cur()
	data := op.data
	if op.nRel {
		data = []byte(fmt.Sprintf("%d\n", m.currentLen(k)+op.nDelta))
	}
	m.mu.Lock()
	line := op.describe(0, data)
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	mf, me := m.open(k, op.task, op.file, flag)
	m.mu.Unlock()
	sf, se := s.cur().SecurityFS().Open(tasks[op.task], op.file, flag)
	if me != nil || se != nil {
		if se == nil {
			sf.Close()
		}
		if me == nil {
			m.Close(mf, mf.task)
		}
		return s.emit(line, fileErr(me, se), "open "+errString(me), "open "+errString(se))
	}
	mn, mwe := m.Write(mf, data)
	sn, swe := sf.Write(data)
	mce := m.Close(mf, mf.task)
	sce := sf.Close()
	return s.emit(line, mn == sn && fileErr(mwe, swe) && sameErr(mce, sce),
		resultString(mn, mwe), resultString(sn, swe)+", close "+errString(sce))
}

// check compares everything observable: per kernel instance the counters,
// the sizes, the suspended flag and the open/writer bookkeeping; for the
// running kernel the lists, the hash table (its size and the membership of
// every key ever computed) and the counter files; the TPM's PCRs; and the
// collector's committed records.
func (s *system) check() error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.kernels) != len(s.kernels) {
		return mismatch("model has %d kernel instances, system %d", len(m.kernels), len(s.kernels))
	}
	for i, mk := range m.kernels {
		if err := s.checkKernel(mk, s.kernels[i], i == len(m.kernels)-1); err != nil {
			return err
		}
	}
	pcrs, err := s.tpm.ReadPCRs()
	if err != nil {
		return err
	}
	want := m.pcrValues()
	for _, b := range s.cfg.banks {
		for i := range tpmext.NumPCRs {
			if !bytes.Equal(pcrs[b][i], want[b][i]) {
				return mismatch("PCR %d of bank %s: model %x, system %x", i, b, want[b][i], pcrs[b][i])
			}
		}
	}
	if got := s.coll.Committed(); got != len(m.coll.committed) {
		return mismatch("collector committed: model %d records, system %d", len(m.coll.committed), got)
	}
	return nil
}

func (s *system) checkKernel(mk *mKernel, k *ima.Kernel, running bool) error {
	q := k.Queue()
	name := fmt.Sprintf("kernel %d", mk.n)
	snap := mk.q.Snapshot()
	for c, counter := range []measlist.Counter{measlist.Binary, measlist.BinaryStaged, measlist.BinaryFull} {
		if got := q.NumRecords(counter); got != snap.Counts[c] {
			return mismatch("%s: %s: model %d, system %d", name, counter, snap.Counts[c], got)
		}
		if got := q.BinaryRuntimeSize(counter); got != snap.Sizes[c] {
			return mismatch("%s: binary_runtime_size[%s]: model %d, system %d", name, counter, snap.Sizes[c], got)
		}
	}
	if got := q.NumViolations(); got != snap.Violations {
		return mismatch("%s: violations: model %d, system %d", name, snap.Violations, got)
	}
	if got := q.Suspended(); got != snap.Suspended {
		return mismatch("%s: suspended: model %v, system %v", name, snap.Suspended, got)
	}
	ms, want := k.SecurityFS().MeasureState(), mk.users.State()
	if ms != want {
		return mismatch("%s: open bookkeeping: model %+v, system %+v", name, want, ms)
	}
	if !running {
		return nil
	}
	return s.checkRunning(mk, k)
}

// checkRunning compares the running kernel's lists, hash table and counter
// files.
func (s *system) checkRunning(mk *mKernel, k *ima.Kernel) error {
	q := k.Queue()
	if err := s.checkLists(mk, k); err != nil {
		return err
	}
	if got, want := q.HtableLen(), mk.q.Snapshot().HtableLen; got != want {
		return mismatch("hash table: model %d insertions, system %d", want, got)
	}
	for _, key := range s.m.seen {
		if got, want := q.InHtable([]byte(key.Digest), key.PCR), mk.q.InHtable(key); got != want {
			return mismatch("hash table membership of (%x, pcr %d): model %v, system %v", key.Digest, key.PCR, want, got)
		}
	}
	for _, name := range []string{"runtime_measurements_count", "violations"} {
		f, err := k.SecurityFS().Open(staging.Root(99), name, os.O_RDONLY)
		if err != nil {
			return mismatch("opening %s: %v", name, err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return mismatch("reading %s: %v", name, err)
		}
		if want := mk.counterText(s.m.nodes[name]); !bytes.Equal(got, want) {
			return mismatch("%s: model %q, system %q", name, want, got)
		}
	}
	return nil
}

// checkLists compares a kernel's current and staged lists record by record
// (the binary record with the SHA-1 column).
func (s *system) checkLists(mk *mKernel, k *ima.Kernel) error {
	q := k.Queue()
	for _, h := range []measlist.Head{measlist.Current, measlist.Staged} {
		want := s.m.list(mk, h == measlist.Staged)
		got := q.Entries(h)
		if len(got) != len(want) {
			return mismatch("kernel %d: %s list: model %d records, system %d", mk.n, h, len(want), len(got))
		}
		for i, e := range got {
			b, err := e.AppendBinary(nil, k.Layout().SHA1Index(), k.Layout().Order())
			if err != nil {
				return mismatch("kernel %d: %s record %d: %v", mk.n, h, i, err)
			}
			if !bytes.Equal(b, want[i].dump) {
				return mismatch("kernel %d: %s record %d: model %q (%s), system %q", mk.n, h, i, want[i].dump, want[i].what, b)
			}
		}
	}
	return nil
}

// finish ends a sequence: every open file is closed by its task, the
// collector follows the running kernel, every list and counter file is read
// by a fresh reader, and the end-of-sequence properties are checked:
//
//   - the collector serves its store ++ staged ++ current alike on both
//     sides;
//   - what was deleted (in the order it was deleted) ++ staged ++ current
//     is the log as if staging never happened (or, after an N that ran
//     while records were staged, the same records in log order: docs/SPEC.md §4.2);
//   - that log replays to the TPM's PCRs in every bank (unless a kexec lost
//     records or carried nothing);
//   - when only the collector deleted records since the cold boot, its
//     Records(0) is that log, byte for byte.
func (s *system) finish() error {
	m := s.m
	for i, mf := range m.files {
		if !mf.closed {
			op := op{kind: opClose, closeAs: -1}
			line := op.describe(mf.num, nil)
			me := m.Close(mf, mf.task)
			se := s.files[i].CloseAs(tasks[mf.task])
			if err := s.emit(line, fileErr(me, se), errString(me), errString(se)); err != nil {
				return err
			}
		}
	}
	if m.coll.k != m.cur() {
		if err := s.collectorSwitch(); err != nil {
			return err
		}
	}
	if err := s.check(); err != nil {
		return err
	}
	for _, name := range m.names {
		if err := s.cat(op{kind: opCat, task: 0, file: name, Size: 4096}); err != nil {
			return err
		}
	}
	mrec, me := m.collectorRecords()
	srec, se := s.coll.Records(0)
	if !sameErr(me, se) {
		return mismatch("collector Records(0): model %s, system %s", errString(me), errString(se))
	}
	if me == nil {
		if len(mrec) != len(srec) {
			return mismatch("collector Records(0): model %d records, system %d", len(mrec), len(srec))
		}
		for i := range mrec {
			if !bytes.Equal(mrec[i].dump, srec[i]) {
				return mismatch("collector Records(0) record %d: model %q, system %q", i, mrec[i].dump, srec[i])
			}
		}
		s.script.add(fmt.Sprintf("# the collector serves %d records", len(srec)))
	}
	if err := s.check(); err != nil {
		return err
	}
	for i, mk := range m.kernels {
		if err := s.checkLists(mk, s.kernels[i]); err != nil {
			return err
		}
	}
	if err := m.checkEpoch(); err != nil {
		return err
	}
	if err := s.checkReplay(); err != nil {
		return err
	}
	ep := m.ep
	if ep.collectorWrong {
		s.script.add("# the collector's log is not checked against the log: it decided a pending batch against what the kernel did (a known limitation)")
	}
	if ep.collectorAligned && !ep.rawDeleted && !ep.noReplay && !ep.gap && !ep.collectorWrong && me == nil {
		if len(srec) != len(ep.log) {
			return mismatch("the collector serves %d records, the log as if staging never happened has %d", len(srec), len(ep.log))
		}
		for i, r := range ep.log {
			if !bytes.Equal(srec[i], r.dump) {
				return mismatch("the collector's record %d differs from the log as if staging never happened: %q, want %q", i, srec[i], r.dump)
			}
		}
		s.script.add("# the collector's log is the log as if staging never happened")
	}
	return nil
}

// checkEpoch checks, on the model (whose lists equal the system's), that
// deleted ++ staged ++ current is the log as if staging never happened.
func (m *model) checkEpoch() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.cur()
	var all []*record
	for _, b := range m.ep.deleted {
		all = append(all, b...)
	}
	all = append(append(all, m.list(k, true)...), m.list(k, false)...)
	if m.ep.gap {
		all = slices.Clone(all)
		sort.SliceStable(all, func(i, j int) bool { return all[i].id < all[j].id })
	}
	if len(all) != len(m.ep.log) {
		return mismatch("deleted ++ staged ++ current holds %d records, the log as if staging never happened %d", len(all), len(m.ep.log))
	}
	for i, r := range m.ep.log {
		if all[i] != r {
			return mismatch("deleted ++ staged ++ current differs from the log at record %d: %s (#%d), want %s (#%d)",
				i, all[i].what, all[i].id, r.what, r.id)
		}
	}
	return nil
}

// checkReplay replays the log as if staging never happened onto reset PCRs
// and compares every PCR of every bank with the TPM.
func (s *system) checkReplay() error {
	m := s.m
	if m.ep.noReplay {
		return nil
	}
	pcrs, err := s.tpm.ReadPCRs()
	if err != nil {
		return err
	}
	for _, b := range s.cfg.banks {
		want := make([][]byte, tpmext.NumPCRs)
		for i := range want {
			want[i] = tpmext.InitialPCRValue(i, b)
		}
		for _, r := range m.ep.log {
			want[r.pcr] = tpmext.ExtendValue(b, want[r.pcr], extendDigest(r, b, m.order))
		}
		for i := range want {
			if !bytes.Equal(want[i], pcrs[b][i]) {
				return mismatch("replaying the log as if staging never happened: PCR %d of bank %s is %x, the TPM has %x", i, b, want[i], pcrs[b][i])
			}
		}
	}
	s.script.add(fmt.Sprintf("# the log as if staging never happened (%d records) replays to every PCR of every bank", len(m.ep.log)))
	return nil
}

// runSequence runs one sequence drawn from src (a configuration, then up to
// maxOps operations, fewer if src runs out) with the collector's store in
// dir, and checks it. It returns the script and the first mismatch.
func runSequence(src source, dir string, maxOps int) (*system, error) {
	cfg := genConfig(src)
	if src.done() {
		return nil, nil
	}
	s, err := newSystem(cfg, dir)
	if err != nil {
		return s, err
	}
	defer s.Close()
	for range maxOps {
		op := genOp(src)
		if src.done() {
			break
		}
		if err := s.step(op); err != nil {
			return s, err
		}
	}
	return s, s.finish()
}

// rulePCR is the policy rule of an operation's pcr (-1: no pcr=).
func rulePCR(pcr int) ima.RulePCR {
	if pcr < 0 {
		return ima.RulePCR{}
	}
	return ima.PCR(uint32(pcr))
}
