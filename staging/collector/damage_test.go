package collector

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/staging"
	"github.com/stretchr/testify/require"
)

// damagedStore is a store of several segments (rolled over by hand), each
// holding several committed batches, and the rig that filled it.
type damagedStore struct {
	r      *rig
	dir    string
	frames []frameAt
	segs   []string
}

// newDamagedStore fills a store with segs segments of batches batches of
// 5 records each, and closes it.
func newDamagedStore(t *testing.T, segs, batches int) *damagedStore {
	d := &damagedStore{r: newRig(t, ima.Config{}), dir: t.TempDir()}
	c, err := Open(d.dir, d.r.fs(), d.r.options(Prompt))
	require.NoError(t, err)
	for s := range segs {
		for range batches {
			d.r.measure(5)
			res, err := c.Cycle()
			require.NoError(t, err)
			require.Positive(t, res.Saved)
		}
		if s < segs-1 {
			require.NoError(t, c.st.openSegment(c.st.segN+1))
		}
	}
	d.r.check(c)
	require.NoError(t, c.Close())
	d.frames = readFrames(t, d.dir)
	for _, f := range d.frames {
		if len(d.segs) == 0 || d.segs[len(d.segs)-1] != f.seg {
			d.segs = append(d.segs, f.seg)
		}
	}
	require.Len(t, d.segs, segs)
	return d
}

// recordIn returns a committed record frame of segment seg that is not
// the first of its batch, about half-way through the segment.
func (d *damagedStore) recordIn(t *testing.T, seg string) frameAt {
	var in []frameAt
	for i, f := range d.frames {
		if f.seg == seg && f.typ == frameRecord && f.record >= 0 && d.frames[i-1].typ == frameRecord {
			in = append(in, f)
		}
	}
	require.NotEmpty(t, in)
	return in[len(in)/2]
}

func (d *damagedStore) path(seg string) string { return filepath.Join(d.dir, seg) }

// snapshot returns the contents of every file of the store.
func (d *damagedStore) snapshot(t *testing.T) map[string][]byte {
	m := map[string][]byte{}
	ents, err := os.ReadDir(d.dir)
	require.NoError(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(d.dir, e.Name()))
		require.NoError(t, err)
		m[e.Name()] = b
	}
	return m
}

// openCorrupt opens the damaged store, which must fail with a
// *CorruptError naming seg, off and record, and leave every file as it
// was: damage is reported, never repaired by cutting.
func (d *damagedStore) openCorrupt(t *testing.T, seg string, off int64, record int) {
	t.Helper()
	before := d.snapshot(t)
	// Verify: a damaged frame before the checkpoint is otherwise found
	// when it is served (TestCorruptFoundWhenServed).
	opts := d.r.options(Prompt)
	opts.Verify = true
	c, err := Open(d.dir, d.r.fs(), opts)
	if err == nil {
		recs, _ := c.Records(0)
		committed := c.Committed()
		c.Close()
		t.Fatalf("Open of a damaged store succeeded (committed %d, serving %d records): damage skipped silently", committed, len(recs))
	}
	ce := requireCorrupt(t, err, seg, off, record)
	t.Logf("%v", ce)
	require.Equal(t, before, d.snapshot(t), "a failed Open changed the store")
	// The lock was released: the operator can look at the store.
	c, err = Open(d.dir, d.r.fs(), opts)
	require.Nil(t, c)
	require.ErrorAs(t, err, &ce)
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[off] ^= 0x10
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

func putLength(t *testing.T, path string, off int64, length uint32) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(b[off:], length)
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// TestCorruptFlippedByte flips one byte of a record frame's payload in the
// middle of a segment (the first, a middle one, the last): Open reports
// the segment, the frame's offset and that record's number.
func TestCorruptFlippedByte(t *testing.T) {
	for _, which := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("segment-%d-of-3", which+1), func(t *testing.T) {
			d := newDamagedStore(t, 3, 4)
			f := d.recordIn(t, d.segs[which])
			flipByte(t, d.path(f.seg), f.off+frameHeader+int64(f.length)/2)
			d.openCorrupt(t, f.seg, f.off, f.record)
		})
	}
	t.Run("checksum-field", func(t *testing.T) {
		d := newDamagedStore(t, 2, 4)
		f := d.recordIn(t, d.segs[0])
		flipByte(t, d.path(f.seg), f.off+5)
		d.openCorrupt(t, f.seg, f.off, f.record)
	})
	t.Run("type-byte", func(t *testing.T) {
		d := newDamagedStore(t, 2, 4)
		f := d.recordIn(t, d.segs[1])
		flipByte(t, d.path(f.seg), f.off+8)
		d.openCorrupt(t, f.seg, f.off, f.record)
	})
	t.Run("last-frame-of-the-store", func(t *testing.T) {
		// The last commit frame is fsynced: a bad checksum there is
		// damage, not a torn write (a torn write is a short file).
		d := newDamagedStore(t, 1, 3)
		last := d.frames[len(d.frames)-1]
		require.Equal(t, frameCommit, last.typ)
		first := -1 // the last batch's first record
		for i := len(d.frames) - 2; d.frames[i].typ != frameCommit; i-- {
			if d.frames[i].typ == frameRecord {
				first = d.frames[i].record
			}
		}
		flipByte(t, d.path(last.seg), last.off+8)
		d.openCorrupt(t, last.seg, last.off, first)
	})
}

