package measlist

// The model-based property test: random operation sequences applied to the
// queue and to the reference model of measlisttest, comparing
// everything observable after every step. TestQueueMatchesModel runs seeded
// sequences; FuzzQueue decodes a sequence from the fuzzer's bytes. Both use
// runSequence, so a failing fuzz input and a failing seed print the same
// readable list of operations.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/imasim/imasim/tpmext"
)

// modelConfig is one kernel configuration of a sequence.
type modelConfig struct {
	flush, noHtable, kexec, noTPM, bigEndian bool
}

func decodeConfig(b byte) modelConfig {
	return modelConfig{b&1 != 0, b&2 != 0, b&4 != 0, b&8 != 0, b&16 != 0}
}

func (c modelConfig) String() string {
	var s []string
	for _, k := range []struct {
		on   bool
		name string
	}{{c.flush, "ima_flush_htable"}, {c.noHtable, "IMA_DISABLE_HTABLE"}, {c.kexec, "IMA_KEXEC"}, {c.noTPM, "no TPM"}, {c.bigEndian, "big-endian"}} {
		if k.on {
			s = append(s, k.name)
		}
	}
	if len(s) == 0 {
		return "{defaults}"
	}
	return "{" + strings.Join(s, ", ") + "}"
}

type opKind uint8

const (
	opAdd opKind = iota
	opViolation
	opStage
	opDelete
	opDeleteNoMem
	opPartial
	opSuspend
	opKexec
)

// op is one step; arg is the pool index (add, violation), the PCR choice
// (add), N (partial) or the segment choice (kexec).
type op struct {
	kind     opKind
	arg, pcr int
}

// The pool of records: few enough that duplicates are frequent.
const poolSize = 10

var pcrChoices = []uint32{10, 10, 10, 10, 10, 11, 17, 30} // 17 and 30: the TPM refuses

func (o op) String() string {
	switch o.kind {
	case opAdd:
		return fmt.Sprintf("add %s pcr %d", poolName(o.arg), pcrChoices[o.pcr])
	case opViolation:
		return fmt.Sprintf("violation /tmp/v%d", o.arg%2)
	case opStage:
		return "A"
	case opDelete:
		return "D"
	case opDeleteNoMem:
		return "D (flush allocation fails)"
	case opPartial:
		return fmt.Sprintf("N %d", o.arg)
	case opSuspend:
		return "suspend"
	case opKexec:
		if o.arg%4 != 3 {
			return "suspend, kexec (segment as sized at load)"
		}
		return fmt.Sprintf("suspend, kexec (segment of %d bytes)", kexecSmallSegment(o.arg))
	}
	return fmt.Sprintf("op(%d)", o.kind)
}

func kexecSmallSegment(arg int) uint64 { return uint64(KexecHeaderSize + (arg/4)*7) }

func poolName(i int) string {
	switch {
	case i < 6:
		return fmt.Sprintf("/bin/f%d content v%d (ima-ng)", i%3, i/3)
	case i < 8:
		return fmt.Sprintf("/etc/s%d (ima-sig)", i-6)
	case i == 8:
		return "kexec-cmdline buffer (ima-buf)"
	}
	return "/usr/lib/<long path> (ima-ng)"
}

// poolEntry builds a fresh record of the pool (a new entry each time, so
// that identity tells records apart while digests repeat).
func poolEntry(l *template.Layout, i int, pcr uint32) *template.Entry {
	var ev *template.Event
	var err error
	desc := template.Builtin("ima-ng")
	switch {
	case i < 6:
		ev, err = template.NewFileEvent(fmt.Sprintf("/bin/f%d", i%3), &template.File{Content: []byte(fmt.Sprintf("v%d", i/3))}, template.HashSHA256, nil)
	case i < 8:
		desc = template.Builtin("ima-sig")
		ev, err = template.NewFileEvent(fmt.Sprintf("/etc/s%d", i-6), &template.File{Content: []byte("sig"), IMAXattr: []byte{0x03, 0x02, 0x04, byte(i)}}, template.HashSHA256, nil)
	case i == 8:
		desc = template.Builtin("ima-buf")
		ev = l.BufferEvent("kexec-cmdline", []byte("root=/dev/sda1 ro"), false)
	default:
		ev, err = template.NewFileEvent("/usr/lib/"+strings.Repeat("long-directory-name/", 9)+"libx.so", &template.File{Content: []byte("long")}, template.HashSHA256, nil)
	}
	if err != nil {
		panic(err)
	}
	e, err := l.NewEntry(desc, pcr, ev)
	if err != nil {
		panic(err)
	}
	return e
}

