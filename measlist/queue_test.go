package measlist

// One named test per row of the transition table of docs/SPEC.md §4.5
// and per edge case of §4.1 to §4.4, plus Q2 and Q3 of §7. Each checks the
// exact errno, the counters, the sizes, the lists by identity, the hash
// table and the PCRs.

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// --- measure(r) -----------------------------------------------------------

// measure(r), success: C.append(r), BINARY++, FULL++, sizes += sz(r),
// H += (digest, pcr), PCR extend.
func TestMeasureAppendsCountsInsertsAndExtends(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	a := f.add(f.file("/bin/a", "a", 10))
	b := f.add(f.file("/bin/b", "b", 11))
	f.wantLists([]*template.Entry{a, b}, nil)
	f.wantCounts(2, 0, 2)
	f.wantSizes(sizeOf(a, b), sizeOf(), sizeOf(a, b))
	require.Equal(t, uint64(KexecHeaderSize+4+20+4+len("ima-ng")+4+a.TemplateDataLen()), sizeOf(a), "sz(r) of §2.3")
	require.True(t, f.inHtable(a))
	require.True(t, f.inHtable(b))
	require.False(t, f.q.InHtable(f.key(a), 11), "the key is (digest, pcr)")
	require.Equal(t, 2, f.q.HtableLen())
	require.EqualValues(t, 0, f.q.Generation(), "appends do not change the generation")
	n, err := f.q.TPMErrors()
	require.NoError(t, err)
	require.Zero(t, n)
	f.wantPCRs()
	// PCR 10 by hand for the first record, in both banks.
	for _, alg := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256} {
		got, err := f.tpm.ReadPCR(10, alg)
		require.NoError(t, err)
		want := tpmext.ExtendValue(alg, make([]byte, alg.Size()), extendDigest(a, alg))
		require.Equal(t, want, got, "PCR 10 %v", alg)
	}
}

// measure(r) while suspended: -ENODEV, nothing stored, nothing extended.
func TestMeasureSuspendedENODEV(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.add(f.file("/bin/a", "a", 10))
	f.q.Suspend()
	before := f.state()
	require.ErrorIs(t, f.q.Add(f.file("/bin/b", "b", 10)), syscall.ENODEV)
	require.ErrorIs(t, f.q.Add(f.violation("/bin/c")), syscall.ENODEV, "violations too")
	require.Equal(t, before, f.state())
	f.wantPCRs()
}

// measure(r) with the same template digest and PCR as a stored record:
// -EEXIST, not stored, not extended.
func TestMeasureDuplicateSameDigestAndPCREEXIST(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	a := f.add(f.file("/bin/a", "a", 10))
	before := f.state()
	dup := f.file("/bin/a", "a", 10)
	require.NotSame(t, a, dup)
	require.ErrorIs(t, f.q.Add(dup), syscall.EEXIST)
	require.Equal(t, before, f.state())
	f.wantPCRs()
}

// The same template digest in another PCR is not a duplicate (§2.2 of the
// baseline), and the same file with other content is another digest.
func TestMeasureSameDigestOtherPCRIsNotDuplicate(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	a := f.add(f.file("/bin/a", "a", 10))
	b := f.add(f.file("/bin/a", "a", 11))
	require.Equal(t, f.key(a), f.key(b))
	c := f.add(f.file("/bin/a", "changed", 10))
	f.wantLists([]*template.Entry{a, b, c}, nil)
	f.wantCounts(3, 0, 3)
	require.Equal(t, 3, f.q.HtableLen())
	f.wantPCRs()
}

// Violations are never looked up, so identical violations are all stored,
// but they are inserted in the hash table (all-zero digest): a
// non-violation record with that digest and PCR is then a duplicate.
func TestMeasureViolationsNotDuplicatesButInserted(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	v1 := f.add(f.violation("/tmp/x"))
	v2 := f.add(f.violation("/tmp/x"))
	f.wantLists([]*template.Entry{v1, v2}, nil)
	f.wantCounts(2, 0, 2)
	require.Equal(t, make([]byte, 32), f.key(v1), "violation digests are zero")
	require.True(t, f.inHtable(v1))
	require.Equal(t, 2, f.q.HtableLen(), "each violation is inserted")

	// A record with a zero template digest that is not a violation cannot
	// be built from an event; build it by hand to show the lookup sees the
	// violations' keys.
	zero := &template.Entry{PCR: 10, Desc: v1.Desc, Fields: v1.Fields, Digests: append([]tpmext.Digest(nil), v1.Digests...)}
	require.ErrorIs(t, f.q.Add(zero), syscall.EEXIST)
	zero.PCR = 11
	require.NoError(t, f.q.Add(zero), "another PCR is another key")
	f.history = append(f.history, zero)
	f.wantCounts(3, 0, 3)
	f.wantPCRs() // violations extend 0xFF, the hand-made record its zero digest
}

