package eventlog

import (
	"bytes"
	"fmt"
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
	// GOMAXPROCS, and more than runtime.NumCPU() means NumCPU (each worker
	// keeps batches in flight). Extends run in order on the calling
	// goroutine.
	Workers int
}

// State is where a replay stands: the number of records replayed and the
// running value of every PCR of every replayed bank. Incremental verifiers
// save it and resume from it (ReplayOptions.From), as Keylime does with
// next_ima_ml_entry and its saved PCR-10 values. Its JSON form names the
// banks and writes the values in hex (see MarshalJSON).
type State struct {
	// Records is the number of records replayed: the index of the next.
	Records int
	// Offset is the input offset of the next record (or line).
	Offset int64
	// PCRs holds tpmext.NumPCRs values per replayed bank.
	PCRs tpmext.PCRValues
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
	if q == nil {
		return Target{}, fmt.Errorf("%w: no quote", tpmext.ErrQuoteSignature)
	}
	info, err := q.Check(nonce, sel)
	if err != nil {
		return Target{}, err
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
// the final state. Follows ima-evm-utils src/evmctl.c:ima_measurement()
// (the per-bank replay and the template-digest check), with the
// differences listed in the package doc.
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
