package measlist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// --- KexecSegmentSize -----------------------------------------------------

func (f *fixture) setSizes(binary, staged uint64) {
	f.q.extendListMutex.Lock()
	f.q.binaryRuntimeSize[Binary] = binary
	f.q.binaryRuntimeSize[BinaryStaged] = staged
	f.q.extendListMutex.Unlock()
}

// Without CONFIG_IMA_KEXEC the sizes are not tracked and no segment can be
// sized.
func TestKexecSegmentSizeWithoutKexec(t *testing.T) {
	f := newFixture(t, Config{})
	size, err := f.q.KexecSegmentSize(KexecOptions{})
	require.ErrorIs(t, err, ErrKexecTooLarge)
	require.Equal(t, uint64(NotTracked), size, "the size the kernel would have stored")
}

// ALIGN(size(BINARY) + size(BINARY_STAGED) + extra, PAGE_SIZE): each size
// carries the 24-byte header (counted twice, Q9), extra is half a page
// unless CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB is set.
func TestKexecSegmentSize(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	cases := []struct {
		name           string
		binary, staged uint64 // binary_runtime_size values, without headers
		opts           KexecOptions
		want           uint64
	}{
		{"empty", 0, 0, KexecOptions{}, 4096},
		// 2000+24 + 0+24 + 2048 = 4096: one page.
		{"exactly one page", 2000, 0, KexecOptions{}, 4096},
		// One byte more needs a second page; with one header it would not.
		{"second header spills", 2001, 0, KexecOptions{}, 8192},
		{"staged counts too", 1000, 1001, KexecOptions{}, 8192},
		{"extra memory kb", 0, 0, KexecOptions{ExtraMemoryKB: 4}, 8192},
		{"extra memory kb fits", 2000, 0, KexecOptions{ExtraMemoryKB: 2}, 4096},
		{"negative extra is half a page", 2000, 0, KexecOptions{ExtraMemoryKB: -1}, 4096},
		{"64k pages", 30000, 0, KexecOptions{PageSize: 65536}, 65536},
		{"64k pages spill", 32721, 0, KexecOptions{PageSize: 65536}, 131072},
		// Half of 4 pages of RAM is 2 pages: allowed.
		{"half of RAM", 6000, 0, KexecOptions{TotalRAM: 4 * 4096}, 8192},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.setSizes(c.binary, c.staged)
			got, err := f.q.KexecSegmentSize(c.opts)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
	// Refused sizes: the error, and the size the kernel stored in
	// kexec_segment_size all the same (ULONG_MAX when it saturated).
	tooLarge := []struct {
		name           string
		binary, staged uint64
		opts           KexecOptions
		size           uint64
	}{
		{"over half of RAM", 6145, 0, KexecOptions{TotalRAM: 4 * 4096}, 3 * 4096},
		{"saturated binary", NotTracked, 0, KexecOptions{}, NotTracked},
		{"saturated staged", 0, NotTracked - 1, KexecOptions{}, NotTracked},
		{"sum overflows", math.MaxUint64 / 2, math.MaxUint64 / 2, KexecOptions{}, NotTracked},
		{"within a page of ULONG_MAX", math.MaxUint64 - 4096 - 2048 - 48, 0, KexecOptions{TotalRAM: math.MaxUint64}, NotTracked},
	}
	for _, c := range tooLarge {
		t.Run(c.name, func(t *testing.T) {
			f.setSizes(c.binary, c.staged)
			size, err := f.q.KexecSegmentSize(c.opts)
			require.ErrorIs(t, err, ErrKexecTooLarge)
			require.Equal(t, c.size, size)
		})
	}
}

// The segment is sized from the real lists, staged and current.
func TestKexecSegmentSizeFromLists(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	f.addFiles("/a", 20)
	require.NoError(t, f.q.Stage())
	f.addFiles("/b", 20)
	size := f.q.BinaryRuntimeSize(Binary) + f.q.BinaryRuntimeSize(BinaryStaged) + 2048
	got, err := f.q.KexecSegmentSize(KexecOptions{})
	require.NoError(t, err)
	require.Equal(t, (size+4095)/4096*4096, got)
	s, n := f.q.KexecEventCounts()
	require.Equal(t, f.fullSize(), s)
	require.EqualValues(t, 40, n)
}

// --- DumpKexec ------------------------------------------------------------

type kexecHeader struct {
	Version           uint16
	Reserved          [6]byte
	BufferSize, Count uint64
}

func parseHeader(t testing.TB, o template.Order, buf []byte) kexecHeader {
	t.Helper()
	require.GreaterOrEqual(t, len(buf), KexecHeaderSize)
	var bo binary.ByteOrder = binary.LittleEndian
	if o == template.BigEndian {
		bo = binary.BigEndian
	}
	h := kexecHeader{Version: bo.Uint16(buf), BufferSize: bo.Uint64(buf[8:]), Count: bo.Uint64(buf[16:])}
	copy(h.Reserved[:], buf[2:8])
	return h
}

// The dump is the header and the SHA-1 binary records of S, then C, in the
// layout's byte order.
func TestDumpKexecStagedThenCurrent(t *testing.T) {
	for _, o := range []template.Order{template.LittleEndian, template.BigEndian} {
		t.Run(o.String(), func(t *testing.T) {
			tpm, err := tpmext.NewSoftware(tpmext.SHA256, tpmext.SHA1)
			require.NoError(t, err)
			f := newFixtureWith(t, Config{Kexec: true}, tpm, o)
			staged := f.addFiles("/s", 2)
			staged = append(staged, f.add(f.violation("/s/v")))
			require.NoError(t, f.q.Stage())
			cur := f.addFiles("/c", 2)
			f.q.Suspend()
			seg, err := f.q.KexecSegmentSize(KexecOptions{})
			require.NoError(t, err)
			dump, err := f.q.DumpKexec(seg)
			require.NoError(t, err)

			records := binarySHA1(t, f.l, append(staged, cur...)...)
			require.Equal(t, KexecHeaderSize+len(records), len(dump))
			require.Equal(t, kexecHeader{Version: 1, BufferSize: uint64(len(dump)), Count: 5}, parseHeader(t, o, dump))
			require.Equal(t, records, dump[KexecHeaderSize:])
			// The dump's digest column is SHA-1, whatever the banks' order.
			require.Equal(t, 1, f.l.SHA1Index())
			require.Equal(t, staged[0].Digests[1].Value, dump[KexecHeaderSize+4:KexecHeaderSize+24])
			// The violation's digest is dumped as zeros.
			off := KexecHeaderSize + len(binarySHA1(t, f.l, staged[:2]...))
			require.Equal(t, make([]byte, 20), dump[off+4:off+24])
			// The sizes are an upper bound of the dump (the segment has room).
			require.LessOrEqual(t, uint64(len(dump)), f.q.BinaryRuntimeSize(Binary)+f.q.BinaryRuntimeSize(BinaryStaged))
		})
	}
}

// An empty queue dumps the header alone.
func TestDumpKexecEmpty(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	dump, err := f.q.DumpKexec(4096)
	require.NoError(t, err)
	require.Equal(t, []byte{1, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, dump)
	_, err = f.q.DumpKexec(KexecHeaderSize - 1)
	require.Error(t, err, "a segment that cannot hold the header")
}

// A segment that fills up in the middle of a record: the kernel writes the
// record byte by byte (ima_putc() is a loop of seq_putc()), so the segment
// holds every byte of the records up to its end; the partly written record
// is counted, buffer_size is the segment size, and the next record stops
// the dump with -EINVAL.
func TestDumpKexecSegmentTooSmall(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	full := binarySHA1(t, f.l, rs...)
	first := len(binarySHA1(t, f.l, rs[0]))
	for _, cut := range []int{1, 4, 10, 30, len(binarySHA1(t, f.l, rs[1])) - 1} {
		seg := uint64(KexecHeaderSize + first + cut) // the second record is cut
		dump, err := f.q.DumpKexec(seg)
		require.ErrorIs(t, err, syscall.EINVAL, "cut %d", cut)
		require.Equal(t, kexecHeader{Version: 1, BufferSize: seg, Count: 2}, parseHeader(t, f.l.Order(), dump), "cut %d", cut)
		require.Len(t, dump, int(seg))
		require.Equal(t, full[:first+cut], dump[KexecHeaderSize:], "cut %d: the partial record is written up to the segment's end", cut)
	}
}

// A record that ends exactly at the end of the segment is complete: the
// buffer is full (count == size) and the dump stops with -EINVAL only if
// another record follows.
func TestDumpKexecRecordFillsSegmentExactly(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	one := binarySHA1(t, f.l, rs[0])
	seg := uint64(KexecHeaderSize + len(one))
	dump, err := f.q.DumpKexec(seg)
	require.ErrorIs(t, err, syscall.EINVAL, "the second record does not fit")
	require.Equal(t, kexecHeader{Version: 1, BufferSize: seg, Count: 1}, parseHeader(t, f.l.Order(), dump))
	require.Equal(t, one, dump[KexecHeaderSize:])

	require.NoError(t, f.q.DeletePartial(1))
	seg = uint64(KexecHeaderSize + len(binarySHA1(t, f.l, rs[1])))
	dump, err = f.q.DumpKexec(seg)
	require.NoError(t, err, "the last record fits exactly")
	require.Equal(t, kexecHeader{Version: 1, BufferSize: seg, Count: 1}, parseHeader(t, f.l.Order(), dump))
	require.Equal(t, binarySHA1(t, f.l, rs[1]), dump[KexecHeaderSize:])

	// And it restores completely.
	g := newFixture(t, Config{Kexec: true})
	res, err := g.q.RestoreKexec(dump)
	require.NoError(t, err)
	require.Equal(t, 1, res.Restored)
}

// When the staged walk fills the segment, the current list is not dumped.
func TestDumpKexecStagedOverflowSkipsCurrent(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	staged := f.addFiles("/s", 2)
	require.NoError(t, f.q.Stage())
	f.addFiles("/c", 2)
	first := len(binarySHA1(t, f.l, staged[0]))
	seg := uint64(KexecHeaderSize + first + 5)
	dump, err := f.q.DumpKexec(seg)
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Equal(t, kexecHeader{Version: 1, BufferSize: seg, Count: 2}, parseHeader(t, f.l.Order(), dump))
	require.Equal(t, binarySHA1(t, f.l, staged...)[:first+5], dump[KexecHeaderSize:])
}

// --- RestoreKexec ---------------------------------------------------------

// kexecInto suspends f's queue, dumps it into a segment sized as the
// kernel does, and restores the dump into a new queue with the given TPM
// banks (the TPM is shared when banks is nil: kexec does not reset it).
func kexecInto(t *testing.T, f *fixture, cfg Config, banks ...tpmext.Algorithm) (*fixture, []byte) {
	t.Helper()
	f.q.Suspend()
	seg, err := f.q.KexecSegmentSize(KexecOptions{})
	require.NoError(t, err)
	dump, err := f.q.DumpKexec(seg)
	require.NoError(t, err)
	tpm := f.tpm
	if banks != nil {
		tpm, err = tpmext.NewSoftware(banks...)
		require.NoError(t, err)
	}
	g := newFixtureWith(t, cfg, tpm, f.l.Order())
	g.history = f.history // the TPM's own history goes on
	res, err := g.q.RestoreKexec(dump)
	require.NoError(t, err)
	require.Nil(t, res.Stopped)
	require.EqualValues(t, parseHeader(t, f.l.Order(), dump).Count, res.Restored)
	return g, dump
}

// requireRestored checks that got are the records of want restored under
// g's layout: same PCR, template and fields, digests recomputed for g's
// slots (all zero for violations).
func requireRestored(t *testing.T, g *fixture, want, got []*template.Entry) {
	t.Helper()
	require.Len(t, got, len(want))
	for i, w := range want {
		e := got[i]
		require.NotSame(t, w, e)
		require.Equal(t, w.PCR, e.PCR, "record %d", i)
		require.Equal(t, w.Desc.DisplayName(), e.Desc.DisplayName(), "record %d", i)
		require.Equal(t, w.Fields, e.Fields, "record %d", i)
		require.Equal(t, w.Violation, e.Violation, "record %d", i)
		fresh := &template.Entry{PCR: w.PCR, Desc: w.Desc, Fields: w.Fields, Violation: w.Violation}
		require.NoError(t, g.l.ComputeDigests(fresh))
		require.Equal(t, fresh.Digests, e.Digests, "record %d: digests recomputed for the new kernel's slots", i)
	}
}

// §4.4: the new kernel's current list is S ++ C with digests recomputed for
// its own banks; S is empty, BINARY = FULL = the restored count, the sizes
// follow, nothing is in H (so a re-measurement is accepted), nothing is
// extended, and the violations counter starts from 0.
func TestRestoreKexecRoundTripOtherBanks(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	staged := f.addFiles("/s", 2)
	staged = append(staged, f.add(f.violation("/s/v")))
	f.q.AddViolation()
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/c", 2)
	sig := f.l.BufferEvent("kexec-cmdline", []byte("root=/dev/sda1"), false)
	buf, err := f.l.NewEntry(template.Builtin("ima-buf"), 10, sig)
	require.NoError(t, err)
	cur = append(cur, f.add(buf))
	want := append(append([]*template.Entry(nil), staged...), cur...)

	// The new kernel has SHA-256 and SHA-384 banks and ima_hash=sha256: the
	// SHA-1 digest lives in an extra slot.
	g, _ := kexecInto(t, f, Config{Kexec: true}, tpmext.SHA256, tpmext.SHA384)
	require.Equal(t, 3, g.l.NumSlots())
	got := g.q.Entries(Current)
	requireRestored(t, g, want, got)
	g.wantLists(got, nil)
	g.wantCounts(6, 0, 6)
	g.wantSizes(sizeOf(got...), sizeOf(), sizeOf(got...))
	require.Equal(t, sizeOf(want...), sizeOf(got...))
	require.Zero(t, g.q.NumViolations())
	require.Zero(t, g.q.HtableLen())
	for _, e := range got {
		require.False(t, g.inHtable(e))
	}
	require.Equal(t, make([]byte, 32), got[2].Digests[g.l.HashIndex()].Value, "violation restored with zero digests")
	pcrs, err := g.tpm.ReadPCRs()
	require.NoError(t, err)
	require.Equal(t, replay(g.tpm.Banks(), nil), pcrs, "restore extends nothing")

	// A re-measurement of a carried-over record is not a duplicate.
	again := g.add(g.file("/s0", "/s", 10))
	require.Equal(t, g.key(got[0]), g.key(again))
	require.ErrorIs(t, g.q.Add(g.file("/s0", "/s", 10)), syscall.EEXIST, "but it is one now")
	g.wantCounts(7, 0, 7)
	g.history = []*template.Entry{again}
	g.wantPCRs()
}

// Kexec with the same TPM: the PCRs are not reset and keep growing from
// the old kernel's values; the old kernel's staged records come first.
func TestKexecCarriesStagedThenCurrent(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	staged := f.addFiles("/s", 2)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/c", 2)
	g, _ := kexecInto(t, f, Config{Kexec: true})
	requireRestored(t, g, append(staged, cur...), g.q.Entries(Current))
	g.wantCounts(4, 0, 4)
	require.ErrorIs(t, g.q.Stage(), nil, "the new kernel is not suspended")
	g.add(g.file("/after", "x", 10))
	g.wantPCRs()
}

// §4.2 [inferred]: N while S is non-empty, then kexec, carries S ++ C-tail.
func TestKexecAfterPartialDeleteWhileStaged(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	staged := f.addFiles("/s", 2)
	require.NoError(t, f.q.Stage())
	cur := f.addFiles("/c", 3)
	require.NoError(t, f.q.DeletePartial(2))
	g, _ := kexecInto(t, f, Config{Kexec: true})
	requireRestored(t, g, append(staged, cur[2:]...), g.q.Entries(Current))
	g.wantCounts(3, 0, 3)
}

// dumpOf returns a dump of the given records (header in l's order) with
// the given count; the buffer size is the dump's length.
func dumpOf(t *testing.T, l *template.Layout, count uint64, records []byte) []byte {
	t.Helper()
	hdr := l.Order().AppendUint16(nil, 1)
	hdr = append(hdr, 0, 0, 0, 0, 0, 0)
	hdr = l.Order().AppendUint64(hdr, uint64(KexecHeaderSize+len(records)))
	hdr = l.Order().AppendUint64(hdr, count)
	return append(hdr, records...)
}

func restoreInto(t *testing.T, buf []byte) (*fixture, RestoreResult, error) {
	t.Helper()
	g := newFixture(t, Config{Kexec: true})
	res, err := g.q.RestoreKexec(buf)
	require.Equal(t, res.Restored, len(g.q.Entries(Current)))
	require.EqualValues(t, res.Restored, g.q.NumRecords(BinaryFull))
	return g, res, err
}

func TestRestoreKexecShortBufferIsNothing(t *testing.T) {
	for _, buf := range [][]byte{nil, make([]byte, KexecHeaderSize-1)} {
		_, res, err := restoreInto(t, buf)
		require.NoError(t, err)
		require.Zero(t, res.Restored)
	}
}

func TestRestoreKexecBadVersionEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 1)
	for _, v := range []uint16{0, 2, 256} {
		buf := dumpOf(t, f.l, 1, binarySHA1(t, f.l, rs...))
		binary.LittleEndian.PutUint16(buf, v)
		_, res, err := restoreInto(t, buf)
		require.ErrorIs(t, err, syscall.EINVAL, "version %d", v)
		require.Zero(t, res.Restored)
	}
}