// With CONFIG_IMA_DISABLE_HTABLE there are no lookups and no insertions:
// duplicates are stored.
func TestMeasureHtableDisabledAcceptsDuplicates(t *testing.T) {
	f := newFixture(t, Config{HtableDisabled: true, Kexec: true})
	a := f.add(f.file("/bin/a", "a", 10))
	b := f.add(f.file("/bin/a", "a", 10))
	v := f.add(f.violation("/bin/a"))
	f.wantLists([]*template.Entry{a, b, v}, nil)
	f.wantCounts(3, 0, 3)
	require.Zero(t, f.q.HtableLen())
	require.False(t, f.inHtable(a))
	require.False(t, f.inHtable(v))
	require.Empty(t, f.q.Warnings())
	f.wantPCRs()
}

// A TPM error keeps the record and returns success, as the kernel does
// (audit "TPM_error"); TPMErrors counts it and the PCRs do not move.
func TestMeasureTPMErrorKeepsRecord(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	a := f.add(f.file("/bin/a", "a", 10))
	before := f.state()
	drtm := f.add(f.file("/bin/b", "b", 17)) // locality 0 cannot extend PCR 17
	n, err := f.q.TPMErrors()
	require.Equal(t, int64(1), n)
	require.Error(t, err)
	outOfRange := f.add(f.file("/bin/c", "c", 30))
	n, _ = f.q.TPMErrors()
	require.Equal(t, int64(2), n)
	f.wantLists([]*template.Entry{a, drtm, outOfRange}, nil)
	f.wantCounts(3, 0, 3)
	require.True(t, f.inHtable(drtm))
	require.ErrorIs(t, f.q.Add(f.file("/bin/b", "b", 17)), syscall.EEXIST, "the record is in the hash table")
	after := f.state()
	require.Equal(t, before.PCRs, after.PCRs, "no PCR changed")
	f.wantPCRs()
}

// Without a TPM (TPM bypass) records are stored and nothing is extended.
func TestMeasureWithoutTPM(t *testing.T) {
	f := newFixtureWith(t, Config{Kexec: true}, nil, template.LittleEndian)
	a := f.add(f.file("/bin/a", "a", 10))
	v := f.add(f.violation("/bin/a"))
	f.wantLists([]*template.Entry{a, v}, nil)
	n, _ := f.q.TPMErrors()
	require.Zero(t, n)
}

// An entry whose digests were not computed is refused before anything
// happens.
func TestMeasureRequiresDigests(t *testing.T) {
	f := newFixture(t, Config{})
	e := f.file("/bin/a", "a", 10)
	e.Digests = nil
	require.Error(t, f.q.Add(e))
	f.wantCounts(0, 0, 0)
}

// AddViolation counts ima_num_violations, which nothing else changes.
func TestViolationCounter(t *testing.T) {
	f := newFixture(t, Config{})
	f.q.AddViolation()
	f.add(f.violation("/a"))
	f.q.AddViolation()
	f.q.Suspend()
	require.ErrorIs(t, f.q.Add(f.violation("/a")), syscall.ENODEV)
	require.EqualValues(t, 2, f.q.NumViolations(), "counted even when the record then fails")
}

// --- sizes ----------------------------------------------------------------

// Without CONFIG_IMA_KEXEC every size is ULONG_MAX, whatever happens.
func TestSizesNotTrackedWithoutKexec(t *testing.T) {
	f := newFixture(t, Config{})
	f.wantSizes(NotTracked, NotTracked, NotTracked)
	f.addFiles("/a", 3)
	f.wantSizes(NotTracked, NotTracked, NotTracked)
	require.NoError(t, f.q.Stage())
	f.wantSizes(NotTracked, NotTracked, NotTracked)
	f.addFiles("/b", 2)
	require.NoError(t, f.q.DeletePartial(1))
	f.wantSizes(NotTracked, NotTracked, NotTracked)
	_, err := f.q.DeleteStaged()
	require.NoError(t, err)
	f.wantSizes(NotTracked, NotTracked, NotTracked)
	f.q.RestoreEntry(f.file("/r", "r", 10))
	f.wantSizes(NotTracked, NotTracked, NotTracked)
}

// Sizes saturate at ULONG_MAX and then stay there; a size within the
// header's reach of ULONG_MAX reads as ULONG_MAX.
func TestSizesSaturate(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	a := f.file("/a", "a", 10)
	sz := uint64(a.BinaryRuntimeSize())
	set := func(c Counter, v uint64) {
		f.q.extendListMutex.Lock()
		f.q.binaryRuntimeSize[c] = v
		f.q.extendListMutex.Unlock()
	}
	set(Binary, NotTracked-KexecHeaderSize)
	require.Equal(t, uint64(NotTracked), f.q.BinaryRuntimeSize(Binary), "within the header of ULONG_MAX")
	set(Binary, NotTracked-KexecHeaderSize-1)
	require.Equal(t, uint64(NotTracked-1), f.q.BinaryRuntimeSize(Binary))

	set(Binary, NotTracked-sz-1)   // room for one record
	set(BinaryFull, NotTracked-sz) // no room
	f.add(a)
	f.q.extendListMutex.Lock()
	got := f.q.binaryRuntimeSize
	f.q.extendListMutex.Unlock()
	require.Equal(t, uint64(NotTracked-1), got[Binary], "the record still fitted")
	require.Equal(t, uint64(NotTracked), got[BinaryFull], "saturated")
	f.add(f.file("/b", "b", 10))
	f.q.extendListMutex.Lock()
	got = f.q.binaryRuntimeSize
	f.q.extendListMutex.Unlock()
	require.Equal(t, uint64(NotTracked), got[Binary], "saturated")
	require.Equal(t, uint64(NotTracked), got[BinaryFull], "stays saturated")
	f.wantSizes(NotTracked, sizeOf(), NotTracked)
}

