package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestLock: one collector per store. A second Open of the same directory
// fails with ErrLocked while the first is open, and succeeds once it is
// closed.
func TestLock(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	c1, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	c2, err := Open(dir, r.fs(), r.options(DeleteN))
	require.ErrorIs(t, err, ErrLocked)
	require.Nil(t, c2)
	// The failed Open changed nothing: the first collector carries on.
	r.measure(3)
	_, err = c1.Cycle()
	require.NoError(t, err)
	require.NoError(t, c1.Close())
	require.ErrorIs(t, c1.Close(), os.ErrClosed)
	_, err = c1.Cycle()
	require.ErrorIs(t, err, os.ErrClosed)

	c2, err = Open(dir, r.fs(), r.options(DeleteN))
	require.NoError(t, err)
	r.check(c2)
	require.NoError(t, c2.Close())
}

// lockHelperEnv makes the test binary, run as a child, hold a store's lock
// until it is killed (see TestMain).
const lockHelperEnv = "IMASIM_COLLECTOR_LOCK_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(killChildEnv); spec != "" {
		killChild(spec) // never returns
	}
	if dir := os.Getenv(lockHelperEnv); dir != "" {
		s, err := openStore(dir, false)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute) // until killed
		s.close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLockOtherProcess: the lock is an OS file lock: another process
// holding the store keeps Open out, and when that process dies (killed,
// no cleanup) the lock goes with it and the store opens.
func TestLockOtherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	c, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	r.measure(3)
	_, err = c.Cycle()
	require.NoError(t, err)
	require.NoError(t, c.Close())

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)

	_, err = Open(dir, r.fs(), r.options(Prompt))
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, cmd.Process.Kill())
	err = cmd.Wait()
	killed = true
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)

	c, err = Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	r.check(c)
	require.NoError(t, c.Close())
}

// TestPermissions: the store directory is 0700 (made so even if it
// existed with wider permissions) and its files 0600, whatever the umask,
// segments started later included.
func TestPermissions(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o077} {
		t.Run(fmt.Sprintf("umask-%03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			r := newRig(t, ima.Config{})
			for _, existing := range []bool{false, true} {
				dir := filepath.Join(t.TempDir(), "store")
				if existing {
					require.NoError(t, os.Mkdir(dir, 0o755))
					require.NoError(t, os.Chmod(dir, 0o755))
				}
				c, err := Open(dir, r.fs(), r.options(Prompt))
				require.NoError(t, err)
				r.measure(2)
				_, err = c.Cycle()
				require.NoError(t, err)
				require.NoError(t, c.st.openSegment(c.st.segN+1))
				r.measure(2)
				_, err = c.Cycle()
				require.NoError(t, err)
				require.NoError(t, c.Close())

				fi, err := os.Stat(dir)
				require.NoError(t, err)
				require.Equal(t, fs.ModeDir|0o700, fi.Mode(), "store directory")
				ents, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Len(t, ents, 5) // MANIFEST, INDEX, CHECKPOINT and two segments
				for _, e := range ents {
					fi, err := e.Info()
					require.NoError(t, err)
					require.Equal(t, fs.FileMode(0o600), fi.Mode(), "%s", e.Name())
				}
			}
		})
	}
}

// crashCycle opens a collector of flavour flav on dir, runs a cycle, calls
// add before times, crashes the next cycle at step at, closes the
// collector and calls add after more times. With add r.sameViolation the
// kernel's list then starts like the crashed cycle's batch.
func crashCycle(t *testing.T, r *rig, dir string, flav Flavour, at Step, add func(), before, after int) {
	t.Helper()
	crash := false
	opts := r.options(flav)
	opts.Hook = func(s Step) error {
		if s == at && crash {
			return errInjected
		}
		return nil
	}
	c, err := Open(dir, r.fs(), opts)
	require.NoError(t, err)
	_, err = c.Cycle()
	require.NoError(t, err)
	for range before {
		add()
	}
	crash = true
	_, err = c.Cycle()
	require.ErrorIs(t, err, ErrCrashed)
	require.NoError(t, c.Close())
	for range after {
		add()
	}
}

