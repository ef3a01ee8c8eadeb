package stagingtest_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/stagingtest"
	"github.com/stretchr/testify/require"
)

// TestParseRequest states the grammar's errno order case by case.
func TestParseRequest(t *testing.T) {
	const ok = syscall.Errno(0)
	for _, tt := range []struct {
		p             string
		staged, flush bool
		want          stagingtest.Request
		err           syscall.Errno
	}{
		{"A\n", true, false, stagingtest.Request{Op: stagingtest.Stage}, ok},
		{"D\n", true, true, stagingtest.Request{Op: stagingtest.DeleteStaged}, ok},
		{"A\n", false, false, stagingtest.Request{}, syscall.EINVAL},  // A only on _staged
		{"A5\n", true, false, stagingtest.Request{}, syscall.EINVAL},  // exactly "A\n"
		{"A", true, false, stagingtest.Request{}, syscall.EINVAL},     // too short
		{"D\x00", true, false, stagingtest.Request{}, syscall.EINVAL}, // no newline
		{"5\n", false, false, stagingtest.Request{Op: stagingtest.DeletePartial, N: 5}, ok},
		{"+05\n\n", false, false, stagingtest.Request{Op: stagingtest.DeletePartial, N: 5}, ok}, // kstrtoul takes one '\n'
		{"5\x00junk\n", false, false, stagingtest.Request{Op: stagingtest.DeletePartial, N: 5}, ok},
		{"5\n", true, false, stagingtest.Request{}, syscall.EINVAL},  // N not on _staged
		{"5\n", false, true, stagingtest.Request{}, syscall.EINVAL},  // N refused while flushing
		{"0\n", false, false, stagingtest.Request{}, syscall.EINVAL}, // at least one
		{"-1\n", false, false, stagingtest.Request{}, syscall.EINVAL},
		{" 1\n", false, false, stagingtest.Request{}, syscall.EINVAL},
		{"0x10\n", false, false, stagingtest.Request{}, syscall.EINVAL},
		{"18446744073709551615\n", false, false, stagingtest.Request{Op: stagingtest.DeletePartial, N: 1<<64 - 1}, ok},
		{"18446744073709551616\n", false, false, stagingtest.Request{}, syscall.ERANGE},
		{"99999999999999999999\n", false, false, stagingtest.Request{}, syscall.ERANGE},
		{"99999999999999999999x", false, false, stagingtest.Request{}, syscall.EINVAL},   // no newline first
		{"1844674407370955161x\n", false, false, stagingtest.Request{}, syscall.EINVAL},  // junk after digits
		{"000000000000000000001\n", false, false, stagingtest.Request{}, syscall.EINVAL}, // 22 bytes
	} {
		t.Run(fmt.Sprintf("%q staged=%v flush=%v", tt.p, tt.staged, tt.flush), func(t *testing.T) {
			got, err := stagingtest.ParseRequest([]byte(tt.p), tt.staged, tt.flush)
			if tt.err == ok {
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
				return
			}
			require.Equal(t, tt.err, err)
		})
	}
}

// FuzzParseUlong compares ParseUlong with staging.Kstrtoul, written
// independently, on any input; it also checks ERANGE against the
// overflow digit by digit.
func FuzzParseUlong(f *testing.F) {
	for _, s := range []string{"0", "+1", "++1", "1\n", "1\n\n", "18446744073709551615", "18446744073709551616",
		"184467440737095516150x", "", "\n", "+", "1 ", "007"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		if strings.IndexByte(string(s), 0) >= 0 {
			return // the write grammar cuts at a NUL before parsing
		}
		want, werr := staging.Kstrtoul(s)
		got, gerr := stagingtest.ParseUlong(s)
		if !errors.Is(gerr, werr) || (werr == nil && got != want) || (werr != nil && gerr == nil) {
			t.Fatalf("%q: stagingtest (%d, %v), staging (%d, %v)", s, got, gerr, want, werr)
		}
	})
}

// tasks span the permission rules: root, uid 0 without capabilities, the
// root group (primary, supplementary, with and without CAP_SYS_ADMIN),
// others with each DAC capability.
var tasks = []staging.Task{
	staging.Root(1),
	{TID: 2},
	{TID: 3, UID: 1000, GID: 1000, Groups: []uint32{0}},
	{TID: 4, UID: 1000, GID: 0},
	{TID: 5, UID: 1000, GID: 1000, Groups: []uint32{7, 0}, CapSysAdmin: true},
	staging.User(6, 1000, 1000),
	{TID: 7, UID: 1000, GID: 1000, CapSysAdmin: true},
	{TID: 8, UID: 1000, GID: 1000, CapDACReadSearch: true},
	{TID: 9, UID: 1000, GID: 1000, CapDACOverride: true},
	{TID: 10, UID: 1000, GID: 1000, CapDACOverride: true, CapSysAdmin: true},
}