// --- A --------------------------------------------------------------------

// A, success: S := C, C := ∅, STAGED := BINARY, BINARY := 0, the sizes
// likewise; FULL, H and the PCRs are unchanged.
func TestStageMovesCurrentToStaged(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	gen := f.q.Generation()
	pcrs := f.state().PCRs
	require.NoError(t, f.q.Stage())
	f.wantLists(nil, rs)
	f.wantCounts(0, 3, 3)
	f.wantSizes(sizeOf(), sizeOf(rs...), f.fullSize())
	require.Equal(t, gen+1, f.q.Generation())
	require.Equal(t, 3, f.q.HtableLen())
	for _, r := range rs {
		require.True(t, f.inHtable(r))
	}
	require.Equal(t, pcrs, f.state().PCRs)
	requireLive(t, rs...)
}

// §4.1 "A twice" while C has new records: -EEXIST; nothing changes.
func TestStageTwiceEEXIST(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	more := f.addFiles("/b", 2)
	before := f.state()
	require.ErrorIs(t, f.q.Stage(), syscall.EEXIST)
	require.Equal(t, before, f.state())
	f.wantLists(more, rs)
}

// S ≠ ∅ and C = ∅ at once: -EEXIST, because the staged check comes first.
func TestStageEEXISTBeforeENOENT(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	before := f.state()
	require.Empty(t, before.Current)
	require.ErrorIs(t, f.q.Stage(), syscall.EEXIST)
	require.Equal(t, before, f.state())
}

// S ≠ ∅, C ≠ ∅ and suspended at once: -EEXIST before -EACCES.
func TestStageEEXISTBeforeEACCES(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	f.addFiles("/b", 1)
	f.q.Suspend()
	before := f.state()
	require.ErrorIs(t, f.q.Stage(), syscall.EEXIST)
	require.Equal(t, before, f.state())
}

// §4.1 "A with C empty": -ENOENT, also on a fresh queue.
func TestStageEmptyCurrentENOENT(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	before := f.state()
	require.ErrorIs(t, f.q.Stage(), syscall.ENOENT)
	require.Equal(t, before, f.state())
}

// C = ∅ and suspended at once: -ENOENT before -EACCES.
func TestStageENOENTBeforeEACCES(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.q.Suspend()
	before := f.state()
	require.ErrorIs(t, f.q.Stage(), syscall.ENOENT)
	require.Equal(t, before, f.state())
}

// §4.4: A after suspension: -EACCES, nothing changes.
func TestStageSuspendedEACCES(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	f.q.Suspend()
	before := f.state()
	require.ErrorIs(t, f.q.Stage(), syscall.EACCES)
	require.Equal(t, before, f.state())
	f.wantLists(rs, nil)
}

// §4.1: after D, A works again; each A takes what C holds then.
func TestStageAgainAfterDelete(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	first := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	second := f.addFiles("/b", 3)
	n, err := f.q.DeleteStaged()
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, f.q.Stage())
	f.wantLists(nil, second)
	f.wantCounts(0, 3, 5)
	f.wantSizes(sizeOf(), sizeOf(second...), f.fullSize())
	requireFreed(t, first...)
	f.wantPCRs()
}

// §4.1 "New measurements during staging": each record lands in S (added
// before A) or in the new C (after A), never both, never lost.
func TestStageMeasurementsKeepArrivingInCurrent(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	before := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	after := f.addFiles("/b", 2)
	f.wantLists(after, before)
	f.wantCounts(2, 2, 4)
	f.wantSizes(sizeOf(after...), sizeOf(before...), f.fullSize())
	f.wantPCRs()
}

// --- D --------------------------------------------------------------------

// §4.1 "D without A": -ENOENT; "D twice": -ENOENT.
func TestDeleteStagedWithoutStageENOENT(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 2)
	before := f.state()
	n, err := f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ENOENT)
	require.Zero(t, n)
	require.Equal(t, before, f.state())

	require.NoError(t, f.q.Stage())
	_, err = f.q.DeleteStaged()
	require.NoError(t, err)
	before = f.state()
	_, err = f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ENOENT, "D twice")
	require.Equal(t, before, f.state())
}

// S = ∅ and suspended at once: -ENOENT before -ESTALE.
func TestDeleteStagedENOENTBeforeESTALE(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 2)
	f.q.Suspend()
	before := f.state()
	_, err := f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ENOENT)
	require.Equal(t, before, f.state())
}

// §4.4: D after suspension: -ESTALE; the staged records stay, to be
// carried over by kexec.
func TestDeleteStagedSuspendedESTALE(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(map[bool]string{false: "noflush", true: "flush"}[flush], func(t *testing.T) {
			f := newFixture(t, Config{Kexec: true, FlushHtable: flush})
			rs := f.addFiles("/a", 2)
			require.NoError(t, f.q.Stage())
			f.q.Suspend()
			before := f.state()
			n, err := f.q.DeleteStaged()
			require.ErrorIs(t, err, syscall.ESTALE)
			require.Zero(t, n)
			require.Equal(t, before, f.state())
			f.wantLists(nil, rs)
			requireLive(t, rs...)
		})
	}
}