// TestCorruptHugeLength makes a record frame's length field huge: beyond
// any frame (past maxFramePayload), or merely past the end of the segment
// — in the last segment too, where a frame running past the end looks like
// a torn tail but valid frames follow it.
func TestCorruptHugeLength(t *testing.T) {
	for _, tc := range []struct {
		name   string
		seg    int // of 2
		length func(size int64) uint32
	}{
		{"impossible/not-last-segment", 0, func(int64) uint32 { return 0xffffffff }},
		{"impossible/last-segment", 1, func(int64) uint32 { return 0xffffffff }},
		{"past-the-end/not-last-segment", 0, func(size int64) uint32 { return uint32(size) }},
		{"past-the-end/last-segment", 1, func(size int64) uint32 { return uint32(size) }},
		{"past-the-end-by-one/last-segment", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDamagedStore(t, 2, 4)
			f := d.recordIn(t, d.segs[tc.seg])
			fi, err := os.Stat(d.path(f.seg))
			require.NoError(t, err)
			length := uint32(fi.Size() - f.off - frameHeader + 1)
			if tc.length != nil {
				length = tc.length(fi.Size())
			}
			putLength(t, d.path(f.seg), f.off, length)
			d.openCorrupt(t, f.seg, f.off, f.record)
		})
	}
}

// TestCorruptTruncatedSegment truncates a segment that is not the last,
// inside a frame or exactly between two frames, or removes one: either way
// records that were committed (and deleted from the kernel) are missing,
// which Open reports instead of serving a log with a hole. Between frames
// and for a missing segment, only the link each segment starts with (the
// previous segment's size) shows it.
func TestCorruptTruncatedSegment(t *testing.T) {
	t.Run("inside-a-frame", func(t *testing.T) {
		d := newDamagedStore(t, 3, 4)
		f := d.recordIn(t, d.segs[1])
		require.NoError(t, os.Truncate(d.path(f.seg), f.off+frameHeader+3))
		d.openCorrupt(t, f.seg, f.off, f.record)
	})
	t.Run("inside-a-header", func(t *testing.T) {
		d := newDamagedStore(t, 3, 4)
		f := d.recordIn(t, d.segs[0])
		require.NoError(t, os.Truncate(d.path(f.seg), f.off+4))
		d.openCorrupt(t, f.seg, f.off, f.record)
	})
	t.Run("between-batches", func(t *testing.T) {
		// Cut right after a commit frame: every remaining frame of the
		// segment is whole and consistent.
		d := newDamagedStore(t, 3, 4)
		var cut frameAt
		for i, f := range d.frames {
			if f.seg == d.segs[1] && f.typ == frameCommit && d.frames[i+1].seg == f.seg {
				cut = f // the last such commit: a whole batch follows it
			}
		}
		end := cut.off + frameHeader
		committed := 0
		for _, f := range d.frames {
			if f.record >= 0 && (f.seg < cut.seg || f.seg == cut.seg && f.off < cut.off) {
				committed++
			}
		}
		require.NoError(t, os.Truncate(d.path(cut.seg), end))
		d.openCorrupt(t, cut.seg, end, committed)
	})
	t.Run("missing-segment", func(t *testing.T) {
		d := newDamagedStore(t, 3, 4)
		require.NoError(t, os.Remove(d.path(d.segs[1])))
		committed := 0
		for _, f := range d.frames {
			if f.record >= 0 && f.seg == d.segs[0] {
				committed++
			}
		}
		d.openCorrupt(t, d.segs[1], 0, committed)
	})
}

