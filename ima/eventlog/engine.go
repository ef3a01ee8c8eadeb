package eventlog

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"maps"
	"runtime"
	"slices"
	"sync/atomic"

	"github.com/imasim/imasim/tpmext"
)

// The replay pipeline, for a list of records r0, r1, ...:
//
//	producer ──batches──▶ hashing workers ──hashed──▶ one goroutine per bank ──▶ coordinator
//	(parse)              (template digests,          (extends, in list order;   (scans the records in
//	   │                  column check)               the bank's part of the     order; decides)
//	   └──── the same batches, in list order ───────▶ target)
//
// Template digests of different records are independent, so any worker
// hashes any batch. A bank's extends form a hash chain and run in list
// order, but the banks' chains are independent, so each bank has its own
// goroutine. After each record a bank notes whether its part of the target
// matches; the coordinator then finds, in order, the first record with a
// bad template digest or an unchecked PCR, and the first N at which every
// target bank matches. For a stop inside a batch it rebuilds the state at
// N from the banks' values before that batch.

type mode uint8

const (
	modeReplay mode = iota
	modeVerify
	modeUntil
)

// Record flags set by the hashing workers.
const (
	flagViolation uint8 = 1 << iota
	flagBad
	flagSkip
)

// engine is the per-replay hashing plan. Each record gets a row of
// digests: one per bank (at off[j]), then if needed the SHA-1 digest and
// the column's digest when no bank slot already holds them.
type engine struct {
	ds      int
	banks   []digestSpec
	off     []int
	viol    [][]byte
	sha1Off int // -1 when no SHA-1 digest is needed
	col     digestSpec
	colOff  int // -1 without a column (an empty ASCII list)
	colBank int // bank whose slot is the column's digest, or -1
	stride  int
	skip    int         // records below this index are neither hashed nor extended
	stop    atomic.Bool // set when the coordinator has decided
}

func newEngine(f *format, banks []tpmext.Algorithm, opts *ReplayOptions) *engine {
	e := &engine{ds: f.ds, sha1Off: -1, colOff: -1, colBank: -1}
	needSHA1 := false
	for _, alg := range banks {
		s := specFor(alg, opts.PaddedSHA1)
		if alg == tpmext.SHA1 {
			e.sha1Off = e.stride
		}
		needSHA1 = needSHA1 || s.padded
		e.banks = append(e.banks, s)
		e.off = append(e.off, e.stride)
		e.viol = append(e.viol, violationDigest(s, opts.Violations == ViolationsZero))
		e.stride += s.size
	}
	if f.ds != 0 {
		e.col = specFor(f.col, false)
		needSHA1 = needSHA1 || e.col.padded || e.col.alg == tpmext.SHA1
		for j, s := range e.banks {
			if s == e.col {
				e.colBank, e.colOff = j, e.off[j]
				break
			}
		}
	}
	if needSHA1 && e.sha1Off < 0 {
		e.sha1Off = e.stride
		e.stride += 20
	}
	if f.ds != 0 && e.colBank < 0 {
		if e.col.alg == tpmext.SHA1 {
			e.colOff = e.sha1Off
		} else {
			e.colOff = e.stride
			e.stride += e.col.size
		}
	}
	return e
}

// worker holds one hashing goroutine's hashers and scratch space.
type worker struct {
	sha1    *hasher
	banks   []*hasher
	col     *hasher
	scratch [imaHashInputLen]byte
}

func (e *engine) newWorker() *worker {
	w := &worker{sha1: newHasher(tpmext.SHA1), col: newHasher(e.col.alg)}
	for _, s := range e.banks {
		w.banks = append(w.banks, newHasher(s.alg))
	}
	return w
}

// snapStride is the room for one bank's values in batch.snap.
const snapStride = tpmext.NumPCRs * 64

