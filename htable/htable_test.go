package htable

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imasim/imasim/htable/rcu"
	"github.com/stretchr/testify/require"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		d    []byte
		want int
	}{
		{[]byte{0x00, 0x00, 0xff}, 0},
		{[]byte{0xff, 0x00}, 0xff},
		{[]byte{0x01, 0x01}, 0x101},
		{[]byte{0x34, 0x12}, 0x234}, // 0x1234 % 1024 = 0x234: only two bits of d[1] count
		{[]byte{0xff, 0xff}, 1023},
	} {
		require.Equal(t, tc.want, Key(tc.d), "Key(%x)", tc.d)
	}
}

func newTable(t *testing.T) *Table[int] {
	tb := New[int](new(rcu.Domain))
	old, err := tb.ReplaceLocked()
	require.NoError(t, err)
	require.Nil(t, old, "the first array replaces none")
	tb.Release(old)
	return tb
}

func TestLookupNeedsDigestAndPCR(t *testing.T) {
	tb := newTable(t)
	d := []byte{1, 2, 3, 4}
	tb.InsertLocked(d, 10, 7)
	v, ok := tb.Lookup([]byte{1, 2, 3, 4}, 10)
	require.True(t, ok)
	require.Equal(t, 7, v)
	_, ok = tb.Lookup(d, 11)
	require.False(t, ok, "same digest in another PCR is not a match")
	_, ok = tb.Lookup([]byte{1, 2, 3, 5}, 10)
	require.False(t, ok, "same bucket, other digest")
	_, ok = tb.Lookup([]byte{1, 2, 3}, 10)
	require.False(t, ok, "prefix is not a match")
	require.Equal(t, 1, tb.Current().Len())
}

func TestReplaceForgetsAndPoisons(t *testing.T) {
	tb := newTable(t)
	tb.InsertLocked([]byte{9, 9}, 10, 1)
	old, err := tb.ReplaceLocked()
	require.NoError(t, err)
	require.NotNil(t, old)
	_, ok := tb.Lookup([]byte{9, 9}, 10)
	require.False(t, ok, "the new array starts empty")
	tb.Release(old)
	require.True(t, old.released.Load())
	require.Nil(t, old.heads[Key([]byte{9, 9})].Load(), "released arrays are poisoned")
}

func TestFailAlloc(t *testing.T) {
	tb := newTable(t)
	tb.InsertLocked([]byte{5, 5}, 10, 1)
	before := tb.Current()
	tb.FailAlloc = func() bool { return true }
	old, err := tb.ReplaceLocked()
	require.ErrorIs(t, err, ErrNoMemory)
	require.Nil(t, old)
	require.Same(t, before, tb.Current(), "a failed allocation leaves the table published")
	_, ok := tb.Lookup([]byte{5, 5}, 10)
	require.True(t, ok)
}

// TestReadersAcrossReplacement runs lock-free lookups while a writer inserts
// and replaces the array; a reader reaching a released array would panic.
func TestReadersAcrossReplacement(t *testing.T) {
	tb := newTable(t)
	var mu sync.Mutex // the extend-list mutex of the test
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				tb.Lookup([]byte{byte(i), byte(i >> 8)}, 10)
			}
		}()
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		mu.Lock()
		tb.InsertLocked([]byte{byte(i), byte(i >> 8)}, 10, i)
		var old *Array[int]
		if i%50 == 0 {
			var err error
			old, err = tb.ReplaceLocked()
			require.NoError(t, err)
		}
		mu.Unlock()
		if old != nil {
			tb.Release(old)
		}
	}
	stop.Store(true)
	wg.Wait()
}

func TestSynchronizeWaitsForReaders(t *testing.T) {
	var d rcu.Domain
	tok := d.ReadLock()
	done := make(chan struct{})
	go func() {
		d.Synchronize()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Synchronize returned while a reader was inside its critical section")
	case <-time.After(50 * time.Millisecond):
	}
	// A reader that starts after the grace period began is not waited for.
	late := d.ReadLock()
	d.ReadUnlock(tok)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Synchronize did not return after the reader left")
	}
	require.EqualValues(t, 1, d.Readers())
	d.ReadUnlock(late)
	require.EqualValues(t, 0, d.Readers())
}
