package collector

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/stretchr/testify/require"
)

// otherTID is another task of the system: a reader, an agent, a shell.
const otherTID = 200

func (r *rig) other() staging.FS { return r.kernel().FS(staging.Root(otherTID)) }

// storeSize is the total size of the segments of dir.
func storeSize(t *testing.T, dir string) int64 {
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	require.NoError(t, err)
	var n int64
	for _, name := range names {
		fi, err := os.Stat(name)
		require.NoError(t, err)
		n += fi.Size()
	}
	return n
}

// TestBusyRetried: another task holds a list file open (a reader, which
// keeps the writer out, or another writer); the cycle retries its open
// with back-off and succeeds once the file is closed.
func TestBusyRetried(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		for _, holder := range []struct {
			name string
			file string
			flag int
		}{
			{"reader", staging.BinaryRuntimeMeasurements, os.O_RDONLY},
			{"ascii-reader", staging.ASCIIRuntimeMeasurements + "_sha256", os.O_RDONLY},
			{"writer", staging.BinaryRuntimeMeasurementsStaged, os.O_WRONLY},
		} {
			t.Run(flav.String()+"/"+holder.name, func(t *testing.T) {
				r := newRig(t, ima.Config{})
				c, err := Open(t.TempDir(), r.fs(), r.options(flav))
				require.NoError(t, err)
				defer c.Close()
				r.measure(10)
				f, err := r.other().OpenFile(holder.file, holder.flag)
				require.NoError(t, err)
				const hold = 20 * time.Millisecond
				go func() {
					time.Sleep(hold)
					f.Close()
				}()
				start := time.Now()
				res, err := c.Cycle()
				require.NoError(t, err)
				require.GreaterOrEqual(t, time.Since(start), hold, "the cycle did not wait for the file")
				require.Equal(t, 11, res.Saved)
				r.check(c)
			})
		}
	}
}

// TestBusyGivesUp: a file that stays open makes the cycle fail with
// ErrBusy after Options.Retries attempts, having changed nothing; and
// serving, which reads as another reader, fails the same way while a
// writer holds the files.
func TestBusyGivesUp(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		t.Run(flav.String(), func(t *testing.T) {
			r := newRig(t, ima.Config{})
			dir := t.TempDir()
			opts := r.options(flav)
			opts.Retries, opts.Backoff = 4, time.Millisecond
			c, err := Open(dir, r.fs(), opts)
			require.NoError(t, err)
			defer c.Close()
			r.measure(10)
			before := storeSize(t, dir)
			f, err := r.other().OpenFile(staging.BinaryRuntimeMeasurements, os.O_RDONLY)
			require.NoError(t, err)
			start := time.Now()
			_, err = c.Cycle()
			require.ErrorIs(t, err, ErrBusy)
			// 4 attempts, 3 sleeps of 1+2+4 ms.
			require.GreaterOrEqual(t, time.Since(start), 7*time.Millisecond)
			require.Equal(t, before, storeSize(t, dir))
			require.NoError(t, f.Close())
			r.check(c)

			w, err := r.other().OpenFile(staging.BinaryRuntimeMeasurements, os.O_WRONLY)
			require.NoError(t, err)
			_, err = c.Records(0)
			require.ErrorIs(t, err, ErrBusy)
			require.NoError(t, w.Close())
			r.check(c)
		})
	}
}

// TestNothingToStage: once the whole list was staged and deleted and
// nothing new was measured, A answers ENOENT (prompt) and DeleteN reads an
// empty list: the cycle succeeds, saves nothing and writes nothing to the
// store. A new measurement makes the next cycle save it.
func TestNothingToStage(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		t.Run(flav.String(), func(t *testing.T) {
			r := newRig(t, ima.Config{})
			dir := t.TempDir()
			c, err := Open(dir, r.fs(), r.options(flav))
			require.NoError(t, err)
			defer c.Close()
			// The boot_aggregate alone is something to stage.
			res, err := c.Cycle()
			require.NoError(t, err)
			require.Equal(t, 1, res.Saved)
			if flav == Prompt {
				// The kernel's own answer, through the file.
				err := staging.WriteFile(r.other(), staging.BinaryRuntimeMeasurementsStaged, []byte("A\n"))
				require.ErrorIs(t, err, syscall.ENOENT)
			}
			before := storeSize(t, dir)
			res, err = c.Cycle()
			require.NoError(t, err)
			require.Zero(t, res.Saved)
			require.Zero(t, res.Read)
			require.NotEmpty(t, res.Note)
			require.Equal(t, before, storeSize(t, dir), "an empty cycle wrote to the store")
			r.check(c)

			r.measure(1)
			res, err = c.Cycle()
			require.NoError(t, err)
			require.Equal(t, 1, res.Saved)
			r.check(c)
			require.Equal(t, 2, c.Committed())
		})
	}
}