// TestOpenAgainstStaging opens every file of a simulated securityfs as
// every task with every access mode, one at a time on a fresh directory,
// and compares staging's answer with Open's.
func TestOpenAgainstStaging(t *testing.T) {
	for _, nDel := range []bool{false, true} {
		for _, e := range newFS(t, !nDel, nDel).ReadDir() {
			if e.Mode&fs.ModeSymlink != 0 {
				continue
			}
			list := strings.Contains(e.Name, "runtime_measurements_") && e.Name != staging.RuntimeMeasurementsCount
			for _, task := range tasks {
				for _, flag := range []int{os.O_RDONLY, os.O_WRONLY, os.O_RDWR} {
					read, write := flag != os.O_WRONLY, flag != os.O_RDONLY
					sfs := newFS(t, !nDel, nDel)
					var u stagingtest.Users
					want := stagingtest.Open(&u, task, uint32(e.Mode.Perm()), read, write, list)
					f, err := sfs.Open(task, e.Name, flag)
					if err == nil {
						require.Equal(t, u.State(), sfs.MeasureState(), "%s as %+v", e.Name, task)
						require.NoError(t, f.Close())
					}
					if want == nil {
						require.NoError(t, err, "%s %#o as %+v flag %d", e.Name, e.Mode.Perm(), task, flag)
						continue
					}
					require.ErrorIs(t, err, want, "%s %#o as %+v flag %d", e.Name, e.Mode.Perm(), task, flag)
				}
			}
		}
	}
}

// TestUsersAgainstStaging runs sequences of opens and closes of list files
// by several tasks (closes by another task included) on staging and on
// Users, comparing every answer and the bookkeeping after it.
func TestUsersAgainstStaging(t *testing.T) {
	sfs := newFS(t, true, false)
	var u stagingtest.Users
	type open struct {
		f     *staging.SimFile
		write bool
	}
	var files []open
	step := 0
	for seed := range 2000 {
		step = step*1103515245 + 12345 + seed
		r := step >> 8
		task := staging.Root(1 + r%3)
		switch {
		case r%5 < 3 || len(files) == 0:
			write := r%7 < 3
			flag, name := os.O_RDONLY, staging.BinaryRuntimeMeasurements
			if write {
				flag, name = os.O_RDWR, staging.BinaryRuntimeMeasurementsStaged
			}
			want := stagingtest.Open(&u, task, 0o660, true, write, true)
			f, err := sfs.Open(task, name, flag)
			if want == nil {
				require.NoError(t, err, "step %d", seed)
				files = append(files, open{f, write})
			} else {
				require.ErrorIs(t, err, want, "step %d", seed)
			}
		default:
			i := r % len(files)
			u.Unlock(files[i].write, task.TID)
			require.NoError(t, files[i].f.CloseAs(task))
			files = append(files[:i], files[i+1:]...)
		}
		require.Equal(t, u.State(), sfs.MeasureState(), "step %d", seed)
	}
}

// TestWriteAgainstStaging applies the same requests, on the same records,
// to a securityfs over measlist's queue and to Write on the reference
// queue, comparing errnos, deleted counts and lists.
func TestWriteAgainstStaging(t *testing.T) {
	l, err := template.NewLayout(nil, template.HashSHA256, template.LittleEndian)
	require.NoError(t, err)
	q, err := measlist.New(measlist.Config{Layout: l})
	require.NoError(t, err)
	ref := measlisttest.New(measlisttest.Config{Layout: l})
	sfs, err := staging.New(staging.Config{Queue: q, Staging: true})
	require.NoError(t, err)
	add := func(n int) {
		for range n {
			e := entry(t, l, q.NumRecords(measlist.BinaryFull))
			require.NoError(t, q.Add(e))
			require.NoError(t, ref.Add(e))
		}
	}
	for i, w := range []struct {
		n      int
		staged bool
		p      string
	}{
		{3, true, "A\n"}, {2, false, "2\n"}, {0, true, "A\n"}, {1, false, "2\n"}, {0, false, "1\n"},
		{0, true, "D\n"}, {0, true, "D\n"}, {0, false, "+1\n"}, {4, true, "A\n"}, {0, true, "D\n"},
	} {
		add(w.n)
		name := staging.BinaryRuntimeMeasurements
		if w.staged {
			name = staging.BinaryRuntimeMeasurementsStaged
		}
		_, want := stagingtest.Write(ref, []byte(w.p), w.staged)
		err := staging.WriteFile(sfs.As(staging.Root(1)), name, []byte(w.p))
		if want == nil {
			require.NoError(t, err, "write %d", i)
		} else {
			require.ErrorIs(t, err, want, "write %d", i)
		}
		cur, stg := ref.Lists()
		require.Equal(t, cur, q.Entries(measlist.Current), "write %d", i)
		require.Equal(t, stg, q.Entries(measlist.Staged), "write %d", i)
	}
}

func newFS(t *testing.T, withStaging, nDeleteNeedsStaging bool) *staging.SecurityFS {
	t.Helper()
	l, err := template.NewLayout(nil, template.HashSHA256, template.LittleEndian)
	require.NoError(t, err)
	q, err := measlist.New(measlist.Config{Layout: l})
	require.NoError(t, err)
	s, err := staging.New(staging.Config{Queue: q, Staging: withStaging, NDeleteNeedsStaging: nDeleteNeedsStaging})
	require.NoError(t, err)
	return s
}

func entry(t testing.TB, l *template.Layout, i int64) *template.Entry {
	t.Helper()
	path := fmt.Sprintf("/usr/bin/tool-%d", i)
	e, err := measlisttest.FileEntry(l, path, []byte(path))
	require.NoError(t, err)
	return e
}