func violationEntry(l *template.Layout, i int) *template.Entry {
	e, err := l.NewEntry(template.Builtin("ima-ng"), 10, template.NewViolationEvent(fmt.Sprintf("/tmp/v%d", i%2), nil, "ToMToU"))
	if err != nil {
		panic(err)
	}
	return e
}

// decodeOps turns bytes into operations: one byte selects the operation,
// the next ones its arguments (0 when the input has run out).
func decodeOps(data []byte, max int) []op {
	var ops []op
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	for len(data) > 0 && len(ops) < max {
		var o op
		switch b := next() % 16; {
		case b < 6:
			o = op{kind: opAdd, arg: next() % poolSize, pcr: next() % len(pcrChoices)}
		case b == 6:
			o = op{kind: opViolation, arg: next() % 2}
		case b < 9:
			o = op{kind: opStage}
		case b < 11:
			o = op{kind: opDelete}
		case b == 11:
			o = op{kind: opDeleteNoMem}
		case b < 14:
			o = op{kind: opPartial, arg: next() % 9}
		case b == 14:
			o = op{kind: opSuspend}
		default:
			o = op{kind: opKexec, arg: next()}
		}
		ops = append(ops, o)
	}
	return ops
}

// harness drives a queue and a model through the same operations.
type harness struct {
	t      testing.TB
	cfg    modelConfig
	mcfg   measlisttest.Config
	qcfg   Config
	tpm    *tpmext.Software
	q      *Queue
	m      *measlisttest.Model
	fail   bool // the queue's allocation failure switch
	keys   map[measlisttest.Key]bool
	enc    map[*template.Entry][]byte // every record's SHA-256 binary encoding when added
	freed  int                        // how many of m.Freed() were checked
	done   []op
	kexecs int
}

func newHarness(t testing.TB, cfg modelConfig) *harness {
	h := &harness{t: t, cfg: cfg, keys: map[measlisttest.Key]bool{}, enc: map[*template.Entry][]byte{}}
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	order := template.LittleEndian
	if cfg.bigEndian {
		order = template.BigEndian
	}
	l, err := template.NewLayout(banks, template.HashSHA256, order)
	if err != nil {
		t.Fatal(err)
	}
	h.qcfg = Config{Layout: l, HtableDisabled: cfg.noHtable, FlushHtable: cfg.flush, Kexec: cfg.kexec}
	h.mcfg = measlisttest.Config{Layout: l, HtableDisabled: cfg.noHtable, FlushHtable: cfg.flush, Kexec: cfg.kexec}
	if !cfg.noTPM {
		h.tpm, err = tpmext.NewSoftware(banks...)
		if err != nil {
			t.Fatal(err)
		}
		h.qcfg.TPM = h.tpm
		h.mcfg.Banks = banks
	}
	h.q = h.newQueue()
	h.m = measlisttest.New(h.mcfg)
	h.m.SetFailAlloc(func() bool { return h.fail })
	return h
}

func (h *harness) newQueue() *Queue {
	q, err := New(h.qcfg)
	if err != nil {
		h.t.Fatal(err)
	}
	q.SetFailAlloc(func() bool { return h.fail })
	return q
}

// fatalf reports a divergence with the whole sequence that led to it.
func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "queue and model differ after step %d: %s\nconfig %v, operations:\n", len(h.done), fmt.Sprintf(format, args...), h.cfg)
	for i, o := range h.done {
		fmt.Fprintf(&b, "  %3d. %v\n", i+1, o)
	}
	h.t.Fatal(b.String())
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ea, eb syscall.Errno
	return errors.As(a, &ea) && errors.As(b, &eb) && ea == eb
}

func (h *harness) track(e *template.Entry) {
	h.keys[measlisttest.KeyOf(h.qcfg.Layout, e)] = true
	b, err := e.AppendBinary(nil, h.qcfg.Layout.HashIndex(), h.qcfg.Layout.Order())
	if err != nil {
		h.t.Fatal(err)
	}
	h.enc[e] = b
}

