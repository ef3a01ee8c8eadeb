package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/stretchr/testify/require"
)

// TestIndexRebuilt: INDEX is derived from the segments: removed, cut
// short, overwritten with garbage or grown with stale entries, it is
// checked and rebuilt when the store is opened, and the log served is the
// unstaged one; serving from every record N returns exactly the records
// from N on. A reboot starts a new log whose records follow the old log's
// in INDEX.
func TestIndexRebuilt(t *testing.T) {
	r := newRig(t, ima.Config{})
	dir := filepath.Join(t.TempDir(), "store")
	c, err := Open(dir, r.fs(), r.options(Prompt))
	require.NoError(t, err)
	for i := 0; i < 4; i++ {
		r.measure(5)
		_, err = c.Cycle()
		require.NoError(t, err)
	}
	require.NoError(t, c.Close())
	r.reboot()
	opts := r.options(Prompt)
	opts.NewBoot = Reboot
	c, err = Open(dir, r.fs(), opts)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		r.measure(4)
		_, err = c.Cycle()
		require.NoError(t, err)
	}
	r.check(c)
	require.NoError(t, c.Close())
	index := filepath.Join(dir, indexName)
	good, err := os.ReadFile(index)
	require.NoError(t, err)

	damage := map[string]func(){
		"removed":   func() { require.NoError(t, os.Remove(index)) },
		"cut-short": func() { require.NoError(t, os.WriteFile(index, good[:len(good)/2+5], 0o600)) },
		"garbage": func() {
			bad := append([]byte(nil), good...)
			for i := len(bad) / 3; i < len(bad); i += 7 {
				bad[i] ^= 0x5a
			}
			require.NoError(t, os.WriteFile(index, bad, 0o600))
		},
		"stale-entries": func() {
			require.NoError(t, os.WriteFile(index, append(append([]byte(nil), good...), good[:3*indexEntry]...), 0o600))
		},
	}
	for name, do := range damage {
		t.Run(name, func(t *testing.T) {
			do()
			c, err := Open(dir, r.fs(), r.options(Prompt))
			require.NoError(t, err)
			defer c.Close()
			r.check(c)
			got, err := os.ReadFile(index)
			require.NoError(t, err)
			require.Equal(t, good, got, "INDEX not rebuilt")
			all, err := c.Records(0)
			require.NoError(t, err)
			for n := 0; n <= len(all); n++ {
				from, err := c.Records(n)
				require.NoError(t, err)
				require.Equal(t, len(all)-n, len(from), "Records(%d)", n)
				if n < len(all) {
					require.Equal(t, all[n:], from, "Records(%d)", n)
				}
			}
		})
	}
}