// D, success without flush: S detached, STAGED := 0 (size too), BINARY
// and FULL untouched, template data freed, the digests kept in H so that a
// re-measurement is still a duplicate (§4.3 default).
func TestDeleteStagedFreesTemplateDataKeepsDigests(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/b", 1)
	gen := f.q.Generation()
	n, err := f.q.DeleteStaged()
	require.NoError(t, err)
	require.Equal(t, 3, n)
	f.wantLists(cur, nil)
	f.wantCounts(1, 0, 4)
	f.wantSizes(sizeOf(cur...), sizeOf(), f.fullSize())
	require.Equal(t, gen+1, f.q.Generation())
	requireFreed(t, rs...)
	requireLive(t, cur...)
	require.Equal(t, 4, f.q.HtableLen())
	for _, r := range rs {
		require.True(t, f.inHtable(r), "digest of a deleted record stays in H")
		require.NotNil(t, r.Digests[f.l.HashIndex()].Value)
	}
	require.ErrorIs(t, f.q.Add(f.file("/a0", "/a", 10)), syscall.EEXIST, "re-measurement of a deleted record")
	f.wantPCRs()
}

// D with ima_flush_htable: H := ∅, the records are freed, and a
// re-measurement of a deleted record is added again (duplicates across
// staged groups, as documented).
func TestDeleteStagedFlushEmptiesHtable(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, FlushHtable: true})
	require.True(t, f.q.FlushHtable())
	rs := f.addFiles("/a", 3)
	require.NoError(t, f.q.Stage())
	require.Equal(t, 3, f.q.HtableLen(), "A alone never flushes")
	n, err := f.q.DeleteStaged()
	require.NoError(t, err)
	require.Equal(t, 3, n)
	f.wantLists(nil, nil)
	f.wantCounts(0, 0, 3)
	require.Zero(t, f.q.HtableLen())
	for _, r := range rs {
		require.False(t, f.inHtable(r))
	}
	requireFreed(t, rs...)
	again := f.add(f.file("/a0", "/a", 10))
	require.Equal(t, f.key(rs[0]), f.key(again))
	f.wantLists([]*template.Entry{again}, nil)
	f.wantCounts(1, 0, 4)
	f.wantPCRs()
}

// Q2: with flush, D also forgets the digests of records appended to C
// between A and D; a duplicate of one of them is then appended to the
// same current list.
func TestDeleteStagedFlushForgetsRecordsAddedBetweenAAndD(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, FlushHtable: true})
	f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	mid := f.add(f.file("/mid", "m", 10))
	require.ErrorIs(t, f.q.Add(f.file("/mid", "m", 10)), syscall.EEXIST, "before D it is a duplicate")
	_, err := f.q.DeleteStaged()
	require.NoError(t, err)
	require.False(t, f.inHtable(mid), "Q2: forgotten although still in C")
	dup := f.add(f.file("/mid", "m", 10))
	f.wantLists([]*template.Entry{mid, dup}, nil)
	require.Equal(t, f.key(mid), f.key(dup))
	require.True(t, f.inHtable(dup))
	require.ErrorIs(t, f.q.Add(f.file("/mid", "m", 10)), syscall.EEXIST, "records added after D are deduplicated again")
	requireLive(t, mid, dup)
	f.wantPCRs()
}

// CONFIG_IMA_DISABLE_HTABLE: ima_flush_htable is ignored with the kernel's
// warning; D frees the records completely and H stays empty.
func TestDeleteStagedFlushIgnoredWithHtableDisabled(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, FlushHtable: true, HtableDisabled: true})
	require.False(t, f.q.FlushHtable())
	require.Equal(t, []string{"Hash table not enabled, ignoring request to flush"}, f.q.Warnings())
	fails := 0
	f.q.SetFailAlloc(func() bool { fails++; return true })
	rs := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	n, err := f.q.DeleteStaged()
	require.NoError(t, err, "no flush, so no allocation that could fail")
	require.Equal(t, 2, n)
	require.Zero(t, fails)
	requireFreed(t, rs...)
	require.Zero(t, f.q.HtableLen())
	f.wantCounts(0, 0, 2)
	f.add(f.file("/a0", "/a", 10)) // no duplicate detection at all
}

// The flush warning is given only when both knobs are set.
func TestWarningsOnlyForFlushWithoutHtable(t *testing.T) {
	for _, cfg := range []Config{{}, {FlushHtable: true}, {HtableDisabled: true}} {
		f := newFixture(t, cfg)
		require.Empty(t, f.q.Warnings(), "%+v", cfg)
		require.Equal(t, cfg.FlushHtable, f.q.FlushHtable())
	}
}

