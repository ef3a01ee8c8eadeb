package collector

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/staging"
	"github.com/stretchr/testify/require"
)

// writerCountFS wraps a staging.FS and counts the list files its user holds
// open for write at once. No kernel counterpart; exists so that tests can
// assert the collector never holds two writer descriptors (see
// TestOneWriterDescriptor).
type writerCountFS struct {
	fs      staging.FS
	mu      sync.Mutex
	open    int // writer descriptors open now; protected by mu
	maxOpen int // the most ever open at once; protected by mu
	// exiting makes Close release files as another thread of the
	// process, as the kernel does when the last thread to exit is not
	// the one that opened them; protected by mu.
	exiting bool
}

// exitTask is the thread that releases a killed collector's files.
var exitTask = staging.Root(collectorTID + 1)

type writerCountFile struct {
	staging.File
	w    *writerCountFS
	once sync.Once
}

func (w *writerCountFS) OpenFile(name string, flag int) (staging.File, error) {
	f, err := w.fs.OpenFile(name, flag)
	if err != nil || flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return f, err
	}
	w.mu.Lock()
	w.open++
	w.maxOpen = max(w.maxOpen, w.open)
	w.mu.Unlock()
	return &writerCountFile{File: f, w: w}, nil
}

func (f *writerCountFile) Close() error {
	var exiting bool
	f.once.Do(func() {
		f.w.mu.Lock()
		f.w.open--
		exiting = f.w.exiting
		f.w.mu.Unlock()
	})
	if sf, ok := f.File.(*staging.SimFile); ok && exiting {
		return sf.CloseAs(exitTask)
	}
	return f.File.Close()
}

// TestOneWriterDescriptor: a collector never holds two writer descriptors
// at once, in either flavour, with records left staged by another actor,
// and with a crash at every step of a cycle. Two would be fatal on a real
// kernel: if the process is killed while it holds them and the exit-time
// release runs on another thread, each release takes the "not the writer"
// path (ima_measure_unlock(), users++), and the writer count stays
// positive for good: every later writer gets EBUSY until reboot. The test
// also releases the crashed cycles' files the way such an exit does and
// checks that the kernel's bookkeeping is back to zero.
func TestOneWriterDescriptor(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		t.Run(flav.String(), func(t *testing.T) {
			r := newRig(t, ima.Config{})
			w := &writerCountFS{fs: r.fs()}
			opts := r.options(flav)
			var crashAt Step = -1
			opts.Hook = func(s Step) error {
				if s == crashAt {
					w.mu.Lock()
					w.exiting = true
					w.mu.Unlock()
					return errInjected
				}
				return nil
			}
			c, err := Open(t.TempDir(), w, opts)
			require.NoError(t, err)
			defer c.Close()
			for _, s := range append([]Step{-1}, allSteps...) {
				r.measure(4)
				// Another actor stages and goes away (EEXIST: a
				// crashed prompt cycle left records staged).
				err := staging.WriteFile(r.other(), staging.BinaryRuntimeMeasurementsStaged, []byte("A\n"))
				if !errors.Is(err, syscall.EEXIST) {
					require.NoError(t, err)
				}
				r.measure(3)
				crashAt = s
				_, err = c.Cycle()
				if s >= 0 {
					require.ErrorIs(t, err, ErrCrashed, "crash at %s", stepName(s))
				} else {
					require.NoError(t, err)
				}
				crashAt = -1
				w.mu.Lock()
				w.exiting = false
				w.mu.Unlock()
				st := r.kernel().SecurityFS().MeasureState()
				require.Zero(t, st.Users, "crash at %d: users after the cycle", s)
				require.False(t, st.HasWriter)
				r.check(c, "after a crash at ", s)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			require.Equal(t, 1, w.maxOpen, "writer descriptors open at once")
		})
	}
}
