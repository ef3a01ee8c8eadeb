package staging

import (
	"bytes"
	"math/big"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/stretchr/testify/require"
)

// refWrite is the reference decision for one write() to a list file, written
// from docs/SPEC.md §3.4 without looking at request(): the errno (0 for success)
// and the numbers of current and staged records afterwards.
func refWrite(p []byte, staged, flush bool, cur, stg uint64, suspended bool) (syscall.Errno, uint64, uint64) {
	if len(p) < 2 || len(p) > 21 || p[len(p)-1] != '\n' {
		return syscall.EINVAL, cur, stg
	}
	s := p[:len(p)-1]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	switch {
	case p[0] == 'A':
		switch {
		case len(p) != 2 || !staged:
			return syscall.EINVAL, cur, stg
		case stg > 0:
			return syscall.EEXIST, cur, stg
		case cur == 0:
			return syscall.ENOENT, cur, stg
		case suspended:
			return syscall.EACCES, cur, stg
		}
		return 0, 0, cur
	case p[0] == 'D':
		switch {
		case len(p) != 2 || !staged:
			return syscall.EINVAL, cur, stg
		case stg == 0:
			return syscall.ENOENT, cur, stg
		case suspended:
			return syscall.ESTALE, cur, stg
		}
		return 0, cur, 0
	case staged, flush:
		return syscall.EINVAL, cur, stg
	}
	// kstrtoul(s, 10): one optional '+', the longest run of digits (an
	// overflow there is ERANGE whatever follows), one optional '\n', the end.
	s = bytes.TrimPrefix(s, []byte("+"))
	end := 0
	for end < len(s) && '0' <= s[end] && s[end] <= '9' {
		end++
	}
	if end > 0 {
		v, _ := new(big.Int).SetString(string(s[:end]), 10)
		if v.Cmp(new(big.Int).SetUint64(^uint64(0))) > 0 {
			return syscall.ERANGE, cur, stg
		}
	}
	rest := bytes.TrimPrefix(s[end:], []byte("\n"))
	if end == 0 || len(rest) > 0 {
		return syscall.EINVAL, cur, stg
	}
	v, _ := new(big.Int).SetString(string(s[:end]), 10)
	n := v.Uint64()
	switch {
	case n == 0:
		return syscall.EINVAL, cur, stg
	case n > cur:
		return syscall.ENOENT, cur, stg
	case suspended:
		return syscall.ESTALE, cur, stg
	}
	return 0, cur - n, stg
}

// FuzzWrite drives the write grammar with arbitrary bytes on an original or
// a _staged file of a kernel in an arbitrary state (records current and
// staged, ima_flush_htable, suspension), and checks the result against
// refWrite: no panic, the same errno, the same return value and the same
// counters.
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
		next := 0
		add := func(n int) {
			for range n {
				require.NoError(t, q.Add(newEntry(t, l, next)))
				next++
			}
		}
		if hasStaged {
			add(3)
			require.NoError(t, q.Stage())
		}
		add(int(nCur % 8))
		if suspended {
			q.Suspend()
		}
		s, err := New(Config{Queue: q, Staging: true})
		require.NoError(t, err)
		name := BinaryRuntimeMeasurements
		if staged {
			name = BinaryRuntimeMeasurementsStaged
		}
		cur, stg := uint64(q.NumRecords(measlist.Binary)), uint64(q.NumRecords(measlist.BinaryStaged))
		wantErr, wantCur, wantStg := refWrite(p, staged, flush, cur, stg, suspended)

		w, err := s.Open(Root(1), name, wronly)
		require.NoError(t, err)
		n, err := w.Write(p)
		require.NoError(t, w.Close())
		if wantErr == 0 {
			require.NoError(t, err, "%q", p)
			require.Equal(t, len(p), n)
		} else {
			require.Zero(t, n)
			requireErrno(t, err, wantErr, "write")
		}
		require.Equal(t, wantCur, uint64(q.NumRecords(measlist.Binary)), "%q", p)
		require.Equal(t, wantStg, uint64(q.NumRecords(measlist.BinaryStaged)), "%q", p)
		require.Len(t, q.Entries(measlist.Current), int(wantCur))
		require.Len(t, q.Entries(measlist.Staged), int(wantStg))
	})
}
