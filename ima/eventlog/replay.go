package eventlog

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"runtime"
	"slices"

	"github.com/imasim/imasim/tpmext"
)

// ViolationMode says what a replay extends for a violation (a record whose
// template digest is all zeros).
type ViolationMode uint8

const (
	// ViolationsFF extends 0xFF over each bank's size (0xFF×20 then zeros
	// for a padded bank), as the kernel does. It is the default.
	ViolationsFF ViolationMode = iota
	// ViolationsZero extends zeros, as evmctl ima_measurement does without
	// --ignore-violations; a list with violations then fails to verify
	// against a real TPM. It exists to reproduce evmctl.
	ViolationsZero
)

// ReplayOptions tune a replay.
type ReplayOptions struct {
	// Banks are the banks to replay. Verify and ReplayUntil add the banks
	// their target names. Replay defaults to the banks of From, else to
	// SHA-1, SHA-256, SHA-384 and SHA-512.
	Banks []tpmext.Algorithm
	// Violations says what violations extend; the default is the
	// kernel's 0xFF.
	Violations ViolationMode
	// PaddedSHA1 replays the way kernels before v5.8 extended: every bank
	// with the SHA-1 template digest zero-padded to its size (violations
	// 0xFF×20 then zeros). The column is still checked in its own
	// algorithm.
	PaddedSHA1 bool
	// From resumes a replay from a saved state: the records before
	// From.Records are skipped (parsed, not hashed), the PCRs start at
	// From.PCRs. The input may hold the whole list or start later (see
	// Options.FirstIndex), but not after From.Records.
	From *State
	// Workers is the number of goroutines hashing template data; 0 means
	// GOMAXPROCS. Extends run in order on the calling goroutine.
	Workers int
}

// State is where a replay stands: the number of records replayed and the
// running value of every PCR of every replayed bank. Incremental verifiers
// save it and resume from it (ReplayOptions.From), as Keylime does with
// next_ima_ml_entry and its saved PCR-10 values.
type State struct {
	// Records is the number of records replayed: the index of the next.
	Records int `json:"records"`
	// Offset is the input offset of the next record (or line).
	Offset int64 `json:"offset"`
	// PCRs holds tpmext.NumPCRs values per replayed bank.
	PCRs tpmext.PCRValues `json:"pcrs"`
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := &State{Records: s.Records, Offset: s.Offset, PCRs: make(tpmext.PCRValues, len(s.PCRs))}
	for alg, vals := range s.PCRs {
		c.PCRs[alg] = make([][]byte, len(vals))
		for i, v := range vals {
			c.PCRs[alg][i] = bytes.Clone(v)
		}
	}
	return c
}

// Expected holds expected PCR values: Expected[bank][pcr]. Read one bank
// from a file with ParsePCRFile.
type Expected map[tpmext.Algorithm]map[int][]byte

// QuoteDigest is what a TPM quote attests: the PCR digest (SHA-256 over
// the selected PCRs' values in ascending PCR order, as
// tpmext.PCRDigest computes) of one bank's selection.
type QuoteDigest struct {
	Selection tpmext.Selection
	Digest    []byte
}

// Target is what a replay must reach: PCR values, quote PCR digests, or
// both. Every one of them must match at once.
type Target struct {
	PCRs   Expected
	Quotes []QuoteDigest
}

// QuoteTarget checks q's signature against q.Key, its nonce and its
// selection, and returns the target of its PCR digest, for ReplayUntil to
// find the records the quote covers. (The caller checks that it trusts
// q.Key.) It is tpmext.Quote.Verify without the PCR values, which the
// replay supplies.
func QuoteTarget(q *tpmext.Quote, nonce []byte, sel tpmext.Selection) (Target, error) {
	if q == nil || q.Key == nil {
		return Target{}, fmt.Errorf("%w: no key", tpmext.ErrQuoteSignature)
	}
	h := sha256.Sum256(q.Attest)
	if !ecdsa.VerifyASN1(q.Key, h[:], q.Signature) {
		return Target{}, tpmext.ErrQuoteSignature
	}
	info, err := q.Info()
	if err != nil {
		return Target{}, err
	}
	if !bytes.Equal(info.Nonce, nonce) {
		return Target{}, tpmext.ErrQuoteNonce
	}
	want := slices.Clone(sel.PCRs)
	slices.Sort(want)
	want = slices.Compact(want)
	if info.Selection.Alg != sel.Alg || !slices.Equal(info.Selection.PCRs, want) {
		return Target{}, fmt.Errorf("%w: quote has %v %v, want %v %v", tpmext.ErrQuoteSelection, info.Selection.Alg, info.Selection.PCRs, sel.Alg, want)
	}
	return Target{Quotes: []QuoteDigest{{Selection: info.Selection, Digest: info.PCRDigest}}}, nil
}