// TestTornTailRecovered cuts the last segment at every length inside its
// last batch's write (records and seal, written but never fsynced, so the
// kernel was never asked to delete them): Open recovers silently, the cut
// records are not served from the store (they come from the kernel, once),
// and the store is cut back to the last durable frame.
func TestTornTailRecovered(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	var written struct {
		seg           int
		durable, size int64
	}
	opts := r.options(Prompt)
	stop := false
	var c *Collector
	opts.Hook = func(s Step) error {
		if s == StepWritten && stop {
			written.seg, written.durable, written.size = c.st.segN, c.st.durable, c.st.size
			return errInjected
		}
		return nil
	}
	c, err := Open(dir, r.fs(), opts)
	require.NoError(t, err)
	r.measure(20)
	_, err = c.Cycle()
	require.NoError(t, err)
	r.measure(3)
	stop = true
	_, err = c.Cycle()
	require.ErrorIs(t, err, ErrCrashed)
	stop = false
	require.NoError(t, c.Close())
	path := filepath.Join(dir, segName(written.seg))
	full, err := os.ReadFile(path)
	require.NoError(t, err)
	require.EqualValues(t, written.size, len(full))
	step := int64(1)
	if testing.Short() {
		step = 7
	}
	for cut := written.durable; cut <= written.size; cut += step {
		require.NoError(t, os.WriteFile(path, full[:cut], 0o600))
		c, err = Open(dir, r.fs(), opts)
		require.NoError(t, err, "cut at %d (durable %d, written %d)", cut, written.durable, written.size)
		if cut < written.size {
			// The torn or unsealed batch is gone from the store.
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, written.durable, fi.Size(), "cut at %d", cut)
			require.Equal(t, written.durable, c.st.durable)
		}
		r.check(c, fmt.Sprintf("cut at %d", cut))
		require.Equal(t, 21, c.Committed(), "cut at %d", cut) // boot_aggregate and 20 records
		require.NoError(t, c.Close())
	}
	// And the collector carries on from there.
	c, err = Open(dir, r.fs(), opts)
	require.NoError(t, err)
	r.measure(2)
	_, err = c.Cycle()
	require.NoError(t, err)
	r.check(c)
	// The torn batch was staged (A) before the crash: this cycle takes
	// it (EEXIST) and leaves the 2 new records in the current list.
	require.Equal(t, 24, c.Committed())
	recs, err := c.Records(0)
	require.NoError(t, err)
	r.checkOnce(bytes.Join(recs, nil))
	require.NoError(t, c.Close())
}

// TestSegmentLinkTorn: a crash while a new segment was being started,
// before the manifest moved to it, leaves it empty or with a torn link;
// recovery empties it silently, and the link is written again.
func TestSegmentLinkTorn(t *testing.T) {
	for _, keep := range []int64{0, 4, frameHeader, frameHeader + 7} {
		t.Run(fmt.Sprintf("keep-%d", keep), func(t *testing.T) {
			r := newRig(t, ima.Config{})
			dir := t.TempDir()
			c, err := Open(dir, r.fs(), r.options(Prompt))
			require.NoError(t, err)
			r.measure(4)
			_, err = c.Cycle()
			require.NoError(t, err)
			require.NoError(t, c.st.openSegment(c.st.segN+1))
			last := filepath.Join(dir, segName(c.st.segN))
			require.NoError(t, c.Close())
			// The crash came before the manifest moved to the new
			// segment.
			tearManifest(t, dir)
			full, err := os.ReadFile(last)
			require.NoError(t, err)
			require.Len(t, full, frameHeader+8, "a new segment holds its link")
			require.Equal(t, frameLink, full[8])
			require.NoError(t, os.WriteFile(last, full[:keep], 0o600))

			c, err = Open(dir, r.fs(), r.options(Prompt))
			require.NoError(t, err)
			again, err := os.ReadFile(last)
			require.NoError(t, err)
			require.Equal(t, full, again, "the link is written again")
			r.check(c)
			r.measure(3)
			_, err = c.Cycle()
			require.NoError(t, err)
			require.NoError(t, c.Close())
			c, err = Open(dir, r.fs(), r.options(Prompt))
			require.NoError(t, err)
			r.check(c)
			require.Equal(t, 8, c.Committed())
			require.NoError(t, c.Close())
		})
	}
}