// TestRepeatedViolation: every record after the boot_aggregate is the
// same violation, byte for byte, so a deleted batch is followed in the
// kernel by copies of itself. A crash after the seal, before the kernel
// deletes (StepSealed) or after it (StepDeleted), then more copies, and a
// restart in the same kernel or after a kexec (with fewer copies after the
// batch than in it, the new list looks like a kexec dump cut inside the
// batch, ErrPartlyCarried, unless the PCRs say otherwise): the pending batch is
// decided exactly (the staged list for a prompt batch in the same kernel,
// the PCR replay otherwise), and no copy is lost or doubled.
func TestRepeatedViolation(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		for _, at := range []Step{StepSealed, StepDeleted} {
			for _, dead := range []deadEvent{nothing, kexecWhileDead} {
				for _, after := range []int{2, 4} {
					t.Run(fmt.Sprintf("%s/%s/%s/%d-after", flav, stepName(at), dead, after), func(t *testing.T) {
						r := newRig(t, ima.Config{})
						dir := t.TempDir()
						crashCycle(t, r, dir, flav, at, r.sameViolation, 3, after)
						opts := r.options(flav)
						if dead == kexecWhileDead {
							r.kexec()
							opts = r.options(flav)
							opts.NewBoot = Kexec
						}
						c, err := Open(dir, r.fs(), opts)
						require.NoError(t, err)
						defer c.Close()
						r.check(c, "after the restart")
						r.sameViolation()
						_, err = c.Cycle()
						require.NoError(t, err)
						r.check(c, "after a cycle")
						recs, err := c.Records(0)
						require.NoError(t, err)
						verifyPCR10(t, r.layout(), r.tpm, recs)
					})
				}
			}
		}
	}
}

// TestRepeatedViolationWithoutPCRs: without Options.PCRs, a pending batch
// of violations that the kernel's lists cannot decide is ErrAmbiguous, and
// stays pending (nothing guessed, nothing lost) until a collector with a
// PCR reader decides it.
func TestRepeatedViolationWithoutPCRs(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	crashCycle(t, r, dir, DeleteN, StepDeleted, r.sameViolation, 1, 1)
	opts := r.options(DeleteN)
	opts.PCRs = nil
	_, err := Open(dir, r.fs(), opts)
	require.ErrorIs(t, err, ErrAmbiguous)
	c, err := Open(dir, r.fs(), r.options(DeleteN))
	require.NoError(t, err)
	defer c.Close()
	r.check(c)
}

// TestPartlyCarriedWithPCRs: a kexec dump that ran out of room inside a
// pending batch is still ErrPartlyCarried when the PCRs are there to
// read: the whole batch followed by what came back does not replay to
// them (the TPM has the records the dump lost), unlike the same pattern
// made by repeated records (TestRepeatedViolation).
func TestPartlyCarriedWithPCRs(t *testing.T) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1)
	require.NoError(t, err)
	// PAGE_SIZE 64: the kexec segment is sized at load for the
	// boot_aggregate, with 32 bytes to spare.
	k, err := ima.New(ima.Config{TPM: tpm, Staging: true, Kexec: true, PageSize: 64})
	require.NoError(t, err)
	_, err = k.KexecLoad()
	require.NoError(t, err)
	for _, p := range []string{"/a", "/b"} {
		require.NoError(t, k.Measure(ima.File{Path: p, File: template.File{Content: []byte(p)}}))
	}
	pcrs := func() (eventlog.Target, error) {
		v, err := tpm.ReadPCR(ima.DefaultMeasurePCR, tpmext.SHA1)
		return eventlog.Target{PCRs: eventlog.Expected{tpmext.SHA1: {ima.DefaultMeasurePCR: v}}}, err
	}
	dir := t.TempDir()
	c, err := Open(dir, k.FS(staging.Root(collectorTID)), Options{Flavour: DeleteN, BootID: k.BootID(), Layout: k.Layout(), PCRs: pcrs,
		Hook: func(s Step) error {
			if s == StepSealed {
				return errInjected
			}
			return nil
		}})
	require.NoError(t, err)
	_, err = c.Cycle() // saves boot_aggregate, /a, /b, then stops before N
	require.ErrorIs(t, err, ErrCrashed)
	require.NoError(t, c.Close())
	k2, err := k.Kexec() // carries boot_aggregate and /a; /b does not fit
	require.NoError(t, err)
	res, _ := k2.Restored()
	require.Equal(t, 2, res.Restored)
	_, err = Open(dir, k2.FS(staging.Root(collectorTID)), Options{Flavour: DeleteN, BootID: k2.BootID(), NewBoot: Kexec, Layout: k2.Layout(), PCRs: pcrs})
	require.ErrorIs(t, err, ErrPartlyCarried)
}