// Replay replays every record into the banks of opts and returns the
// final state. It checks each record's template digest against its data
// (a mismatch is a *ReplayError wrapping ErrTemplateDigest) but compares
// with no expected value.
func (l *EventLog) Replay(opts ReplayOptions) (*State, error) {
	return replay(l.f, l.source(), opts, nil, modeReplay)
}

// Verify replays the whole list and checks that it ends exactly at want:
// every record's template digest matches its data (checked in the
// column's algorithm), every PCR a record extends has an expected value in
// every bank of want, and after the last record every value of want
// matches. Otherwise it returns a *ReplayError naming the first problem
// (or the *template.DecodeError of a malformed record). A list with
// records after the point where the values match fails, unlike with
// evmctl.
//
// It is go-attestation's attest.EventLog.Verify for IMA lists; it returns
// the final state.
func (l *EventLog) Verify(want Expected, opts ReplayOptions) (*State, error) {
	return replay(l.f, l.source(), opts, &Target{PCRs: want}, modeVerify)
}

// ReplayUntil replays until the target matches and returns N, the number
// of records it covers (the smallest N >= the starting record at which
// every value and digest of the target matches; 0 when it matches before
// the first record), with the state at N. The records after N are not
// read. It fails with ErrNotReached if no prefix matches. This is the N
// the staging documentation tells an agent to compute before deleting N
// records, and how a verifier handles a quote that lags the list.
//
// Follows the verifier guidance of linux-integrity/ima-doc
// event-log-format.rst ("replay the event log until the quote matches")
// and keylime/ima/ima.py:_process_measurement_list().
func (l *EventLog) ReplayUntil(t Target, opts ReplayOptions) (int, *State, error) {
	st, err := replay(l.f, l.source(), opts, &t, modeUntil)
	if err != nil {
		return 0, nil, err
	}
	return st.Records, st, nil
}

func (l *EventLog) source() source { return &logSource{l: l} }

// Replay is EventLog.Replay over the rest of the input.
func (rd *Reader) Replay(opts ReplayOptions) (*State, error) {
	return replay(rd.f, rd.prepare(), opts, nil, modeReplay)
}

// Verify is EventLog.Verify over the rest of the input.
func (rd *Reader) Verify(want Expected, opts ReplayOptions) (*State, error) {
	return replay(rd.f, rd.prepare(), opts, &Target{PCRs: want}, modeVerify)
}

// ReplayUntil is EventLog.ReplayUntil over the rest of the input. The
// input after record N may have been read; resume with a new Reader
// positioned at the state's Offset (with Options.FirstIndex and
// FirstOffset set from the state).
func (rd *Reader) ReplayUntil(t Target, opts ReplayOptions) (int, *State, error) {
	st, err := replay(rd.f, rd.prepare(), opts, &t, modeUntil)
	if err != nil {
		return 0, nil, err
	}
	return st.Records, st, nil
}

// prepare reads ahead until the column width is known (ASCII lists learn
// it from the first line) and returns the rest of the input.
func (rd *Reader) prepare() source {
	if rd.f.ds == 0 && rd.err == nil && (rd.cur == nil || rd.pos >= len(rd.cur.recs)) {
		if rd.cur == nil {
			rd.cur = newBatch()
		}
		rd.err = rd.src.fill(rd.cur)
		rd.pos = 0
	}
	return rd.rest()
}

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
	skip    int // records below this index are neither hashed nor extended
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