// hashBatch computes every record's digest row and flags, and sizes the
// batch's per-bank match flags and snapshots.
func (e *engine) hashBatch(w *worker, b *batch) {
	n := len(b.recs)
	b.rows = grow(b.rows, n*e.stride)
	b.flags = grow(b.flags, n)
	b.match = grow(b.match, n*len(e.banks))
	b.snap = grow(b.snap, snapStride*len(e.banks))
	if e.stop.Load() {
		return
	}
	for i := range b.recs {
		r := &b.recs[i]
		if b.first+i < e.skip {
			b.flags[i] = flagSkip
			continue
		}
		col := b.buf[r.start+4 : r.start+4+e.ds]
		if allZero(col) {
			b.flags[i] = flagViolation
			continue
		}
		b.flags[i] = 0
		row := b.rows[i*e.stride : (i+1)*e.stride]
		in := hashInput(b.buf, r, &w.scratch)
		var sha1 []byte
		if e.sha1Off >= 0 {
			sha1 = row[e.sha1Off : e.sha1Off+20]
			w.sha1.sum(sha1, in)
		}
		for j := range e.banks {
			s := &e.banks[j]
			d := row[e.off[j] : e.off[j]+s.size]
			switch {
			case s.padded:
				copy(d, sha1)
				clear(d[20:])
			case e.off[j] == e.sha1Off:
			default:
				w.banks[j].sum(d, in)
			}
		}
		if e.colBank < 0 && e.colOff != e.sha1Off {
			d := row[e.colOff : e.colOff+e.col.size]
			if e.col.padded {
				copy(d, sha1)
				clear(d[20:])
			} else {
				w.col.sum(d, in)
			}
		}
		if !bytes.Equal(row[e.colOff:e.colOff+e.ds], col) {
			b.flags[i] = flagBad
		}
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// bank is one PCR bank being replayed, with the target's checks of it.
// Only its goroutine touches it while a replay runs.
type bank struct {
	j       int
	alg     tpmext.Algorithm
	size    int
	off     int // the bank's digest in a record's row
	viol    []byte
	h       *hasher
	vals    []byte // NumPCRs values of size bytes
	scratch []byte
	// The target's checks of this bank.
	target bool
	values []valueCheck
	quotes []quoteCheck
	byPCR  [tpmext.NumPCRs][]int // values checks per PCR
	mask   uint32                // PCRs the checks read
	bad    int                   // checks that do not match
	qh     hash.Hash
	qsum   []byte
}

type valueCheck struct {
	pcr  int
	want []byte
	ok   bool
}

type quoteCheck struct {
	pcrs []int
	mask uint32
	want []byte
	ok   bool
}

func (bk *bank) value(p int) []byte { return bk.vals[p*bk.size : (p+1)*bk.size] }

// extendBatch extends the bank with b's records in order, after saving its
// values in b.snap, and notes after each record whether its checks match.
//
// Mirrors the per-bank part of
// security/integrity/ima/ima_queue.c:ima_pcr_extend() (tpm_pcr_extend()
// with one digest per bank).
func (bk *bank) extendBatch(e *engine, b *batch) {
	if e.stop.Load() {
		return
	}
	n := len(b.recs)
	copy(b.snap[bk.j*snapStride:], bk.vals)
	match := b.match[bk.j*n : (bk.j+1)*n]
	for i := range b.recs {
		fl := b.flags[i]
		if fl&flagSkip != 0 {
			continue
		}
		p := int(b.recs[i].pcr)
		d := bk.viol
		if fl&flagViolation == 0 {
			d = b.rows[i*e.stride+bk.off : i*e.stride+bk.off+bk.size]
		}
		bk.h.extend(bk.value(p), d, bk.scratch)
		if bk.target {
			match[i] = bk.update(p)
		}
	}
}

func (bk *bank) quoteDigest(q *quoteCheck) []byte {
	bk.qh.Reset()
	for _, p := range q.pcrs {
		bk.qh.Write(bk.value(p))
	}
	bk.qsum = bk.qh.Sum(bk.qsum[:0])
	return bk.qsum
}

// evalAll compares every check and reports whether all match.
func (bk *bank) evalAll() bool {
	bk.bad = 0
	for k := range bk.values {
		v := &bk.values[k]
		v.ok = bytes.Equal(bk.value(v.pcr), v.want)
		if !v.ok {
			bk.bad++
		}
	}
	for k := range bk.quotes {
		q := &bk.quotes[k]
		q.ok = bytes.Equal(bk.quoteDigest(q), q.want)
		if !q.ok {
			bk.bad++
		}
	}
	return bk.bad == 0
}

// update re-compares the checks that read PCR p, just extended, and
// reports whether all match.
func (bk *bank) update(p int) bool {
	if bk.mask&(1<<p) == 0 {
		return bk.bad == 0
	}
	flip := func(was *bool, ok bool) {
		if ok != *was {
			*was = ok
			if ok {
				bk.bad--
			} else {
				bk.bad++
			}
		}
	}
	for _, k := range bk.byPCR[p] {
		v := &bk.values[k]
		flip(&v.ok, bytes.Equal(bk.value(p), v.want))
	}
	for k := range bk.quotes {
		q := &bk.quotes[k]
		if q.mask&(1<<p) != 0 {
			flip(&q.ok, bytes.Equal(bk.quoteDigest(q), q.want))
		}
	}
	return bk.bad == 0
}

func (bk *bank) mismatches() []PCRMismatch {
	var out []PCRMismatch
	for _, v := range bk.values {
		if got := bk.value(v.pcr); !bytes.Equal(got, v.want) {
			out = append(out, PCRMismatch{Bank: bk.alg, PCR: v.pcr, Got: bytes.Clone(got), Want: bytes.Clone(v.want)})
		}
	}
	for k := range bk.quotes {
		q := &bk.quotes[k]
		if got := bk.quoteDigest(q); !bytes.Equal(got, q.want) {
			out = append(out, PCRMismatch{Bank: bk.alg, PCR: -1, Got: bytes.Clone(got), Want: bytes.Clone(q.want)})
		}
	}
	return out
}

// replayer runs one replay and holds what the coordinator decides.
type replayer struct {
	e       *engine
	banks   []*bank
	targets []*bank // the banks the target names
	covered uint32  // PCRs every target bank checks
	records int
	offset  int64
	end     int // index after the last record read, skipped ones included
	mode    mode
	matched int   // records at the first full match, -1 before
	matchOf int64 // offset of the record after that match
	err     error
	final   *State // set when the coordinator stops at a match
}

func replay(f *format, src source, opts ReplayOptions, t *Target, m mode) (*State, error) {
	if t != nil && len(t.PCRs) == 0 && len(t.Quotes) == 0 {
		return nil, fmt.Errorf("%w: empty target", ErrOptions)
	}
	algs, err := replayBanks(opts, t)
	if err != nil {
		return nil, err
	}
	from := opts.From
	if from == nil {
		if f.firstIndex != 0 {
			return nil, fmt.Errorf("%w: the input starts at record %d; replaying it needs the state after record %d (ReplayOptions.From)", ErrState, f.firstIndex, f.firstIndex-1)
		}
		from = &State{}
	} else if from.Records < f.firstIndex {
		return nil, fmt.Errorf("%w: the input starts at record %d, after the state's record %d", ErrState, f.firstIndex, from.Records)
	}
	e := newEngine(f, algs, &opts)
	e.skip = from.Records
	rp := &replayer{e: e, records: from.Records, offset: from.Offset, end: f.firstIndex, mode: m, matched: -1}
	for j, alg := range algs {
		bk := &bank{j: j, alg: alg, size: e.banks[j].size, off: e.off[j], viol: e.viol[j], h: newHasher(alg), scratch: make([]byte, 2*64)}
		bk.vals = make([]byte, tpmext.NumPCRs*bk.size)
		for p := 0; p < tpmext.NumPCRs; p++ {
			init := tpmext.InitialPCRValue(p, alg)
			if opts.From != nil {
				vals := from.PCRs[alg]
				if len(vals) != tpmext.NumPCRs {
					return nil, fmt.Errorf("%w: it has %d PCRs of bank %v, want %d", ErrState, len(vals), alg, tpmext.NumPCRs)
				}
				if len(vals[p]) != bk.size {
					return nil, fmt.Errorf("%w: its %v PCR %d has %d bytes, want %d", ErrState, alg, p, len(vals[p]), bk.size)
				}
				init = vals[p]
			}
			copy(bk.value(p), init)
		}
		rp.banks = append(rp.banks, bk)
	}
	if t != nil {
		if err := rp.setTarget(t); err != nil {
			return nil, err
		}
		all := true
		for _, bk := range rp.targets {
			all = bk.evalAll() && all
		}
		if all {
			rp.matched, rp.matchOf = rp.records, rp.offset
			if m == modeUntil {
				return rp.state(), nil
			}
		}
	}

	workers := clampWorkers(opts.Workers)
	if ls, ok := src.(*logSource); ok && len(ls.l.recs)-ls.next <= batchRecords {
		workers = 1 // one batch: not worth the goroutines
	}
	srcErr := rp.run(src, workers)
	switch {
	case rp.err != nil:
		return nil, rp.err
	case rp.final != nil:
		return rp.final, nil
	case srcErr != nil:
		return nil, srcErr
	case rp.end < from.Records:
		return nil, fmt.Errorf("%w: the input ends at record %d, before the state's record %d", ErrState, rp.end, from.Records)
	}
	switch {
	case m == modeVerify && !rp.allMatch():
		return nil, rp.mismatchError(ErrPCRMismatch)
	case m == modeUntil:
		return nil, rp.mismatchError(ErrNotReached)
	}
	return rp.state(), nil
}

// setTarget gives each bank its checks.
func (rp *replayer) setTarget(t *Target) error {
	bankOf := func(a tpmext.Algorithm) *bank {
		for _, bk := range rp.banks {
			if bk.alg == a {
				return bk
			}
		}
		return nil
	}
	checkPCR := func(p int) error {
		if p < 0 || p >= tpmext.NumPCRs {
			return fmt.Errorf("%w: PCR %d out of range 0-%d", ErrOptions, p, tpmext.NumPCRs-1)
		}
		return nil
	}
	for _, a := range slices.Sorted(maps.Keys(t.PCRs)) { // errors name the same bank every run
		vals := t.PCRs[a]
		bk := bankOf(a)
		bk.target = true
		pcrs := make([]int, 0, len(vals))
		for p := range vals {
			pcrs = append(pcrs, p)
		}
		slices.Sort(pcrs)
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return err
			}
			if len(vals[p]) != bk.size {
				return fmt.Errorf("%w: expected %v PCR %d has %d bytes, want %d", ErrOptions, a, p, len(vals[p]), bk.size)
			}
			bk.byPCR[p] = append(bk.byPCR[p], len(bk.values))
			bk.values = append(bk.values, valueCheck{pcr: p, want: vals[p]})
			bk.mask |= 1 << p
		}
	}
	for _, q := range t.Quotes {
		bk := bankOf(q.Selection.Alg)
		bk.target = true
		if len(q.Digest) != sha256.Size {
			return fmt.Errorf("%w: quote PCR digest of %d bytes, want %d (SHA-256)", ErrOptions, len(q.Digest), sha256.Size)
		}
		pcrs := slices.Clone(q.Selection.PCRs)
		slices.Sort(pcrs)
		pcrs = slices.Compact(pcrs)
		if len(pcrs) == 0 {
			return fmt.Errorf("%w: quote of no PCR", ErrOptions)
		}
		qc := quoteCheck{pcrs: pcrs, want: q.Digest}
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return err
			}
			qc.mask |= 1 << p
		}
		bk.mask |= qc.mask
		bk.quotes = append(bk.quotes, qc)
	}
	n := 0
	for _, bk := range rp.banks {
		n += len(bk.values) + len(bk.quotes)
	}
	if n == 0 {
		return fmt.Errorf("%w: the target has no expected value", ErrOptions)
	}
	rp.covered = ^uint32(0)
	for _, bk := range rp.banks {
		if bk.target {
			bk.qh, bk.qsum = sha256.New(), make([]byte, 0, sha256.Size)
			rp.targets = append(rp.targets, bk)
			rp.covered &= bk.mask
		}
	}
	return nil
}