// A big-endian kernel's header read by a big-endian kernel; the same bytes
// read little-endian have version 256.
func TestRestoreKexecByteOrder(t *testing.T) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	f := newFixtureWith(t, Config{Kexec: true}, tpm, template.BigEndian)
	rs := f.addFiles("/a", 2)
	f.q.Suspend()
	dump, err := f.q.DumpKexec(8192)
	require.NoError(t, err)
	g := newFixtureWith(t, Config{}, nil, template.BigEndian)
	res, err := g.q.RestoreKexec(dump)
	require.NoError(t, err)
	require.Equal(t, 2, res.Restored)
	requireRestored(t, g, rs, g.q.Entries(Current))
	_, _, err = restoreInto(t, dump)
	require.ErrorIs(t, err, syscall.EINVAL)
}

func TestRestoreKexecTooManyRecordsEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 1)
	buf := dumpOf(t, f.l, math.MaxUint64, binarySHA1(t, f.l, rs...))
	_, res, err := restoreInto(t, buf)
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Zero(t, res.Restored)
	// ULONG_MAX - 1 is allowed: reading stops at the buffer's end.
	binary.LittleEndian.PutUint64(buf[16:], math.MaxUint64-1)
	_, res, err = restoreInto(t, buf)
	require.NoError(t, err)
	require.Equal(t, 1, res.Restored)
}

