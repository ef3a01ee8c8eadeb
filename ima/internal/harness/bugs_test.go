package harness

// Minimal tests for the bugs the harness found in the packages under test,
// first committed skipped ("BUG: ...") and kept, once fixed (d64b8f2), as
// regression tests.

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestCollectorKeepsBatchBehindStaged: the collector decides a pending batch
// (one whose D or N answer it did not record) from the kernel's lists. It
// used to check whether staged ++ current started with the batch; a
// DeleteN batch comes from the current list, so while another actor had
// records staged the check failed and the batch was committed although the
// kernel kept it, and the collector then served those records twice.
func TestCollectorKeepsBatchBehindStaged(t *testing.T) {
	file := func(p string) ima.File { return ima.NewFile(p, []byte(p)) }
	for _, tc := range []struct {
		name  string
		flush bool
	}{{"N refused under ima_flush_htable", true}, {"collector crashed after sealing", false}} {
		t.Run(tc.name, func(t *testing.T) {
			tpm, err := tpmext.NewSoftware(tpmext.SHA1)
			require.NoError(t, err)
			k, err := ima.New(ima.Config{TPM: tpm, Staging: true, FlushHtable: tc.flush})
			require.NoError(t, err)
			require.NoError(t, k.Measure(file("/a")))
			// Another actor stages the list (boot_aggregate, /a) and
			// leaves it staged.
			require.NoError(t, staging.WriteFile(k.FS(staging.Root(1)), "binary_runtime_measurements_staged", []byte("A\n")))
			require.NoError(t, k.Measure(file("/b"))) // the current list is [/b]
			crash := !tc.flush
			c, err := collector.Open(t.TempDir(), k.FS(staging.Root(collectorTID)), collector.Options{
				Flavour: collector.DeleteN, BootID: k.BootID(), Layout: k.Layout(), Retries: 1,
				Hook: func(s collector.Step) error {
					if crash && s == collector.StepSealed {
						crash = false
						return errors.New("power loss")
					}
					return nil
				}})
			require.NoError(t, err)
			defer c.Close()
			// The first cycle saves [/b] and seals it; its N is refused
			// (EINVAL under ima_flush_htable) or never sent (crash). The
			// kernel keeps /b.
			_, err = c.Cycle()
			require.Error(t, err)
			require.Len(t, k.Queue().Entries(measlist.Current), 1)
			// The DeleteN cycle first took over what the other actor
			// had staged (boot_aggregate, /a: saved and deleted with D);
			// /b, refused or never deleted, is not committed.
			c.Cycle()
			if tc.flush {
				require.Equal(t, 2, c.Committed(), "the kernel never deleted /b")
			}
			recs, err := c.Records(0)
			require.NoError(t, err)
			// The log since boot is boot_aggregate, /a, /b.
			require.Equal(t, 3, len(recs), "the collector serves /b twice")
		})
	}
}

// TestCounterSeekEnd: the counter files use generic_file_llseek(), which
// accepts SEEK_END relative to i_size (0 for securityfs files); the
// simulator used to answer EINVAL.
func TestCounterSeekEnd(t *testing.T) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1)
	require.NoError(t, err)
	k, err := ima.New(ima.Config{TPM: tpm})
	require.NoError(t, err)
	for _, name := range []string{"runtime_measurements_count", "violations"} {
		f, err := k.SecurityFS().Open(staging.Root(1), name, os.O_RDONLY)
		require.NoError(t, err)
		off, err := f.Seek(1, io.SeekEnd)
		require.NoError(t, err, "%s: lseek(fd, 1, SEEK_END)", name)
		require.Equal(t, int64(1), off)
		// A negative result is EINVAL.
		_, err = f.Seek(-5, io.SeekEnd)
		require.ErrorIs(t, err, syscall.EINVAL)
		_, err = f.Seek(0, 3) // SEEK_DATA: no data before i_size 0
		require.ErrorIs(t, err, syscall.ENXIO)
		f.Close()
	}
}

// TestCollectorPartlyCarriedBatch: a pending batch (here a DeleteN batch
// whose N was refused under ima_flush_htable... then a kexec whose dump ran
// out of room inside it) came back only in part: the collector used to
// commit it whole and serve the carried records twice. It now stops with
// ErrPartlyCarried and keeps every record it saved.
func TestCollectorPartlyCarriedBatch(t *testing.T) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1)
	require.NoError(t, err)
	// PAGE_SIZE 64: the segment has 32 bytes to spare for records added
	// after the load.
	k, err := ima.New(ima.Config{TPM: tpm, Staging: true, Kexec: true, PageSize: 64})
	require.NoError(t, err)
	_, err = k.KexecLoad() // sized for boot_aggregate
	require.NoError(t, err)
	for _, p := range []string{"/a", "/b"} {
		require.NoError(t, k.Measure(ima.NewFile(p, []byte(p))))
	}
	crash := true
	dir := t.TempDir()
	c, err := collector.Open(dir, k.FS(staging.Root(collectorTID)), collector.Options{
		Flavour: collector.DeleteN, BootID: k.BootID(), Layout: k.Layout(), Retries: 1,
		Hook: func(s collector.Step) error {
			if crash && s == collector.StepSealed {
				crash = false
				return errors.New("power loss")
			}
			return nil
		}})
	require.NoError(t, err)
	_, err = c.Cycle() // saves boot_aggregate, /a, /b, then stops before N
	require.ErrorIs(t, err, collector.ErrCrashed)
	require.NoError(t, c.Close())
	k2, err := k.Kexec() // carries boot_aggregate and /a; /b does not fit
	require.NoError(t, err)
	res, _ := k2.Restored()
	require.Equal(t, 2, res.Restored)
	_, err = collector.Open(dir, k2.FS(staging.Root(collectorTID)), collector.Options{
		Flavour: collector.DeleteN, BootID: k2.BootID(), NewBoot: collector.Kexec, Layout: k2.Layout(), Retries: 1})
	require.ErrorIs(t, err, collector.ErrPartlyCarried)
	require.ErrorContains(t, err, "2 of its 3 records came back")
}