// TestCorruptLastSegment damages the end of the store, where a torn write
// could hide damage: the last segment cut right after a commit (dropping
// whole committed batches) or inside a committed record, the last segment
// removed, or the last batch's seal and commit dropped. Every one drops
// records the kernel no longer has; Open reports it, naming the segment,
// the offset where the data stops and the first record missing, instead
// of serving fewer records.
func TestCorruptLastSegment(t *testing.T) {
	committedBefore := func(d *damagedStore, seg string, off int64) int {
		n := 0
		for _, f := range d.frames {
			if f.record >= 0 && (f.seg < seg || f.seg == seg && f.off < off) {
				n++
			}
		}
		return n
	}
	lastOf := func(d *damagedStore, typ byte, skip int) frameAt {
		for i := len(d.frames) - 1; i >= 0; i-- {
			if d.frames[i].typ == typ {
				if skip == 0 {
					return d.frames[i]
				}
				skip--
			}
		}
		t.Fatalf("no frame of type %d", typ)
		return frameAt{}
	}
	t.Run("cut-after-a-commit", func(t *testing.T) {
		d := newDamagedStore(t, 3, 4)
		f := lastOf(d, frameCommit, 1)
		require.Equal(t, d.segs[2], f.seg)
		end := f.off + frameHeader
		require.NoError(t, os.Truncate(d.path(f.seg), end))
		d.openCorrupt(t, f.seg, end, committedBefore(d, f.seg, end))
	})
	t.Run("cut-inside-a-record", func(t *testing.T) {
		d := newDamagedStore(t, 3, 4)
		f := d.recordIn(t, d.segs[2])
		require.NoError(t, os.Truncate(d.path(f.seg), f.off+frameHeader+3))
		d.openCorrupt(t, f.seg, f.off, f.record)
	})
	t.Run("last-segment-removed", func(t *testing.T) {
		d := newDamagedStore(t, 3, 4)
		require.NoError(t, os.Remove(d.path(d.segs[2])))
		d.openCorrupt(t, d.segs[2], 0, committedBefore(d, d.segs[2], 0))
	})
	t.Run("last-seal-and-commit-dropped", func(t *testing.T) {
		// The records stay, unsealed: the first untrusted record is the
		// batch's first.
		d := newDamagedStore(t, 1, 4)
		f := lastOf(d, frameSeal, 0)
		prev := lastOf(d, frameCommit, 1)
		require.NoError(t, os.Truncate(d.path(f.seg), f.off))
		d.openCorrupt(t, f.seg, f.off, committedBefore(d, prev.seg, prev.off))
	})
}

// TestTailNotInKernel: records written after the store's durable end
// (never sealed, so never deleted by this collector) are cut by recovery
// only if the kernel still holds them. Here another actor deleted them
// while the collector was down: Open refuses, leaving the store as it is,
// rather than lose them.
func TestTailNotInKernel(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	crashCycle(t, r, dir, Prompt, StepWritten, func() { r.measure(1) }, 4, 0)
	require.NoError(t, staging.WriteFile(r.other(), staging.BinaryRuntimeMeasurementsStaged, []byte("D\n")))
	d := &damagedStore{r: r, dir: dir}
	before := d.snapshot(t)
	_, err := Open(dir, r.fs(), r.options(Prompt))
	require.ErrorIs(t, err, ErrTailNotInKernel)
	require.Equal(t, before, d.snapshot(t), "a refused Open changed the store")
}