// The header's count bounds the records read; a count above the records
// present stops at buffer_size without error.
func TestRestoreKexecCountBoundsRecords(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	// count 2: the second record is the last counted one and must end at
	// buffer_size, which it does not (ENFORCE_BUFEND).
	_, res, err := restoreInto(t, dumpOf(t, f.l, 2, binarySHA1(t, f.l, rs...)))
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Equal(t, 1, res.Restored)
	// count 2 with a buffer_size that ends after two records.
	_, res, err = restoreInto(t, dumpOf(t, f.l, 2, binarySHA1(t, f.l, rs[:2]...)))
	require.NoError(t, err)
	require.Equal(t, 2, res.Restored)
	_, res, err = restoreInto(t, dumpOf(t, f.l, 9, binarySHA1(t, f.l, rs...)))
	require.NoError(t, err)
	require.Equal(t, 3, res.Restored)
	_, res, err = restoreInto(t, dumpOf(t, f.l, 0, binarySHA1(t, f.l, rs...)))
	require.NoError(t, err)
	require.Zero(t, res.Restored)
}

// A truncated last record (a dump whose segment filled up) is -EINVAL; the
// records before it stay restored. When the cut record is the last one the
// dump itself reports no error: no record follows to find the buffer full.
func TestRestoreKexecTruncatedLastRecordEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 3)
	f.q.Suspend()
	seg := uint64(KexecHeaderSize + len(binarySHA1(t, f.l, rs[:2]...)) + 7)
	dump, err := f.q.DumpKexec(seg)
	require.NoError(t, err, "the cut record is the last one")
	require.Equal(t, kexecHeader{Version: 1, BufferSize: seg, Count: 3}, parseHeader(t, f.l.Order(), dump))
	g, res, err := restoreInto(t, dump)
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Equal(t, 2, res.Restored)
	requireRestored(t, g, rs[:2], g.q.Entries(Current))
	g.wantCounts(2, 0, 2)
}