// run feeds src's batches through the pipeline until the source ends or
// the coordinator stops. It returns the source's error (nil at the end of
// the list or after a stop).
// clampWorkers returns the number of hashing goroutines for
// ReplayOptions.Workers n: GOMAXPROCS for 0 or less, and never more than
// runtime.NumCPU(), since each worker keeps batches in flight (memory) and
// more goroutines than cores hash no faster.
func clampWorkers(n int) int {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return max(1, min(n, runtime.NumCPU()))
}

func (rp *replayer) run(src source, workers int) error {
	e := rp.e
	nbanks := len(rp.banks)
	if workers <= 1 {
		w := e.newWorker()
		b := newBatch()
		for {
			err := src.fill(b)
			if len(b.recs) > 0 {
				e.hashBatch(w, b)
				for _, bk := range rp.banks {
					bk.extendBatch(e, b)
				}
				if !rp.scan(b) {
					return nil
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}

	nb := 2*workers + 2
	free := make(chan *batch, nb)
	work := make(chan *batch, nb)
	scan := make(chan *batch, nb)
	quit := make(chan struct{})
	toBank := make([]chan *batch, nbanks)
	for j := range toBank {
		toBank[j] = make(chan *batch, nb)
	}
	for i := 0; i < nb; i++ {
		b := newBatch()
		b.ext = make(chan struct{}, nbanks)
		free <- b
	}
	var srcErr error // written before scan is closed
	go func() {      // producer: batches to the workers, and in list order to every bank and the coordinator
		defer func() {
			close(work)
			for _, c := range toBank {
				close(c)
			}
			close(scan)
		}()
		for {
			var b *batch
			select {
			case <-quit:
				return
			case b = <-free:
			}
			err := src.fill(b)
			if len(b.recs) > 0 {
				b.hashed = make(chan struct{})
				work <- b
				for _, c := range toBank {
					c <- b
				}
				scan <- b
			}
			if err != nil {
				if err != io.EOF {
					srcErr = err
				}
				return
			}
		}
	}()
	for i := 0; i < workers; i++ {
		go func() {
			w := e.newWorker()
			for b := range work {
				e.hashBatch(w, b)
				close(b.hashed)
			}
		}()
	}
	for j, bk := range rp.banks {
		go func() {
			for b := range toBank[j] {
				<-b.hashed
				bk.extendBatch(e, b)
				b.ext <- struct{}{}
			}
		}()
	}
	stopped := false
	for b := range scan {
		for range nbanks {
			<-b.ext
		}
		if !stopped && !rp.scan(b) {
			stopped = true
			e.stop.Store(true)
			close(quit)
		}
		free <- b
	}
	if stopped {
		return nil
	}
	return srcErr
}

// scan walks a batch's records in order, after every bank extended them:
// it stops at the first bad template digest or unchecked PCR, and (in
// ReplayUntil) at the first record after which every target bank matches.
func (rp *replayer) scan(b *batch) bool {
	e := rp.e
	n := len(b.recs)
	rp.end = b.first + n
	for i := range b.recs {
		idx := b.first + i
		if idx < e.skip {
			continue
		}
		r := &b.recs[i]
		if idx != rp.records {
			// Defensive: replay() refuses an input that starts after the
			// state, and sources number their records without gaps.
			rp.err = fmt.Errorf("%w: the state is at record %d, the input continues at record %d", ErrState, rp.records, idx)
			return false
		}
		if b.flags[i]&flagBad != 0 {
			row := b.rows[i*e.stride : (i+1)*e.stride]
			rp.err = &ReplayError{Err: ErrTemplateDigest, Index: idx, Offset: r.off, Records: rp.records,
				Bank: e.col.alg, PCR: int(r.pcr), MatchedAt: rp.matched,
				Got:  bytes.Clone(row[e.colOff : e.colOff+e.ds]),
				Want: bytes.Clone(b.buf[r.start+4 : r.start+4+e.ds])}
			return false
		}
		p := int(r.pcr)
		if len(rp.targets) > 0 && rp.covered&(1<<p) == 0 {
			err := &ReplayError{Err: ErrUncheckedPCR, Index: idx, Offset: r.off, Records: rp.records, PCR: p, MatchedAt: rp.matched}
			for _, bk := range rp.targets {
				if bk.mask&(1<<p) == 0 {
					err.Bank = bk.alg
					break
				}
			}
			rp.err = err
			return false
		}
		rp.records = idx + 1
		rp.offset = r.next
		if len(rp.targets) == 0 || rp.matched >= 0 {
			continue
		}
		all := true
		for _, bk := range rp.targets {
			if !b.match[bk.j*n+i] {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		rp.matched, rp.matchOf = rp.records, rp.offset
		if rp.mode == modeUntil {
			rp.final = rp.stateAt(b, i)
			return false
		}
	}
	return true
}

// stateAt rebuilds the state after record i of b from the banks' values
// before b.
func (rp *replayer) stateAt(b *batch, i int) *State {
	e := rp.e
	st := &State{Records: rp.records, Offset: rp.offset, PCRs: make(tpmext.PCRValues, len(rp.banks))}
	for _, bk := range rp.banks {
		vals := bytes.Clone(b.snap[bk.j*snapStride : bk.j*snapStride+len(bk.vals)])
		h, scratch := newHasher(bk.alg), make([]byte, 2*bk.size)
		for k := 0; k <= i; k++ {
			fl := b.flags[k]
			if fl&flagSkip != 0 {
				continue
			}
			p := int(b.recs[k].pcr)
			d := bk.viol
			if fl&flagViolation == 0 {
				d = b.rows[k*e.stride+bk.off : k*e.stride+bk.off+bk.size]
			}
			h.extend(vals[p*bk.size:(p+1)*bk.size], d, scratch)
		}
		st.PCRs[bk.alg] = splitPCRs(vals, bk.size)
	}
	return st
}

func splitPCRs(vals []byte, size int) [][]byte {
	out := make([][]byte, tpmext.NumPCRs)
	for p := range out {
		out[p] = bytes.Clone(vals[p*size : (p+1)*size])
	}
	return out
}

func (rp *replayer) state() *State {
	st := &State{Records: rp.records, Offset: rp.offset, PCRs: make(tpmext.PCRValues, len(rp.banks))}
	for _, bk := range rp.banks {
		st.PCRs[bk.alg] = splitPCRs(bk.vals, bk.size)
	}
	return st
}

// allMatch reports whether every target bank matches now.
func (rp *replayer) allMatch() bool {
	for _, bk := range rp.targets {
		if bk.bad != 0 {
			return false
		}
	}
	return true
}

func (rp *replayer) mismatchError(kind error) error {
	var ms []PCRMismatch
	for _, bk := range rp.targets {
		ms = append(ms, bk.mismatches()...)
	}
	e := &ReplayError{Err: kind, Index: -1, Offset: -1, Records: rp.records, MatchedAt: rp.matched, Mismatches: ms, PCR: -1}
	if len(ms) > 0 {
		e.Bank, e.PCR, e.Got, e.Want = ms[0].Bank, ms[0].PCR, ms[0].Got, ms[0].Want
	}
	if kind == ErrPCRMismatch && rp.matched >= 0 {
		e.Index, e.Offset = rp.matched, rp.matchOf
	}
	return e
}