// TestSuspended: measurement suspended (a reboot or kexec is under way):
// A answers EACCES and the prompt cycle reports ErrSuspended, saving
// nothing; records already staged, or a DeleteN cycle, meet ESTALE at the
// deletion and the batch is aborted. After the kexec everything is served
// once.
func TestSuspended(t *testing.T) {
	for _, tc := range []struct {
		name       string
		flav       Flavour
		preStaged  bool // another actor staged before the suspension
		wantErr    error
		wantCommit int
	}{
		{"prompt", Prompt, false, ErrSuspended, 1},
		{"prompt-already-staged", Prompt, true, ErrStale, 1},
		{"n", DeleteN, false, ErrStale, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, ima.Config{})
			dir := t.TempDir()
			c, err := Open(dir, r.fs(), r.options(tc.flav))
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Cycle()
			require.NoError(t, err)
			r.measure(10)
			if tc.preStaged {
				require.NoError(t, staging.WriteFile(r.other(), staging.BinaryRuntimeMeasurementsStaged, []byte("A\n")))
			}
			r.kernel().Queue().Suspend()
			before := storeSize(t, dir)
			res, err := c.Cycle()
			require.ErrorIs(t, err, tc.wantErr)
			require.Zero(t, res.Saved)
			require.Equal(t, tc.wantCommit, c.Committed())
			if tc.wantErr == ErrSuspended {
				require.Equal(t, before, storeSize(t, dir))
			}
			r.check(c, "suspended")

			next := r.kexec()
			require.NoError(t, c.SwitchKernel(next.FS(staging.Root(collectorTID)), next.BootID(), Kexec))
			r.check(c, "after the kexec")
			r.measure(2)
			res, err = c.Cycle()
			require.NoError(t, err)
			require.Equal(t, 10+1+2, res.Saved)
			r.check(c, "after a cycle on the new kernel")
			recs, err := c.Records(0)
			require.NoError(t, err)
			r.checkOnce(bytes.Join(recs, nil))
			verifyPCR10(t, r.layout(), r.tpm, recs)
		})
	}
}

// TestFlushENOMEM: with ima_flush_htable, a D whose new hash table cannot
// be allocated answers ENOMEM after detaching the staged records (spec
// Q3): the kernel lost them, so the cycle commits the saved copy, which is
// then the only one.
func TestFlushENOMEM(t *testing.T) {
	r := newRig(t, ima.Config{FlushHtable: true})
	var fail atomic.Bool
	r.kernel().Queue().SetFailAlloc(fail.Load)
	dir := t.TempDir()
	c, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	defer c.Close()
	r.measure(10)
	fail.Store(true)
	res, err := c.Cycle()
	require.NoError(t, err)
	require.Equal(t, 11, res.Saved)
	require.Contains(t, res.Note, "ENOMEM")
	require.Equal(t, 11, c.Committed())
	q := r.kernel().Queue()
	require.Zero(t, q.NumRecords(measlist.BinaryStaged), "the kernel detached the staged records")
	require.Zero(t, q.NumRecords(measlist.Binary))
	r.check(c, "after ENOMEM")

	// The store survives a restart with the batch committed.
	require.NoError(t, c.Close())
	c, err = Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	r.check(c, "after a restart")

	fail.Store(false)
	r.measure(5)
	res, err = c.Cycle()
	require.NoError(t, err)
	require.Equal(t, 5, res.Saved)
	require.Empty(t, res.Note)
	recs, err := c.Records(0)
	require.NoError(t, err)
	require.Equal(t, r.want(), bytes.Join(recs, nil))
	verifyPCR10(t, r.layout(), r.tpm, recs)
}

