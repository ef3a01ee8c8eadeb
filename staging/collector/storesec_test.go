package collector

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/stretchr/testify/require"
)

// TestLockCannotBeRemoved: removing or replacing whatever files of the
// store are not segments (a lock file) under a running collector does not
// let a second collector in: the lock is on something that cannot be
// swapped out from under its holder.
func TestLockCannotBeRemoved(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	c1, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	defer c1.Close()
	r.measure(3)
	_, err = c1.Cycle()
	require.NoError(t, err)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "seg-") || e.Name() == manifestName {
			continue
		}
		require.NoError(t, os.Remove(filepath.Join(dir, e.Name())), "removing %s", e.Name())
	}
	c2, err := Open(dir, r.fs(), r.options(DeleteN))
	if c2 != nil {
		c2.Close()
	}
	require.ErrorIs(t, err, ErrLocked, "a second collector got into a running collector's store")
}

// TestStoreRefusesSymlinks: the store directory and every file in it are
// opened without following symlinks: a link planted in place of a segment
// (or of the directory) is refused, never written through.
func TestStoreRefusesSymlinks(t *testing.T) {
	r := newRig(t, ima.Config{})
	t.Run("segment", func(t *testing.T) {
		dir := t.TempDir()
		c, err := Open(dir, r.fs(), r.options(Prompt))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		seg := filepath.Join(dir, segName(1))
		outside := filepath.Join(t.TempDir(), "elsewhere")
		require.NoError(t, os.Rename(seg, outside))
		require.NoError(t, os.Symlink(outside, seg))
		before, err := os.ReadFile(outside)
		require.NoError(t, err)
		c, err = Open(dir, r.fs(), r.options(Prompt))
		if c != nil {
			c.Close()
		}
		require.ErrorIs(t, err, syscall.ELOOP)
		after, err := os.ReadFile(outside)
		require.NoError(t, err)
		require.Equal(t, before, after)
	})
	t.Run("lock-file", func(t *testing.T) {
		// A LOCK symlink (the old lock file) is never followed.
		dir := t.TempDir()
		outside := filepath.Join(t.TempDir(), "victim")
		require.NoError(t, os.Symlink(outside, filepath.Join(dir, "LOCK")))
		c, err := Open(dir, r.fs(), r.options(Prompt))
		if err == nil {
			c.Close()
		}
		_, err = os.Lstat(outside)
		require.ErrorIs(t, err, os.ErrNotExist, "a file was created through the symlink")
	})
	t.Run("directory", func(t *testing.T) {
		real := t.TempDir()
		link := filepath.Join(t.TempDir(), "store")
		require.NoError(t, os.Symlink(real, link))
		c, err := Open(link, r.fs(), r.options(Prompt))
		if c != nil {
			c.Close()
		}
		require.ErrorIs(t, err, syscall.ELOOP)
		ents, err := os.ReadDir(real)
		require.NoError(t, err)
		require.Empty(t, ents, "the store was created through the symlink")
	})
}

// TestStoreRefusesForeignDir: a store directory owned by another user, or
// writable by its group or by others, is refused with an error naming the
// path and the owner or mode, and left as it is.
func TestStoreRefusesForeignDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	r := newRig(t, ima.Config{})
	for _, tc := range []struct {
		name string
		uid  int
		mode uint32
		want string
	}{
		{"other-owner", 12345, 0o700, "owned by uid 12345"},
		{"group-writable", 0, 0o770, "mode 0770"},
		{"world-writable", 0, 0o707, "mode 0707"},
		{"sticky-world-writable", 0, 0o1777, "mode 1777"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, os.Chown(dir, tc.uid, 0))
			require.NoError(t, syscall.Chmod(dir, tc.mode))
			c, err := Open(dir, r.fs(), r.options(Prompt))
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			require.ErrorContains(t, err, dir)
			require.ErrorContains(t, err, tc.want)
			ents, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, ents, "a refused store was written to")
		})
	}
}

// TestStoreFormatVersion: a store of format 1 (segments, no manifest) or
// of an unknown version is refused with an error that says so, and left
// as it is.
func TestStoreFormatVersion(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := t.TempDir()
	c, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	r.measure(3)
	_, err = c.Cycle()
	require.NoError(t, err)
	require.NoError(t, c.Close())
	man, err := os.ReadFile(filepath.Join(dir, manifestName))
	require.NoError(t, err)

	require.NoError(t, os.Remove(filepath.Join(dir, manifestName)))
	_, err = Open(dir, r.fs(), r.options(Prompt))
	require.ErrorContains(t, err, "format version 1 is not supported")

	// Version 3 in both slots, checksums fixed up.
	for i := 0; i < 2; i++ {
		slot := man[i*manifestSlot : (i+1)*manifestSlot]
		slot[8] = 3
		binary.LittleEndian.PutUint32(slot[60:], crc32.Checksum(slot[:60], castagnoli))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, manifestName), man, 0o600))
	_, err = Open(dir, r.fs(), r.options(Prompt))
	require.ErrorContains(t, err, "format version 3 is not supported")
}