// Q3: D with flush when the allocation of the new bucket array fails:
// -ENOMEM, yet the staged records were already detached and STAGED zeroed,
// so they are in no list any more (lost), not freed, still in the old
// table, and later operations go on normally.
func TestDeleteStagedFlushAllocFailureLosesRecords(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, FlushHtable: true})
	rs := f.addFiles("/a", 3)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/b", 1)
	gen := f.q.Generation()
	fail := true
	f.q.SetFailAlloc(func() bool { return fail })
	n, err := f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ENOMEM)
	require.Zero(t, n)
	f.wantLists(cur, nil)
	f.wantCounts(1, 0, 4)
	f.wantSizes(sizeOf(cur...), sizeOf(), f.fullSize())
	require.Equal(t, gen+1, f.q.Generation(), "the lists did change")
	requireLive(t, rs...) // leaked, not freed
	require.Equal(t, 4, f.q.HtableLen(), "the table was not replaced")
	for _, r := range rs {
		require.True(t, f.inHtable(r))
	}
	_, err = f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ENOENT, "nothing is staged any more")

	// The next D with a working allocator flushes normally.
	fail = false
	require.NoError(t, f.q.Stage())
	n, err = f.q.DeleteStaged()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Zero(t, f.q.HtableLen())
	requireFreed(t, cur...)
	f.wantCounts(0, 0, 4)
	f.wantPCRs()
}

// With the hash table disabled and no flush, D still frees everything.
func TestDeleteStagedHtableDisabled(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, HtableDisabled: true})
	rs := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	n, err := f.q.DeleteStaged()
	require.NoError(t, err)
	require.Equal(t, 2, n)
	requireFreed(t, rs...)
	f.wantLists(nil, nil)
	f.wantCounts(0, 0, 2)
}

// §4.1: D deletes S whether or not it was read, and only S.
func TestDeleteStagedOnlyStaged(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/b", 2)
	_, err := f.q.DeleteStaged()
	require.NoError(t, err)
	f.wantLists(cur, nil)
	requireFreed(t, rs...)
	requireLive(t, cur...)
}

// --- N --------------------------------------------------------------------

// N = 0: -EINVAL, nothing changes.
func TestDeletePartialZeroEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 2)
	before := f.state()
	require.ErrorIs(t, f.q.DeletePartial(0), syscall.EINVAL)
	require.Equal(t, before, f.state())
}

// §4.2 N > |C|: -ENOENT, nothing removed; also on an empty list and for
// ULONG_MAX.
func TestDeletePartialTooManyENOENT(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	require.ErrorIs(t, f.q.DeletePartial(1), syscall.ENOENT, "empty list")
	f.addFiles("/a", 3)
	before := f.state()
	require.ErrorIs(t, f.q.DeletePartial(4), syscall.ENOENT)
	require.ErrorIs(t, f.q.DeletePartial(math.MaxUint64), syscall.ENOENT)
	require.Equal(t, before, f.state())
}

// N > |C| and suspended at once: -ENOENT, because the walk comes before
// the suspended check (§4.4 item 3).
func TestDeletePartialENOENTBeforeESTALE(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 2)
	f.q.Suspend()
	before := f.state()
	require.ErrorIs(t, f.q.DeletePartial(3), syscall.ENOENT)
	require.ErrorIs(t, f.q.DeletePartial(2), syscall.ESTALE)
	require.Equal(t, before, f.state())
}

// §4.4: N after suspension: -ESTALE, nothing changes.
func TestDeletePartialSuspendedESTALE(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	f.q.Suspend()
	before := f.state()
	require.ErrorIs(t, f.q.DeletePartial(1), syscall.ESTALE)
	require.Equal(t, before, f.state())
	requireLive(t, rs...)
}

// N, success: the first N records of C removed and their template data
// freed, BINARY -= N, size -= Σsz, FULL untouched, digests kept in H.
func TestDeletePartialRemovesPrefix(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 5)
	gen := f.q.Generation()
	require.NoError(t, f.q.DeletePartial(2))
	f.wantLists(rs[2:], nil)
	f.wantCounts(3, 0, 5)
	f.wantSizes(sizeOf(rs[2:]...), sizeOf(), f.fullSize())
	require.Equal(t, gen+1, f.q.Generation())
	requireFreed(t, rs[:2]...)
	requireLive(t, rs[2:]...)
	require.Equal(t, 5, f.q.HtableLen())
	require.True(t, f.inHtable(rs[0]))
	require.ErrorIs(t, f.q.Add(f.file("/a0", "/a", 10)), syscall.EEXIST, "§4.3: N keeps the digests too")
	f.wantPCRs()
}

// §4.2 N = |C| empties C; the list then works as on a fresh queue.
func TestDeletePartialAllOfCurrent(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	require.NoError(t, f.q.DeletePartial(3))
	f.wantLists(nil, nil)
	f.wantCounts(0, 0, 3)
	f.wantSizes(sizeOf(), sizeOf(), f.fullSize())
	requireFreed(t, rs...)
	require.ErrorIs(t, f.q.Stage(), syscall.ENOENT)
	require.ErrorIs(t, f.q.DeletePartial(1), syscall.ENOENT)
	b := f.add(f.file("/b", "b", 10))
	f.wantLists([]*template.Entry{b}, nil)
	require.NoError(t, f.q.DeletePartial(1))
	f.wantLists(nil, nil)
	f.add(f.file("/c", "c", 10))
	f.wantCounts(1, 0, 5)
	f.wantPCRs()
}