// hashBatch computes every record's digest row and flags.
func (e *engine) hashBatch(w *worker, b *batch) {
	n := len(b.recs)
	if cap(b.rows) < n*e.stride {
		b.rows = make([]byte, n*e.stride)
	}
	b.rows = b.rows[:n*e.stride]
	if cap(b.flags) < n {
		b.flags = make([]uint8, n)
	}
	b.flags = b.flags[:n]
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

// run feeds src's batches through the hashing workers to visit, in list
// order, until the source ends or visit returns false. It returns the
// source's error (nil at the end of the list or after a stop).
func (e *engine) run(src source, workers int, visit func(b *batch) bool) error {
	if workers <= 1 {
		w := e.newWorker()
		b := newBatch()
		for {
			err := src.fill(b)
			if len(b.recs) > 0 {
				e.hashBatch(w, b)
				if !visit(b) {
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
	order := make(chan *batch, nb)
	quit := make(chan struct{})
	for i := 0; i < nb; i++ {
		free <- newBatch()
	}
	var srcErr error // written before order is closed
	go func() {
		defer close(work)
		defer close(order)
		for {
			var b *batch
			select {
			case <-quit:
				return
			case b = <-free:
			}
			err := src.fill(b)
			if len(b.recs) > 0 {
				work <- b
				order <- b
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
				b.done <- struct{}{}
			}
		}()
	}
	stopped := false
	for b := range order {
		<-b.done
		if !stopped && !visit(b) {
			stopped = true
			close(quit)
		}
		free <- b
	}
	if stopped {
		return nil
	}
	return srcErr
}

// replayer extends the banks record by record and watches the target.
type replayer struct {
	e       *engine
	algs    []tpmext.Algorithm
	hs      []*hasher
	vals    [][]byte // per bank: NumPCRs values of the bank's size
	scratch []byte
	records int
	offset  int64
	mode    mode
	chk     *checker
	matched int // records at the first full match, -1 before
	// matchedOff is the offset of the record after that match.
	matchedOff int64
	err        error
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
	rp := &replayer{e: e, algs: algs, scratch: make([]byte, 2*64), records: from.Records, offset: from.Offset, mode: m, matched: -1}
	for j, alg := range algs {
		rp.hs = append(rp.hs, newHasher(alg))
		size := e.banks[j].size
		v := make([]byte, tpmext.NumPCRs*size)
		for p := 0; p < tpmext.NumPCRs; p++ {
			init := tpmext.InitialPCRValue(p, alg)
			if opts.From != nil {
				vals := from.PCRs[alg]
				if len(vals) != tpmext.NumPCRs {
					return nil, fmt.Errorf("%w: it has %d PCRs of bank %v, want %d", ErrState, len(vals), alg, tpmext.NumPCRs)
				}
				if len(vals[p]) != size {
					return nil, fmt.Errorf("%w: its %v PCR %d has %d bytes, want %d", ErrState, alg, p, len(vals[p]), size)
				}
				init = vals[p]
			}
			copy(v[p*size:], init)
		}
		rp.vals = append(rp.vals, v)
	}
	if t != nil {
		if rp.chk, err = newChecker(t, algs, e); err != nil {
			return nil, err
		}
		if rp.chk.evalAll(rp.vals) {
			rp.matched, rp.matchedOff = rp.records, rp.offset
			if m == modeUntil {
				return rp.state(), nil
			}
		}
	}

	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if ls, ok := src.(*logSource); ok && len(ls.l.recs)-ls.next <= batchRecords {
		workers = 1 // one batch: not worth the goroutines
	}
	srcErr := e.run(src, workers, rp.visit)
	if rp.err != nil {
		return nil, rp.err
	}
	if m == modeUntil && rp.matched >= 0 {
		return rp.state(), nil
	}
	if srcErr != nil {
		return nil, srcErr
	}
	if rp.records < from.Records {
		return nil, fmt.Errorf("%w: the input ends at record %d, before the state's record %d", ErrState, rp.records, from.Records)
	}
	switch m {
	case modeVerify:
		if rp.chk.bad > 0 {
			return nil, rp.mismatchError(ErrPCRMismatch)
		}
	case modeUntil:
		return nil, rp.mismatchError(ErrNotReached)
	}
	return rp.state(), nil
}

// replayBanks returns the banks a replay extends: the target's (in
// algorithm order), then those of opts.Banks, or the defaults.
func replayBanks(opts ReplayOptions, t *Target) ([]tpmext.Algorithm, error) {
	var algs []tpmext.Algorithm
	add := func(a tpmext.Algorithm) error {
		if !a.Known() {
			return fmt.Errorf("%w: unknown bank algorithm %v", ErrOptions, a)
		}
		if !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
		return nil
	}
	if t != nil {
		var ta []tpmext.Algorithm
		for a := range t.PCRs {
			ta = append(ta, a)
		}
		for _, q := range t.Quotes {
			ta = append(ta, q.Selection.Alg)
		}
		slices.Sort(ta)
		for _, a := range ta {
			if err := add(a); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range opts.Banks {
		if err := add(a); err != nil {
			return nil, err
		}
	}
	if len(algs) == 0 && opts.From != nil {
		for a := range opts.From.PCRs {
			algs = append(algs, a)
		}
		slices.Sort(algs)
	}
	if len(algs) == 0 {
		algs = tpmext.DefaultBanks()
	}
	return algs, nil
}

func (rp *replayer) state() *State {
	st := &State{Records: rp.records, Offset: rp.offset, PCRs: make(tpmext.PCRValues, len(rp.algs))}
	for j, alg := range rp.algs {
		size := rp.e.banks[j].size
		vals := make([][]byte, tpmext.NumPCRs)
		for p := range vals {
			vals[p] = bytes.Clone(rp.vals[j][p*size : (p+1)*size])
		}
		st.PCRs[alg] = vals
	}
	return st
}

func (rp *replayer) visit(b *batch) bool {
	e := rp.e
	for i := range b.recs {
		idx := b.first + i
		if idx < e.skip {
			continue
		}
		r := &b.recs[i]
		if idx != rp.records {
			rp.err = fmt.Errorf("%w: the state is at record %d, the input continues at record %d", ErrState, rp.records, idx)
			return false
		}
		fl := b.flags[i]
		row := b.rows[i*e.stride : (i+1)*e.stride]
		if fl&flagBad != 0 {
			rp.err = &ReplayError{Err: ErrTemplateDigest, Index: idx, Offset: r.off, Records: rp.records,
				Bank: e.col.alg, PCR: int(r.pcr), MatchedAt: rp.matched,
				Got:  bytes.Clone(row[e.colOff : e.colOff+e.ds]),
				Want: bytes.Clone(b.buf[r.start+4 : r.start+4+e.ds])}
			return false
		}
		p := int(r.pcr)
		if rp.chk != nil && rp.chk.covered&(1<<p) == 0 {
			rp.err = &ReplayError{Err: ErrUncheckedPCR, Index: idx, Offset: r.off, Records: rp.records,
				Bank: rp.chk.uncovered(p), PCR: p, MatchedAt: rp.matched}
			return false
		}
		for j := range e.banks {
			size := e.banks[j].size
			d := e.viol[j]
			if fl&flagViolation == 0 {
				d = row[e.off[j] : e.off[j]+size]
			}
			rp.hs[j].extend(rp.vals[j][p*size:(p+1)*size], d, rp.scratch)
		}
		rp.records = idx + 1
		rp.offset = r.next
		if rp.chk != nil && rp.chk.update(p, rp.vals) && rp.matched < 0 {
			rp.matched, rp.matchedOff = rp.records, rp.offset
			if rp.mode == modeUntil {
				return false
			}
		}
	}
	return true
}

func (rp *replayer) mismatchError(kind error) error {
	ms := rp.chk.mismatches(rp.vals)
	e := &ReplayError{Err: kind, Index: -1, Offset: -1, Records: rp.records, MatchedAt: rp.matched, Mismatches: ms, PCR: -1}
	if len(ms) > 0 {
		e.Bank, e.PCR, e.Got, e.Want = ms[0].Bank, ms[0].PCR, ms[0].Got, ms[0].Want
	}
	if kind == ErrPCRMismatch && rp.matched >= 0 {
		e.Index, e.Offset = rp.matched, rp.matchedOff
	}
	return e
}

// checker compares the replayed values with a target after each record.
type checker struct {
	values  []valueCheck
	quotes  []quoteCheck
	byPCR   [tpmext.NumPCRs][]int // values checks per PCR
	watch   uint32                // PCRs some check reads
	covered uint32                // PCRs every target bank checks
	masks   []uint32              // per bank (engine order): the PCRs the target checks
	sizes   []int
	algs    []tpmext.Algorithm
	bad     int
	target  []bool // per bank: whether the target names it
	h       hash.Hash
	sum     []byte
}

type valueCheck struct {
	bank, pcr int
	want      []byte
	ok        bool
}

type quoteCheck struct {
	bank int
	pcrs []int
	mask uint32
	want []byte
	ok   bool
}

func newChecker(t *Target, algs []tpmext.Algorithm, e *engine) (*checker, error) {
	c := &checker{masks: make([]uint32, len(algs)), target: make([]bool, len(algs)), algs: algs, h: sha256.New(), sum: make([]byte, 0, sha256.Size)}
	for _, s := range e.banks {
		c.sizes = append(c.sizes, s.size)
	}
	bank := func(a tpmext.Algorithm) int { return slices.Index(algs, a) }
	checkPCR := func(p int) error {
		if p < 0 || p >= tpmext.NumPCRs {
			return fmt.Errorf("%w: PCR %d out of range 0-%d", ErrOptions, p, tpmext.NumPCRs-1)
		}
		return nil
	}
	var ta []tpmext.Algorithm
	for a := range t.PCRs {
		ta = append(ta, a)
	}
	slices.Sort(ta)
	for _, a := range ta {
		j := bank(a)
		c.target[j] = true
		pcrs := make([]int, 0, len(t.PCRs[a]))
		for p := range t.PCRs[a] {
			pcrs = append(pcrs, p)
		}
		slices.Sort(pcrs)
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return nil, err
			}
			want := t.PCRs[a][p]
			if len(want) != a.Size() {
				return nil, fmt.Errorf("%w: expected %v PCR %d has %d bytes, want %d", ErrOptions, a, p, len(want), a.Size())
			}
			c.byPCR[p] = append(c.byPCR[p], len(c.values))
			c.values = append(c.values, valueCheck{bank: j, pcr: p, want: want})
			c.masks[j] |= 1 << p
		}
	}
	for _, q := range t.Quotes {
		j := bank(q.Selection.Alg)
		c.target[j] = true
		if len(q.Digest) != sha256.Size {
			return nil, fmt.Errorf("%w: quote PCR digest of %d bytes, want %d (SHA-256)", ErrOptions, len(q.Digest), sha256.Size)
		}
		pcrs := slices.Clone(q.Selection.PCRs)
		slices.Sort(pcrs)
		pcrs = slices.Compact(pcrs)
		if len(pcrs) == 0 {
			return nil, fmt.Errorf("%w: quote of no PCR", ErrOptions)
		}
		qc := quoteCheck{bank: j, pcrs: pcrs, want: q.Digest}
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return nil, err
			}
			qc.mask |= 1 << p
		}
		c.masks[j] |= qc.mask
		c.quotes = append(c.quotes, qc)
	}
	c.covered = ^uint32(0)
	for j, m := range c.masks {
		if c.target[j] {
			c.covered &= m
		}
		c.watch |= m
	}
	return c, nil
}

// uncovered returns the first target bank without PCR p.
func (c *checker) uncovered(p int) tpmext.Algorithm {
	for j, m := range c.masks {
		if c.target[j] && m&(1<<p) == 0 {
			return c.algs[j]
		}
	}
	return 0
}

func (c *checker) value(vals [][]byte, bank, p int) []byte {
	size := c.sizes[bank]
	return vals[bank][p*size : (p+1)*size]
}

func (c *checker) quoteDigest(vals [][]byte, q *quoteCheck) []byte {
	c.h.Reset()
	for _, p := range q.pcrs {
		c.h.Write(c.value(vals, q.bank, p))
	}
	c.sum = c.h.Sum(c.sum[:0])
	return c.sum
}

// evalAll compares every check and reports whether all match.
func (c *checker) evalAll(vals [][]byte) bool {
	c.bad = 0
	for k := range c.values {
		v := &c.values[k]
		v.ok = bytes.Equal(c.value(vals, v.bank, v.pcr), v.want)
		if !v.ok {
			c.bad++
		}
	}
	for k := range c.quotes {
		q := &c.quotes[k]
		q.ok = bytes.Equal(c.quoteDigest(vals, q), q.want)
		if !q.ok {
			c.bad++
		}
	}
	return c.bad == 0
}

// update re-compares the checks that read PCR p (just extended) and
// reports whether all match.
func (c *checker) update(p int, vals [][]byte) bool {
	if c.watch&(1<<p) == 0 {
		return c.bad == 0
	}
	for _, k := range c.byPCR[p] {
		v := &c.values[k]
		ok := bytes.Equal(c.value(vals, v.bank, p), v.want)
		if ok != v.ok {
			v.ok = ok
			if ok {
				c.bad--
			} else {
				c.bad++
			}
		}
	}
	for k := range c.quotes {
		q := &c.quotes[k]
		if q.mask&(1<<p) == 0 {
			continue
		}
		ok := bytes.Equal(c.quoteDigest(vals, q), q.want)
		if ok != q.ok {
			q.ok = ok
			if ok {
				c.bad--
			} else {
				c.bad++
			}
		}
	}
	return c.bad == 0
}

func (c *checker) mismatches(vals [][]byte) []PCRMismatch {
	var out []PCRMismatch
	for _, v := range c.values {
		got := c.value(vals, v.bank, v.pcr)
		if !bytes.Equal(got, v.want) {
			out = append(out, PCRMismatch{Bank: c.algs[v.bank], PCR: v.pcr, Got: bytes.Clone(got), Want: bytes.Clone(v.want)})
		}
	}
	for k := range c.quotes {
		q := &c.quotes[k]
		got := c.quoteDigest(vals, q)
		if !bytes.Equal(got, q.want) {
			out = append(out, PCRMismatch{Bank: c.algs[q.bank], PCR: -1, Got: bytes.Clone(got), Want: bytes.Clone(q.want)})
		}
	}
	return out
}