func (h *harness) step(o op) {
	h.t.Helper()
	h.done = append(h.done, o)
	l := h.qcfg.Layout
	switch o.kind {
	case opAdd, opViolation:
		var e *template.Entry
		if o.kind == opAdd {
			e = poolEntry(l, o.arg, pcrChoices[o.pcr])
		} else {
			e = violationEntry(l, o.arg)
			h.q.AddViolation()
			h.m.AddViolation()
		}
		h.track(e)
		if qerr, merr := h.q.Add(e), h.m.Add(e); !sameErr(qerr, merr) {
			h.fatalf("add: queue %v, model %v", qerr, merr)
		}
	case opStage:
		if qerr, merr := h.q.Stage(), h.m.Stage(); !sameErr(qerr, merr) {
			h.fatalf("A: queue %v, model %v", qerr, merr)
		}
	case opDelete, opDeleteNoMem:
		h.fail = o.kind == opDeleteNoMem
		qn, qerr := h.q.DeleteStaged()
		deleted, merr := h.m.DeleteStaged()
		h.fail = false
		mn := len(deleted)
		if merr != nil {
			mn = 0 // the queue counts only what it deleted
		}
		if qn != mn || !sameErr(qerr, merr) {
			h.fatalf("D: queue (%d, %v), model (%d, %v)", qn, qerr, mn, merr)
		}
	case opPartial:
		qerr := h.q.DeletePartial(uint64(o.arg))
		if _, merr := h.m.DeletePartial(uint64(o.arg)); !sameErr(qerr, merr) {
			h.fatalf("N: queue %v, model %v", qerr, merr)
		}
	case opSuspend:
		h.q.Suspend()
		h.m.Suspend()
	case opKexec:
		h.kexec(o)
	}
	h.check()
}

// kexec suspends, dumps, and restores into a fresh queue and model; the
// TPM is shared (kexec does not reset it).
func (h *harness) kexec(o op) {
	h.t.Helper()
	h.q.Suspend()
	h.m.Suspend()
	h.check()
	qseg, qerr := h.q.KexecSegmentSize(KexecOptions{})
	mseg, mok := h.m.KexecSegmentSize(0, 0, 0)
	if (qerr == nil) != mok || qseg != mseg {
		h.fatalf("kexec segment size: queue (%d, %v), model (%d, %v)", qseg, qerr, mseg, mok)
	}
	if qerr != nil && !errors.Is(qerr, ErrKexecTooLarge) {
		h.fatalf("kexec segment size: %v", qerr)
	}
	seg := qseg
	if o.arg%4 == 3 {
		seg = kexecSmallSegment(o.arg)
	} else if qerr != nil {
		// Without CONFIG_IMA_KEXEC the kernel carries nothing; the dump
		// and restore are still exercised with a segment that fits.
		whole, _ := h.m.Dump(math.MaxUint64)
		seg = uint64(len(whole))
	}
	qdump, qderr := h.q.DumpKexec(seg)
	mdump, mderr := h.m.Dump(seg)
	if !sameErr(qderr, mderr) || !bytes.Equal(qdump, mdump) {
		h.fatalf("kexec dump into %d bytes: queue %d bytes (%v), model %d bytes (%v)\nqueue %x\nmodel %x", seg, len(qdump), qderr, len(mdump), mderr, qdump, mdump)
	}
	want, wantErr := h.m.Carried(seg)

	h.q = h.newQueue()
	res, rerr := h.q.RestoreKexec(qdump)
	if !sameErr(rerr, wantErr) || res.Restored != len(want) || res.Stopped != nil {
		h.fatalf("kexec restore: got (%d restored, stopped %v, %v), want (%d, %v)", res.Restored, res.Stopped, rerr, len(want), wantErr)
	}
	got := h.q.Entries(Current)
	if len(got) != len(want) {
		h.fatalf("kexec restore: %d records in the new list, want %d", len(got), len(want))
	}
	for i, e := range got {
		w := want[i]
		wb, gb := h.enc[w], h.encode(e)
		if !bytes.Equal(wb, gb) || e.Violation != w.Violation || fmt.Sprint(e.Digests) != fmt.Sprint(w.Digests) {
			h.fatalf("kexec restore: record %d is\n%x %v\nwant\n%x %v", i, gb, e.Digests, wb, w.Digests)
		}
		h.track(e)
	}
	h.m = h.m.Kexec(got)
	h.freed = 0
	h.kexecs++
}