// §4.2 N while S is non-empty removes only from C; S and its counters stay.
func TestDeletePartialWhileStagedOnlyCurrent(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	staged := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/b", 3)
	require.NoError(t, f.q.DeletePartial(2))
	f.wantLists(cur[2:], staged)
	f.wantCounts(1, 2, 5)
	f.wantSizes(sizeOf(cur[2:]...), sizeOf(staged...), f.fullSize())
	requireLive(t, staged...)
	requireFreed(t, cur[:2]...)
	require.ErrorIs(t, f.q.DeletePartial(2), syscall.ENOENT, "the staged records do not count")
}

// N with ima_flush_htable at the queue level (ima_fs.c refuses the request
// before it gets here): the hash table is never flushed on this path.
func TestDeletePartialNeverFlushes(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, FlushHtable: true})
	f.q.SetFailAlloc(func() bool { return true })
	rs := f.addFiles("/a", 2)
	require.NoError(t, f.q.DeletePartial(1))
	require.Equal(t, 2, f.q.HtableLen())
	require.True(t, f.inHtable(rs[0]))
	requireFreed(t, rs[0])
}

// With the hash table disabled N frees the whole records.
func TestDeletePartialHtableDisabled(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, HtableDisabled: true})
	rs := f.addFiles("/a", 2)
	require.NoError(t, f.q.DeletePartial(1))
	f.wantLists(rs[1:], nil)
	requireFreed(t, rs[0])
}

// §4.2 "Concurrent measurements": a record appended between the walk and
// the cut stays in C, and only the N records found are removed.
func TestDeletePartialAppendBetweenWalkAndCut(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	var late *template.Entry
	f.q.SetHooks(&Hooks{AfterPartialWalk: func() { late = f.add(f.file("/late", "l", 10)) }})
	require.NoError(t, f.q.DeletePartial(3))
	f.wantLists([]*template.Entry{late}, nil)
	f.wantCounts(1, 0, 4)
	f.wantSizes(sizeOf(late), sizeOf(), f.fullSize())
	requireLive(t, late)
	requireFreed(t, rs...)
	f.wantPCRs()
}

// A suspension between the walk and the cut gives -ESTALE and changes
// nothing: the suspended check is made under the mutex.
func TestDeletePartialSuspendBetweenWalkAndCut(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 3)
	before := f.state()
	f.q.SetHooks(&Hooks{AfterPartialWalk: f.q.Suspend})
	require.ErrorIs(t, f.q.DeletePartial(2), syscall.ESTALE)
	before.Suspended = true
	require.Equal(t, before, f.state())
}

// --- across operations ----------------------------------------------------

// §4.4 item 3: after suspension every change is refused with its own
// errno, and the lists are exactly as they were.
func TestSuspendRefusesEveryChange(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	staged := f.addFiles("/a", 2)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/b", 2)
	require.False(t, f.q.Suspended())
	f.q.Suspend()
	require.True(t, f.q.Suspended())
	f.q.Suspend() // every reboot notifier call sets it again
	before := f.state()
	require.ErrorIs(t, f.q.Add(f.file("/c", "c", 10)), syscall.ENODEV)
	require.ErrorIs(t, f.q.Stage(), syscall.EEXIST, "S is not empty")
	_, err := f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ESTALE)
	require.ErrorIs(t, f.q.DeletePartial(1), syscall.ESTALE)
	require.Equal(t, before, f.state())
	f.wantLists(cur, staged)
}

// The counters never go negative and BINARY_FULL never decreases, through
// a scripted run of every operation (the property test does the same for
// random runs).
func TestCountersNeverNegativeFullNeverDecreases(t *testing.T) {
	f := newFixture(t, Config{Kexec: true, FlushHtable: true})
	var lastFull int64
	check := func(step string) {
		t.Helper()
		s := f.state()
		for i, c := range s.Counts {
			require.GreaterOrEqual(t, c, int64(0), "%s: counter %v", step, Counter(i))
		}
		require.GreaterOrEqual(t, s.Counts[BinaryFull], lastFull, "%s: BINARY_FULL decreased", step)
		require.Equal(t, int64(len(s.Current)), s.Counts[Binary], step)
		require.Equal(t, int64(len(s.Staged)), s.Counts[BinaryStaged], step)
		require.Equal(t, sizeOf(s.Current...), s.Sizes[Binary], step)
		require.Equal(t, sizeOf(s.Staged...), s.Sizes[BinaryStaged], step)
		lastFull = s.Counts[BinaryFull]
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"add 3", func() { f.addFiles("/a", 3) }},
		{"N 1", func() { _ = f.q.DeletePartial(1) }},
		{"A", func() { _ = f.q.Stage() }},
		{"N 1 (C empty)", func() { _ = f.q.DeletePartial(1) }},
		{"add 2", func() { f.addFiles("/b", 2) }},
		{"N 2", func() { _ = f.q.DeletePartial(2) }},
		{"D", func() { _, _ = f.q.DeleteStaged() }},
		{"D again", func() { _, _ = f.q.DeleteStaged() }},
		{"add 1", func() { f.addFiles("/c", 1) }},
		{"A", func() { _ = f.q.Stage() }},
		{"D", func() { _, _ = f.q.DeleteStaged() }},
		{"restore 1", func() { f.q.RestoreEntry(f.file("/r", "r", 10)) }},
		{"N 1", func() { _ = f.q.DeletePartial(1) }},
	}
	for _, s := range steps {
		s.do()
		check(s.name)
	}
	f.wantCounts(0, 0, 7)
}