// Bytes after the last counted record are -EINVAL (ENFORCE_BUFEND).
func TestRestoreKexecTrailingBytesEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	_, res, err := restoreInto(t, dumpOf(t, f.l, 2, append(binarySHA1(t, f.l, rs...), 0)))
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Equal(t, 1, res.Restored)
}

// A buffer_size beyond the buffer is refused (the kernel would read past
// the segment; a documented difference).
func TestRestoreKexecBufferSizePastEndEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 1)
	buf := dumpOf(t, f.l, 1, binarySHA1(t, f.l, rs...))
	binary.LittleEndian.PutUint64(buf[8:], uint64(len(buf)+1))
	_, _, err := restoreInto(t, buf)
	require.ErrorIs(t, err, syscall.EINVAL)
}

// record builds one dumped record by hand: pcr, a non-zero SHA-1 digest,
// the name, and the template data of the given fields.
func record(name string, fields ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 10)
	b = append(b, bytes.Repeat([]byte{0xab}, 20)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	var data []byte
	for _, f := range fields {
		data = binary.LittleEndian.AppendUint32(data, uint32(len(f)))
		data = append(data, f...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// A template name of 69 bytes or more is -EINVAL; 68 bytes pass the length
// check (here an unknown format, which stops the restore without error).
func TestRestoreKexecLongTemplateNameEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	good := binarySHA1(t, f.l, f.addFiles("/a", 1)...)
	for _, n := range []int{69, 70, 255} {
		recs := append(append([]byte(nil), good...), record(strings.Repeat("x", n), []byte("d"))...)
		_, res, err := restoreInto(t, dumpOf(t, f.l, 2, recs))
		require.ErrorIs(t, err, syscall.EINVAL, "name of %d bytes", n)
		require.Equal(t, 1, res.Restored)
	}
	recs := append(append([]byte(nil), good...), record(strings.Repeat("x", 68), []byte("d"))...)
	_, res, err := restoreInto(t, dumpOf(t, f.l, 2, recs))
	require.NoError(t, err)
	require.NotNil(t, res.Stopped)
	require.Equal(t, 1, res.Restored)
}

// The legacy "ima" template cannot be restored: -EINVAL, earlier records
// stay restored.
func TestRestoreKexecIMATemplateEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	good := f.addFiles("/a", 1)
	ev, err := template.NewFileEvent("/bin/legacy", &template.File{Content: []byte("x")}, template.HashSHA1, nil)
	require.NoError(t, err)
	legacy, err := f.l.NewEntry(template.IMA, 10, ev)
	require.NoError(t, err)
	f.add(legacy)
	f.addFiles("/b", 1)
	f.q.Suspend()
	dump, err := f.q.DumpKexec(8192)
	require.NoError(t, err)
	g, res, err := restoreInto(t, dump)
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Equal(t, 1, res.Restored)
	requireRestored(t, g, good, g.q.Entries(Current))
}

// A template name that is neither a builtin nor a valid format stops the
// restore without an error (restore_template_fmt() fails and the loop
// breaks with the last return value, 0); the records after it are lost.
func TestRestoreKexecUnknownTemplateStops(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 2)
	recs := append(binarySHA1(t, f.l, rs[0]), record("no-such|field", []byte("x"), []byte("y"))...)
	recs = append(recs, binarySHA1(t, f.l, rs[1])...)
	g, res, err := restoreInto(t, dumpOf(t, f.l, 3, recs))
	require.NoError(t, err)
	require.Error(t, res.Stopped)
	require.True(t, errors.Is(res.Stopped, template.ErrUnknownTemplate), "%v", res.Stopped)
	require.Equal(t, 1, res.Restored)
	requireRestored(t, g, rs[:1], g.q.Entries(Current))
}

