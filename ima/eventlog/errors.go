package eventlog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/imasim/imasim/tpmext"
)

// Kinds of replay failure; a *ReplayError wraps one (test with errors.Is).
var (
	// ErrTemplateDigest: a record's template digest does not match its
	// template data.
	ErrTemplateDigest = errors.New("template digest does not match the template data")
	// ErrPCRMismatch: the whole list replayed, and a replayed PCR value
	// differs from the expected one.
	ErrPCRMismatch = errors.New("replayed PCR value differs from the expected value")
	// ErrNotReached: no prefix of the list reaches the target (ReplayUntil).
	ErrNotReached = errors.New("no prefix of the list reaches the target")
	// ErrUncheckedPCR: a record extends a PCR for which a bank of the
	// target has no expected value, so the record would go unverified.
	ErrUncheckedPCR = errors.New("record extends a PCR that is not checked")
)

// ErrState is wrapped by the errors of a State that does not fit the
// input or the replay (ReplayOptions.From).
var ErrState = errors.New("eventlog: replay state does not fit")

// PCRMismatch is one PCR whose replayed value differs from the expected
// one.
type PCRMismatch struct {
	Bank tpmext.Algorithm
	PCR  int
	// Got is the replayed value; Want the expected one. For a quote's PCR
	// digest (PCR is -1) they are the SHA-256 digests over the selection.
	Got, Want []byte
}

func (m PCRMismatch) String() string {
	what := fmt.Sprintf("%v PCR %d", m.Bank, m.PCR)
	if m.PCR < 0 {
		what = fmt.Sprintf("quote PCR digest of bank %v", m.Bank)
	}
	return fmt.Sprintf("%s: replayed %x, expected %x", what, m.Got, m.Want)
}

// ReplayError is why a list does not verify. It is go-attestation's
// attest.ReplayError for IMA lists: errors.As finds it, errors.Is matches
// its kind (ErrTemplateDigest, ErrPCRMismatch, ErrNotReached,
// ErrUncheckedPCR).
type ReplayError struct {
	// Err is the kind.
	Err error
	// Index and Offset name the record at fault: the record whose
	// template digest is wrong, the record extending an unchecked PCR, or
	// (ErrPCRMismatch, when a prefix of the list did reach the expected
	// values) the first record after that prefix. Index is -1 when no
	// record is at fault.
	Index  int
	Offset int64
	// Records is the number of records replayed (the index of the next
	// record), counting those a resumed replay started from.
	Records int
	// Bank and PCR locate the problem: for ErrTemplateDigest the column's
	// algorithm and the record's PCR; otherwise the first mismatching
	// bank and PCR. PCR is -1 for a quote's PCR digest.
	Bank tpmext.Algorithm
	PCR  int
	// Got and Want: for ErrTemplateDigest, what the template data hashes
	// to and what the column says; otherwise those of the first mismatch.
	Got, Want []byte
	// Mismatches lists every expected value that differs at the end.
	Mismatches []PCRMismatch
	// MatchedAt is the number of records after which every expected
	// value matched (the first such prefix), or -1 if none did. A list
	// that fails with MatchedAt >= 0 has records the expected values do
	// not cover: they were appended after the PCRs were read.
	MatchedAt int
}

func (e *ReplayError) Error() string {
	var b strings.Builder
	switch {
	case errors.Is(e.Err, ErrTemplateDigest):
		fmt.Fprintf(&b, "record %d at offset %d: %v: %v(template data) = %x, the list says %x",
			e.Index, e.Offset, e.Err, e.Bank, e.Got, e.Want)
	case errors.Is(e.Err, ErrUncheckedPCR):
		fmt.Fprintf(&b, "record %d at offset %d extends PCR %d, which has no expected value in bank %v", e.Index, e.Offset, e.PCR, e.Bank)
	case errors.Is(e.Err, ErrPCRMismatch) && e.MatchedAt >= 0:
		fmt.Fprintf(&b, "record %d at offset %d: not covered by the expected PCR values: they match after %d records, but the list has %d (%s)",
			e.Index, e.Offset, e.MatchedAt, e.Records, e.mismatches())
	case errors.Is(e.Err, ErrPCRMismatch):
		fmt.Fprintf(&b, "after all %d records: %s", e.Records, e.mismatches())
	case errors.Is(e.Err, ErrNotReached):
		fmt.Fprintf(&b, "%v (replayed %d records; at the end %s)", e.Err, e.Records, e.mismatches())
	default:
		fmt.Fprintf(&b, "%v after %d records", e.Err, e.Records)
	}
	return b.String()
}

func (e *ReplayError) mismatches() string {
	if len(e.Mismatches) == 0 {
		return "no mismatch"
	}
	s := e.Mismatches[0].String()
	if n := len(e.Mismatches) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

func (e *ReplayError) Unwrap() error { return e.Err }