// The generation changes with every successful A, D and N, and with
// nothing else.
func TestGeneration(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	g := f.q.Generation()
	want := func(delta uint64, what string) {
		t.Helper()
		require.Equal(t, g+delta, f.q.Generation(), what)
		g = f.q.Generation()
	}
	f.addFiles("/a", 3)
	want(0, "add")
	require.ErrorIs(t, f.q.DeletePartial(9), syscall.ENOENT)
	_, err := f.q.DeleteStaged()
	require.ErrorIs(t, err, syscall.ENOENT)
	want(0, "failed N and D")
	require.NoError(t, f.q.DeletePartial(1))
	want(1, "N")
	require.NoError(t, f.q.Stage())
	want(1, "A")
	require.ErrorIs(t, f.q.Stage(), syscall.EEXIST)
	want(0, "failed A")
	_, err = f.q.DeleteStaged()
	require.NoError(t, err)
	want(1, "D")
	f.q.RestoreEntry(f.file("/r", "r", 10))
	f.q.Suspend()
	want(0, "restore and suspend")
}

// Walk visits a list from a position and returns the position after the
// last record it passed; Entries is the whole list.
func TestWalkPositions(t *testing.T) {
	f := newFixture(t, Config{})
	rs := f.addFiles("/a", 4)
	var seen []*template.Entry
	var idx []int
	next := f.q.Walk(Current, 1, func(i int, e *template.Entry) bool {
		seen, idx = append(seen, e), append(idx, i)
		return i < 2
	})
	require.Equal(t, 3, next)
	require.Equal(t, []int{1, 2}, idx)
	requireSameEntries(t, "walk", rs[1:3], seen)
	require.Equal(t, 4, f.q.Walk(Current, 0, func(int, *template.Entry) bool { return true }))
	require.Equal(t, 4, f.q.Walk(Current, 9, func(int, *template.Entry) bool { t.Fatal("called past the end"); return true }))
	require.Zero(t, f.q.Walk(Staged, 0, func(int, *template.Entry) bool { t.Fatal("staged list is empty"); return true }))
	require.Nil(t, f.q.Entries(Staged))
}

// A reader that reached a released record would panic: Walk never gets
// there, since releases wait for readers; poisoning is what makes a
// use after free visible.
func TestWalkPanicsOnReleasedRecord(t *testing.T) {
	f := newFixture(t, Config{})
	rs := f.addFiles("/a", 2)
	// Poison the head by hand, as a release without a grace period would.
	f.q.current.head.Load().state.Store(dataFreed)
	require.Panics(t, func() { f.q.Walk(Current, 0, func(int, *template.Entry) bool { return true }) })
	requireLive(t, rs...)
}

// LastHold reports the hold of the last A, D or N, and only of those.
func TestLastHold(t *testing.T) {
	f := newFixture(t, Config{})
	require.Zero(t, f.q.LastHold())
	f.addFiles("/a", 2)
	require.Zero(t, f.q.LastHold(), "appends are not timed")
	require.NoError(t, f.q.Stage())
	require.Positive(t, f.q.LastHold())
}

func TestCounterString(t *testing.T) {
	require.Equal(t, "BINARY", Binary.String())
	require.Equal(t, "BINARY_STAGED", BinaryStaged.String())
	require.Equal(t, "BINARY_FULL", BinaryFull.String())
	require.Equal(t, "Counter(7)", Counter(7).String())
	require.Equal(t, "current", Current.String())
	require.Equal(t, "staged", Staged.String())
}

func TestNewRequiresLayout(t *testing.T) {
	_, err := New(Config{})
	require.Error(t, err)
}

// WalkAt with a cursor gives the same records at the same positions as
// Walk from the head, for every position, while records are appended.
func TestWalkAtResumesLikeWalk(t *testing.T) {
	f := newFixture(t, Config{})
	rs := f.addFiles("/a", 5)
	var c Cursor
	for pos := 0; pos <= 7; pos++ {
		if pos == 3 {
			rs = append(rs, f.addFiles("/b", 2)...)
		}
		var got []*template.Entry
		next := f.q.WalkAt(Current, pos, &c, func(i int, e *template.Entry) bool {
			require.Equal(t, pos+len(got), i)
			got = append(got, e)
			return len(got) < 2 // read two records per call, like a small read()
		})
		want := rs[min(pos, len(rs)):min(pos+2, len(rs))]
		requireSameEntries(t, "walk", want, got)
		if len(got) == 2 {
			require.Equal(t, pos+2, next)
		} else {
			require.Equal(t, len(rs), next)
		}
	}
}