// The kernel reads a record's whole framing (ima_parse_buf() of pcr,
// digest, name and template data, with ENFORCE_BUFEND on the last counted
// record) before it looks the template name up, so an unknown name in a
// record whose framing is broken is -EINVAL, not a stop.
func TestRestoreKexecUnknownTemplateBadFramingEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	rs := f.addFiles("/a", 1)
	good := binarySHA1(t, f.l, rs...)
	bad := record("no-such|field", []byte("x"))
	for _, c := range []struct {
		name  string
		recs  []byte
		count uint64
	}{
		{"template data cut", append(append([]byte(nil), good...), bad[:len(bad)-3]...), 2},
		{"name cut", append(append([]byte(nil), good...), bad[:4+20+4+5]...), 2},
		{"bytes after the last counted record", append(append(append([]byte(nil), good...), bad...), 0), 2},
	} {
		_, res, err := restoreInto(t, dumpOf(t, f.l, c.count, c.recs))
		require.ErrorIs(t, err, syscall.EINVAL, c.name)
		require.Nil(t, res.Stopped, c.name)
		require.Equal(t, 1, res.Restored, c.name)
	}
	// Well framed, and not the last counted record: a stop, as before.
	recs := append(append(append([]byte(nil), good...), bad...), good...)
	_, res, err := restoreInto(t, dumpOf(t, f.l, 3, recs))
	require.NoError(t, err)
	require.Error(t, res.Stopped)
	require.Equal(t, 1, res.Restored)
}

// A custom format name that is valid is restored as that format; a name
// equal to a builtin's format resolves to the builtin.
func TestRestoreKexecCustomFormat(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	e := f.file("/a", "a", 10)
	recs := record("d-ng|n-ng", e.Fields...)
	g, res, err := restoreInto(t, dumpOf(t, f.l, 1, recs))
	require.NoError(t, err)
	require.Nil(t, res.Stopped)
	require.Equal(t, 1, res.Restored)
	got := g.q.Entries(Current)[0]
	require.Equal(t, "ima-ng", got.Desc.DisplayName())
	require.Equal(t, e.Digests, got.Digests, "recomputed, not the dumped 0xab column")
}

// Template data that does not split into the template's fields is -EINVAL.
func TestRestoreKexecBadTemplateDataEINVAL(t *testing.T) {
	f := newFixture(t, Config{Kexec: true})
	_, res, err := restoreInto(t, dumpOf(t, f.l, 1, record("ima-ng", []byte("only one field"))))
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Zero(t, res.Restored)
}
