package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCorruptFoundWhenServed: without Options.Verify, Open starts at the
// checkpoint and does not read the committed frames before it (the
// flipped byte goes unseen there), and serving the damaged record reports
// it, naming the segment, the frame's offset and the record's number.
func TestCorruptFoundWhenServed(t *testing.T) {
	d := newDamagedStore(t, 3, 4)
	f := d.recordIn(t, d.segs[0])
	flipByte(t, d.path(f.seg), f.off+frameHeader+int64(f.length)/2)
	c, err := Open(d.dir, d.r.fs(), d.r.options(Prompt))
	require.NoError(t, err, "Open read a frame before the checkpoint")
	defer c.Close()
	_, err = c.Records(0)
	requireCorrupt(t, err, f.seg, f.off, f.record)
	_, err = c.Records(f.record + 1)
	require.NoError(t, err, "serving after the damaged record reads it")
}

// TestCheckpointFallsBack: a checkpoint that is torn, points past the
// durable end or into the middle of a frame, or counts records INDEX does
// not have, is not used: Open scans every segment and serves the log.
func TestCheckpointFallsBack(t *testing.T) {
	d := newDamagedStore(t, 2, 3)
	cpPath := filepath.Join(d.dir, checkpointName)
	good, err := os.ReadFile(cpPath)
	require.NoError(t, err)
	cp, ok := decodeCheckpoint(good)
	require.True(t, ok)
	bad := map[string][]byte{
		"torn":      good[:len(good)-3],
		"garbage":   append([]byte("IMASIMCP"), make([]byte, 40)...),
		"past-end":  checkpointState{at: loc{cp.at.seg, cp.at.off + 100}, base: cp.base, committed: cp.committed, bootIDs: cp.bootIDs}.encode(),
		"mid-frame": checkpointState{at: loc{cp.at.seg, cp.at.off - 3}, base: cp.base, committed: cp.committed, bootIDs: cp.bootIDs}.encode(),
		"too-many":  checkpointState{at: cp.at, base: cp.base, committed: cp.committed + 50, bootIDs: cp.bootIDs}.encode(),
		"too-few":   checkpointState{at: cp.at, base: cp.base, committed: cp.committed - 2, bootIDs: cp.bootIDs}.encode(),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(cpPath, b, 0o600))
			c, err := Open(d.dir, d.r.fs(), d.r.options(Prompt))
			require.NoError(t, err)
			d.r.check(c)
			require.NoError(t, c.Close())
		})
	}
}