// TestDeleteNRefusedUnderFlush: with ima_flush_htable the kernel refuses N
// (EINVAL). The cycle reports it, the batch stays pending, and the next
// cycle finds the records still in the kernel and aborts it: nothing is
// lost or served twice. The prompt flavour works on the same kernel.
func TestDeleteNRefusedUnderFlush(t *testing.T) {
	r := newRig(t, ima.Config{FlushHtable: true})
	dir := t.TempDir()
	c, err := Open(dir, r.fs(), r.options(DeleteN))
	require.NoError(t, err)
	r.measure(10)
	_, err = c.Cycle()
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Zero(t, c.Committed())
	r.check(c)
	require.NoError(t, c.Close())
	c, err = Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	defer c.Close()
	r.check(c)
	res, err := c.Cycle()
	require.NoError(t, err)
	require.Equal(t, 11, res.Saved)
	r.check(c)
}

// TestAnotherActorStaged: another actor wrote A and went away: the next
// prompt cycle meets EEXIST and takes the staged records as its batch.
// Another actor that deletes a batch between the collector's seal and its
// D (the hazard of two deleters) makes D answer ENOENT: the batch stays
// pending and is then committed, since the kernel no longer has it; the
// collector's copy is the only one left.
func TestAnotherActorStaged(t *testing.T) {
	r := newRig(t, ima.Config{})
	opts := r.options(Prompt)
	var steal bool
	opts.Hook = func(s Step) error {
		if s == StepSealed && steal {
			// The collector's task holds the writer; only it can
			// write, so the other actor is modelled by the same
			// task deleting through a second file (the kernel lets
			// the writer open more files).
			f, err := r.fs().OpenFile(staging.BinaryRuntimeMeasurementsStaged, os.O_WRONLY)
			require.NoError(t, err)
			_, err = f.Write([]byte("D\n"))
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
		return nil
	}
	c, err := Open(t.TempDir(), r.fs(), opts)
	require.NoError(t, err)
	defer c.Close()
	r.measure(5)
	require.NoError(t, staging.WriteFile(r.other(), staging.BinaryRuntimeMeasurementsStaged, []byte("A\n")))
	r.measure(3) // into the current list, after the staged ones
	res, err := c.Cycle()
	require.NoError(t, err)
	require.Equal(t, 6, res.Saved, "the batch is what was staged")
	r.check(c)

	r.measure(4)
	steal = true
	_, err = c.Cycle()
	require.ErrorIs(t, err, syscall.ENOENT)
	steal = false
	require.Equal(t, 6, c.Committed())
	r.check(c) // resolves the pending batch: committed
	require.Equal(t, 6+3+4, c.Committed())
}

// TestBootIDChangeNeedsKind: a store last written under another boot id
// is not continued unless Options.NewBoot says what happened.
func TestBootIDChangeNeedsKind(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	c, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	r.measure(3)
	_, err = c.Cycle()
	require.NoError(t, err)
	require.NoError(t, c.Close())
	r.kexec()
	_, err = Open(dir, r.fs(), r.options(Prompt))
	require.ErrorContains(t, err, "Options.NewBoot")
	opts := r.options(Prompt)
	opts.NewBoot = Kexec
	c, err = Open(dir, r.fs(), opts)
	require.NoError(t, err)
	r.check(c)
	require.NoError(t, c.Close())
}

// TestRebootSwitch: the collector outlives a reboot (SwitchKernel with
// Reboot): a new log starts, Records serves only it, and the old log's
// records stay in the store.
func TestRebootSwitch(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	c, err := Open(dir, r.fs(), r.options(DeleteN))
	require.NoError(t, err)
	defer c.Close()
	r.measure(7)
	_, err = c.Cycle()
	require.NoError(t, err)
	old := r.want()
	next := r.reboot()
	require.NoError(t, c.SwitchKernel(next.FS(staging.Root(collectorTID)), next.BootID(), Reboot))
	require.Zero(t, c.Committed())
	r.check(c)
	r.measure(2)
	_, err = c.Cycle()
	require.NoError(t, err)
	r.check(c)
	logs := logRecords(t, dir)
	require.Len(t, logs, 2)
	require.Equal(t, old, bytes.Join(logs[0], nil))
	require.Len(t, logs[1], 3)
	recs, err := c.Records(0)
	require.NoError(t, err)
	verifyPCR10(t, r.layout(), r.tpm, recs)
}
