package collector

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/stretchr/testify/require"
)

// smallDisk mounts a tmpfs of size bytes on a new directory and returns
// it; the test is skipped if mounting is not permitted.
func smallDisk(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs is not permitted here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// growDisk gives the tmpfs at dir (from smallDisk) size more room.
func growDisk(t testing.TB, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v: %s", dir, err, out)
	}
}

// fillDisk writes a ballast file that leaves about room bytes free on the
// file system of dir, and returns its path.
func fillDisk(t testing.TB, dir string, room int64) string {
	t.Helper()
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	free := int64(st.Bavail) * st.Bsize
	path := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 4096)
	for n := free - room; n > 0; n -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(n, int64(len(buf)))]); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	return path
}

// TestFullDisk fills the store's file system until a batch no longer
// fits, in both flavours: the cycle fails with ENOSPC, the kernel keeps
// the batch (nothing is deleted), and the store is as it was before the
// batch, so that once space is freed the collector carries on in the same
// segment and a restart opens the store and serves the whole log.
func TestFullDisk(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		t.Run(flav.String(), func(t *testing.T) {
			disk := smallDisk(t, "256k")
			r := newRig(t, ima.Config{})
			dir := filepath.Join(disk, "store")
			c, err := Open(dir, r.fs(), r.options(flav))
			require.NoError(t, err)
			defer func() { c.Close() }()
			r.measure(20)
			_, err = c.Cycle()
			require.NoError(t, err)
			ballast := fillDisk(t, disk, 2048)
			full := 0
			for range 50 {
				r.measure(40)
				committed := c.Committed()
				_, err = c.Cycle()
				if err == nil {
					continue
				}
				require.ErrorIs(t, err, syscall.ENOSPC)
				require.Equal(t, committed, c.Committed())
				r.check(c, "with the disk full")
				full++
				if full == 3 {
					break
				}
			}
			require.Equal(t, 3, full, "the disk never filled")
			require.NoError(t, os.Remove(ballast))
			r.measure(5)
			_, err = c.Cycle()
			require.NoError(t, err)
			r.check(c, "after space was freed")
			require.NoError(t, c.Close())
			c, err = Open(dir, r.fs(), r.options(flav))
			require.NoError(t, err, "reopening the store")
			r.check(c, "after a restart")
		})
	}
}

// TestWriteFailureInjected makes the store's writes fail half-way (as a
// full disk does: part of the bytes written, then an error) at each write
// of a cycle: the batch's, then the commit's. The cycle fails without the
// kernel deleting the batch, or with the batch left pending; either way
// the segment is cut back to where it was, and the next cycles and a
// restart serve the whole log.
func TestWriteFailureInjected(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		for fail := 1; fail <= 2; fail++ {
			t.Run(flav.String()+"/write-"+string(rune('0'+fail)), func(t *testing.T) {
				r := newRig(t, ima.Config{})
				dir := t.TempDir()
				c, err := Open(dir, r.fs(), r.options(flav))
				require.NoError(t, err)
				defer func() { c.Close() }()
				r.measure(10)
				_, err = c.Cycle()
				require.NoError(t, err)
				size := c.st.size
				writes := 0
				c.st.writeHook = func(f *os.File, b []byte) (int, error) {
					writes++
					if writes != fail {
						return f.Write(b)
					}
					n, err := f.Write(b[:len(b)/2])
					if err == nil {
						err = syscall.ENOSPC
					}
					return n, &os.PathError{Op: "write", Path: f.Name(), Err: err}
				}
				r.measure(10)
				committed := c.Committed()
				_, err = c.Cycle()
				require.ErrorIs(t, err, syscall.ENOSPC)
				require.Equal(t, committed, c.Committed())
				if fail == 1 {
					require.Equal(t, size, c.st.size, "the torn batch was not cut")
					require.Equal(t, size, c.st.fileSize(c.st.segN))
				}
				c.st.writeHook = nil
				r.check(c, "after the failed write")
				r.measure(3)
				_, err = c.Cycle()
				require.NoError(t, err)
				r.check(c)
				require.NoError(t, c.Close())
				c, err = Open(dir, r.fs(), r.options(flav))
				require.NoError(t, err)
				r.check(c, "after a restart")
				var ce *CorruptError
				require.False(t, errors.As(err, &ce))
			})
		}
	}
}
