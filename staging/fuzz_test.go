package staging_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/stagingtest"
	"github.com/stretchr/testify/require"
)

// FuzzWrite drives the write grammar with arbitrary bytes on an original or
// a _staged file of a kernel in an arbitrary state (records current and
// staged, ima_flush_htable, suspension), and checks the result against the
// reference model of stagingtest on measlisttest's queue, given the same
// records: no panic, the same errno, the same return value and the same
// lists.
func FuzzWrite(f *testing.F) {
	seeds := []string{"A\n", "D\n", "5\n", "+5\n", "05\n", "5\n\n", "5\x00x\n", " 5\n", "-5\n", "0x10\n", "0\n",
		"18446744073709551615\n", "18446744073709551616\n", "A5\n", "A", "\n\n", "000000000000000000001\n"}
	for i, s := range seeds {
		f.Add([]byte(s), i%2 == 0, i%5 == 0, uint8(i), i%3 == 0, i%7 == 0)
	}
	l, err := template.NewLayout(nil, template.HashSHA256, template.LittleEndian)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, p []byte, staged, flush bool, nCur uint8, hasStaged, suspended bool) {
		q, err := measlist.New(measlist.Config{Layout: l, FlushHtable: flush})
		require.NoError(t, err)
		ref := measlisttest.New(measlisttest.Config{Layout: l, FlushHtable: flush})
		next := 0
		add := func(n int) {
			for range n {
				path := fmt.Sprintf("/usr/lib/file-%d", next)
				e, err := measlisttest.FileEntry(l, path, []byte(path))
				require.NoError(t, err)
				require.NoError(t, q.Add(e))
				require.NoError(t, ref.Add(e))
				next++
			}
		}
		if hasStaged {
			add(3)
			require.NoError(t, q.Stage())
			require.NoError(t, ref.Stage())
		}
		add(int(nCur % 8))
		if suspended {
			q.Suspend()
			ref.Suspend()
		}
		s, err := staging.New(staging.Config{Queue: q, Staging: true})
		require.NoError(t, err)
		name := staging.BinaryRuntimeMeasurements
		if staged {
			name = staging.BinaryRuntimeMeasurementsStaged
		}
		_, wantErr := stagingtest.Write(ref, p, staged)

		w, err := s.Open(staging.Root(1), name, os.O_WRONLY)
		require.NoError(t, err)
		n, err := w.Write(p)
		require.NoError(t, w.Close())
		if wantErr == nil {
			require.NoError(t, err, "%q", p)
			require.Equal(t, len(p), n)
		} else {
			require.Zero(t, n)
			require.True(t, errors.Is(err, wantErr), "%q: got %v, want %v", p, err, wantErr)
			var pe *fs.PathError
			require.True(t, errors.As(err, &pe), "got %T, want *fs.PathError", err)
			var errno syscall.Errno
			require.True(t, errors.As(err, &errno))
		}
		cur, stg := ref.Lists()
		require.True(t, slices.Equal(cur, q.Entries(measlist.Current)), "%q: current list", p)
		require.True(t, slices.Equal(stg, q.Entries(measlist.Staged)), "%q: staged list", p)
	})
}