func (h *harness) encode(e *template.Entry) []byte {
	b, err := e.AppendBinary(nil, h.qcfg.Layout.HashIndex(), h.qcfg.Layout.Order())
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// check compares everything observable.
func (h *harness) check() {
	h.t.Helper()
	q, want := h.q, h.m.Snapshot()
	lists := [][2][]*template.Entry{{q.Entries(Current), want.Current}, {q.Entries(Staged), want.Staged}}
	for i, l := range lists {
		if len(l[0]) != len(l[1]) {
			h.fatalf("%v list: queue has %d records, model %d", Head(i), len(l[0]), len(l[1]))
		}
		for j := range l[0] {
			if l[0][j] != l[1][j] {
				h.fatalf("%v list: record %d is %s, model says %s", Head(i), j, describe(l[0][j]), describe(l[1][j]))
			}
			if !bytes.Equal(h.encode(l[0][j]), h.enc[l[0][j]]) {
				h.fatalf("%v list: record %d (%s) changed", Head(i), j, describe(l[0][j]))
			}
		}
	}
	counts := [3]int64{q.NumRecords(Binary), q.NumRecords(BinaryStaged), q.NumRecords(BinaryFull)}
	if counts != want.Counts {
		h.fatalf("counters: queue %v, model %v", counts, want.Counts)
	}
	for _, c := range counts {
		if c < 0 {
			h.fatalf("negative counter %v", counts)
		}
	}
	sizes := [3]uint64{q.BinaryRuntimeSize(Binary), q.BinaryRuntimeSize(BinaryStaged), q.BinaryRuntimeSize(BinaryFull)}
	if sizes != want.Sizes {
		h.fatalf("sizes: queue %v, model %v", sizes, want.Sizes)
	}
	if v := q.NumViolations(); v != want.Violations {
		h.fatalf("violations: queue %d, model %d", v, want.Violations)
	}
	if g := q.Generation(); g != want.Generation {
		h.fatalf("generation: queue %d, model %d", g, want.Generation)
	}
	if n := q.HtableLen(); n != want.HtableLen {
		h.fatalf("hash table length: queue %d, model %d", n, want.HtableLen)
	}
	for k := range h.keys {
		if got, w := q.InHtable([]byte(k.Digest), k.PCR), h.m.InHtable(k); got != w {
			h.fatalf("hash table membership of %x pcr %d: queue %v, model %v", k.Digest[:4], k.PCR, got, w)
		}
	}
	if s := q.Suspended(); s != want.Suspended {
		h.fatalf("suspended: queue %v, model %v", s, want.Suspended)
	}
	if n, _ := q.TPMErrors(); n != want.TPMErrors {
		h.fatalf("TPM errors: queue %d, model %d", n, want.TPMErrors)
	}
	if h.tpm != nil {
		pcrs, err := h.tpm.ReadPCRs()
		if err != nil {
			h.t.Fatal(err)
		}
		if !pcrs.Equal(want.PCRs) {
			h.fatalf("PCRs differ: queue's TPM %x, model %x", pcrs[tpmext.SHA256][10], want.PCRs[tpmext.SHA256][10])
		}
	}
	if w := h.m.Warnings(); fmt.Sprint(q.Warnings()) != fmt.Sprint(w) || q.FlushHtable() != h.m.FlushHtable() {
		h.fatalf("warnings: queue %q, model %q", q.Warnings(), w)
	}
	km := q.KernelMemory()
	if got, w := [5]int64{km.Lists, km.Retained, km.Lost, km.Htable, km.WithoutStaging},
		[5]int64{want.KmemLists, want.KmemRetained, want.KmemLost, want.KmemHtable, want.KmemWithoutStaging}; got != w {
		h.fatalf("kernel memory (lists, retained, lost, htable, without staging): queue %v, model %v", got, w)
	}
	if km.Total() != km.Lists+km.Retained+km.Lost+km.Htable {
		h.fatalf("kernel memory total %d is not the sum of %+v", km.Total(), km)
	}
	freed := h.m.Freed()
	for i, e := range freed[h.freed:] {
		for j, fd := range e.Fields {
			if fd != nil {
				h.fatalf("deleted record %d (%p) still holds field %d", h.freed+i, e, j)
			}
		}
	}
	h.freed = len(freed)
	for _, e := range h.m.Lost() {
		if !bytes.Equal(h.encode(e), h.enc[e]) {
			h.fatalf("a record lost by a failed flush was released: %s", describe(e))
		}
	}
}

// runSequence applies a decoded sequence; data[0] selects the config.
func runSequence(t testing.TB, data []byte, maxOps int) *harness {
	if len(data) == 0 {
		return nil
	}
	h := newHarness(t, decodeConfig(data[0]))
	h.check()
	for _, o := range decodeOps(data[1:], maxOps) {
		h.step(o)
	}
	return h
}

// randomSequence returns bytes that decode to a sequence of about n
// operations, the config byte first.
func randomSequence(r *rand.Rand, n int) []byte {
	b := make([]byte, 1+3*n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func TestQueueMatchesModel(t *testing.T) {
	seqs, ops := 1000, 80
	if testing.Short() {
		seqs = 100
	}
	var stats [8]int
	kexecs := 0
	for seed := range uint64(seqs) {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		data := randomSequence(r, ops)
		data[0] = byte(seed % 32) // every configuration in turn
		h := runSequence(t, data, ops)
		for _, o := range h.done {
			stats[o.kind]++
		}
		kexecs += h.kexecs
	}
	t.Logf("%d sequences; operations: add %d, violation %d, A %d, D %d, D+ENOMEM %d, N %d, suspend %d, kexec %d",
		seqs, stats[opAdd], stats[opViolation], stats[opStage], stats[opDelete], stats[opDeleteNoMem], stats[opPartial], stats[opSuspend], kexecs)
}

// The model's own sanity: a hand-written sequence whose outcome is known,
// so that a model that agreed with a wrong queue would be caught.
func TestModelScenario(t *testing.T) {
	// config {IMA_KEXEC}; add f0 v0, add f0 v0 (dup), A, add f1, D, N 1,
	// add f0 v0 (still a dup: no flush), violation, A, suspend, D.
	data := []byte{4, 0, 0, 0, 0, 0, 0, 7, 0, 1, 0, 9, 12, 1, 6, 0, 7, 14, 9}
	h := runSequence(t, data, 100)
	var got []string
	for _, o := range h.done {
		got = append(got, o.String())
	}
	want := []string{"add /bin/f0 content v0 (ima-ng) pcr 10", "add /bin/f0 content v0 (ima-ng) pcr 10", "A",
		"add /bin/f1 content v0 (ima-ng) pcr 10", "D", "N 1", "violation /tmp/v0", "A", "suspend", "D"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("decoded %q,\nwant %q", got, want)
	}
	s := h.m.Snapshot()
	if s.Counts != [3]int64{0, 1, 3} || len(h.m.Freed()) != 2 || !s.Suspended || s.Generation != 4 {
		t.Fatalf("model state %+v, freed %d", s, len(h.m.Freed()))
	}
}

func FuzzQueue(f *testing.F) {
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 7, 0, 1, 0, 9, 12, 1, 6, 0, 7, 14, 9})
	f.Add([]byte{5, 0, 1, 0, 7, 0, 2, 0, 11, 9, 7, 9, 15, 0})
	f.Add([]byte{1, 0, 3, 0, 7, 2, 4, 0, 9, 2, 4, 0, 12, 1, 15, 3})
	f.Add([]byte{6, 0, 0, 0, 6, 1, 7, 0, 5, 0, 13, 8, 15, 47})
	f.Add([]byte{20, 2, 8, 5, 3, 9, 6, 7, 0, 1, 1, 12, 2, 14, 15, 1, 0, 2, 0})
	for seed := range uint64(8) {
		f.Add(randomSequence(rand.New(rand.NewPCG(seed, 1)), 40))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runSequence(t, data, 200)
	})
}