// The cursor is used only for the same list, the same generation and a
// position at or after it; otherwise the walk starts from the head.
func TestWalkAtCursorValidity(t *testing.T) {
	f := newFixture(t, Config{})
	rs := f.addFiles("/a", 6)
	first := func(h Head, pos int, c *Cursor) *template.Entry {
		var got *template.Entry
		f.q.WalkAt(h, pos, c, func(_ int, e *template.Entry) bool { got = e; return false })
		return got
	}
	var c Cursor
	require.Same(t, rs[3], first(Current, 3, &c))
	require.Equal(t, 3, c.index)

	// Make the cursor lie about its index: a walk that trusts it shows
	// where it starts. Position 3 now names rs[3] only if the cursor is
	// ignored.
	lie := c
	lie.index = 1
	require.Same(t, rs[5], first(Current, 3, &lie), "a valid cursor is resumed from")
	lie = c
	lie.index = 1
	lie.head = Staged
	require.Same(t, rs[3], first(Current, 3, &lie), "another list's cursor is ignored")
	lie = c
	require.Same(t, rs[1], first(Current, 1, &lie), "a position before the cursor walks from the head")

	// After N the generation changed and positions name other records:
	// position 4 is now past the end, while the old cursor says rs[4].
	c = Cursor{}
	require.Same(t, rs[4], first(Current, 4, &c))
	require.NoError(t, f.q.DeletePartial(2))
	require.Nil(t, first(Current, 4, &c))
	require.Same(t, rs[4], first(Current, 2, &c))
	// Likewise after A: the cursor named a record of the current list.
	require.NoError(t, f.q.Stage())
	require.Nil(t, first(Current, 2, &c))
	require.Same(t, rs[4], first(Staged, 2, &c))
}

// A, D and N allocate nothing (a flushing D excepted: it allocates the new
// bucket array under the mutex, as the kernel's kcalloc does). Whatever
// they allocated would be allocated while holding the extend-list mutex,
// or next to it, and an allocation during a collection's mark phase may
// have to assist the collector: the hold would then grow with the heap,
// that is with the lists, which BenchmarkLockHold shows as a 1e6/1e3
// ratio far above 1.
func TestStagingAllocatesNothing(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := make([]*template.Entry, 300)
	for i := range rs {
		rs[i] = f.file(fmt.Sprintf("/a%d", i), "a", 10)
	}
	next := 0
	restore := func() {
		f.q.RestoreEntry(rs[next])
		next++
	}
	// One record in, staged, deleted: only the append allocates (its
	// queue entry).
	if n := testing.AllocsPerRun(50, func() {
		restore()
		if err := f.q.Stage(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.q.DeleteStaged(); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("append + A + D: %v allocations, want 1 (the queue entry)", n)
	}
	if n := testing.AllocsPerRun(50, func() {
		restore()
		if err := f.q.DeletePartial(1); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("append + N: %v allocations, want 1 (the queue entry)", n)
	}
	restore()
	require.NoError(t, f.q.Stage())
	if n := testing.AllocsPerRun(50, func() {
		if err := f.q.Stage(); !errors.Is(err, syscall.EEXIST) {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("refused A: %v allocations, want 0", n)
	}
}

// A reader resuming with a cursor while A and N run must never reach a
// released record (which panics) nor resume into another list. The
// generation must change only after the lists have: a reader that saw the
// new generation with the old list would save a cursor that the next walk
// trusts, pointing at a record that has since been released or staged.
// The window is a few instructions wide, so the test runs many short
// rounds: the reader walks two records at a time from the head of the
// current list; the deleter appends, removes the first records by N (or
// stages and deletes every record) and waits for the release.
func TestWalkAtCursorDuringStageAndDelete(t *testing.T) {
	budget := time.Second
	if testing.Short() {
		budget = 300 * time.Millisecond
	}
	f := newFixtureWith(t, Config{}, nil, template.LittleEndian)
	es := cheapEntries(0, 1<<19)
	next := 0
	add := func(n int) {
		for range n {
			f.q.RestoreEntry(es.es[next])
			next++
		}
	}
	add(8)
	var stop atomic.Bool
	var walks atomic.Int64
	var g errgroup.Group
	g.Go(func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("reader: %v", p)
			}
		}()
		var c Cursor
		for !stop.Load() {
			// Positions 0, 1 then 2, 3: the second walk resumes from the
			// first's cursor when the generation has not changed.
			for _, pos := range []int{0, 2} {
				f.q.WalkAt(Current, pos, &c, func(i int, e *template.Entry) bool {
					if e.Fields[0] == nil {
						panic(fmt.Sprintf("record %d was released", i))
					}
					return i < pos+1
				})
				walks.Add(1)
			}
			runtime.Gosched()
		}
		return nil
	})
	rounds := 0
	for deadline := time.Now().Add(budget); time.Now().Before(deadline) && next+16 <= len(es.es); rounds++ {
		add(4)
		if rounds%8 == 0 {
			require.NoError(t, f.q.Stage())
			_, err := f.q.DeleteStaged()
			require.NoError(t, err)
			add(8)
		} else {
			require.NoError(t, f.q.DeletePartial(4))
		}
		runtime.Gosched()
	}
	stop.Store(true)
	require.NoError(t, g.Wait())
	t.Logf("%d rounds, %d walks", rounds, walks.Load())
}
