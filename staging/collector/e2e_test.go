package collector

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestEndToEnd runs collection cycles of one flavour while goroutines
// measure files and record violations during every cycle (the hook holds
// each cycle between its read and its deletion until new records have
// arrived), with a kexec between A and D (or between the read and N) twice.
// At the end the concatenated log equals, byte for byte, the list of the
// same run on a kernel without staging, in every bank's binary and ASCII
// form; it replays to PCR 10 of every bank; and it holds every measured
// event exactly once.
func TestEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		flav      Flavour
		cover     bool // DeleteN deletes a random prefix of what it read
		bigEndian bool
	}{
		{name: "prompt", flav: Prompt},
		{name: "n", flav: DeleteN},
		{name: "n-cover", flav: DeleteN, cover: true},
		{name: "prompt-big-endian", flav: Prompt, bigEndian: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runEndToEnd(t, tc.flav, tc.cover, tc.bigEndian)
		})
	}
}

func runEndToEnd(t *testing.T, flav Flavour, cover, bigEndian bool) {
	r := newRig(t, ima.Config{BigEndian: bigEndian}, tpmext.DefaultBanks()...)
	rng := rand.New(rand.NewPCG(7, uint64(flav)))
	cycles := 12
	if testing.Short() {
		cycles = 6
	}
	kexecAt := map[int]bool{2: true, cycles - 3: true}

	var (
		kexecNow bool // the current cycle kexecs at StepSealed
		next     *ima.Kernel
		started  int           // measurements when the cycle staged (read under r.mu)
		staged   chan struct{} // closed at StepStaged: the goroutines go on
		during   int           // measurements that landed between A and D, over all cycles
	)
	opts := r.options(flav)
	if cover {
		opts.Cover = func(committed int, records [][]byte) (int, error) {
			return 1 + rng.IntN(len(records)), nil
		}
	}
	opts.Hook = func(s Step) error {
		switch s {
		case StepStaged:
			r.quiesce(func() { started = r.measurements })
			close(staged)
		case StepRead:
			// Hold the cycle until the measuring goroutines have added
			// records after A: they land in the current list while the
			// staged one is being saved.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var n int
				r.quiesce(func() { n = r.measurements - started })
				if n >= 5 {
					during += n
					break
				}
				if time.Now().After(deadline) {
					return errors.New("no measurement arrived during the cycle")
				}
				time.Sleep(100 * time.Microsecond)
			}
		case StepSealed:
			if kexecNow {
				next = r.kexec()
			}
		}
		return nil
	}
	c, err := Open(t.TempDir(), r.fs(), opts)
	require.NoError(t, err)
	defer c.Close()

	// A reader serves the log all along, between and after cycles: every
	// answer must be a prefix of the final log (no hole, no duplicate at
	// any moment).
	type snapshot struct {
		n      int
		digest [32]byte
	}
	var snaps []snapshot
	serving := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		defer close(served)
		for {
			select {
			case <-serving:
				return
			default:
			}
			recs, err := c.Records(0)
			if err != nil {
				served <- err
				return
			}
			b := bytes.Join(recs, nil)
			snaps = append(snaps, snapshot{len(b), sha256.Sum256(b)})
			time.Sleep(time.Millisecond)
		}
	}()

	r.measure(20)
	r.violation()
	for i := range cycles {
		r.measure(1) // the list is never empty when the cycle reads it
		stop := make(chan struct{})
		staged = make(chan struct{})
		var wg sync.WaitGroup
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Up to 40 records each, a few before the cycle
				// stages and the rest after, spread over the cycle.
				for j := 0; j < 40; j++ {
					if j == 3 {
						select {
						case <-staged:
						case <-stop:
							return
						}
					}
					select {
					case <-stop:
						return
					default:
					}
					if j%8 == 7 {
						time.Sleep(50 * time.Microsecond)
					}
					if (j+g)%9 == 4 {
						r.violation()
					} else {
						r.measure(1)
					}
				}
			}()
		}
		kexecNow = kexecAt[i]
		res, err := c.Cycle()
		close(stop)
		wg.Wait()
		if kexecNow {
			require.ErrorIs(t, err, ErrStale, "cycle %d", i)
			require.Zero(t, res.Saved)
			require.NoError(t, c.SwitchKernel(next.FS(staging.Root(collectorTID)), next.BootID(), Kexec))
		} else {
			require.NoError(t, err, "cycle %d", i)
			require.Greater(t, res.Saved, 0, "cycle %d", i)
		}
		r.check(c, fmt.Sprintf("after cycle %d", i))
	}
	r.measure(10)
	close(serving)
	require.NoError(t, <-served)

	recs, err := c.Records(0)
	require.NoError(t, err)
	log := bytes.Join(recs, nil)
	require.Equal(t, r.want(), log)
	for i, s := range snaps {
		require.LessOrEqual(t, s.n, len(log))
		require.Equal(t, sha256.Sum256(log[:s.n]), s.digest, "answer %d of the concurrent reader (%d bytes) is not a prefix of the log", i, s.n)
	}
	require.NotEmpty(t, snaps)
	verifyPCR10(t, r.layout(), r.tpm, recs)
	r.checkOnce(log)
	t.Logf("%d records in the log, %d committed to the store, %d measured during cycles, %d answers of the concurrent reader checked", len(recs), c.Committed(), during, len(snaps))
	require.Greater(t, c.Committed(), 0)
	if !cover {
		require.Greater(t, c.Committed(), len(recs)/2, "staging deleted most of the log from the kernel")
		require.Less(t, int(r.kernel().Queue().NumRecords(measlist.Binary)), len(recs)/2)
	}

	// Every bank's binary and ASCII list, from record 0 and from the
	// middle, as the unstaged kernel shows them.
	k := r.kernel()
	refFS := r.ref.FS(staging.Root(1))
	for _, lf := range k.Layout().ListFiles() {
		for _, format := range []Format{Binary, ASCII} {
			name := staging.BinaryRuntimeMeasurements + "_" + lf.Suffix
			if format == ASCII {
				name = staging.ASCIIRuntimeMeasurements + "_" + lf.Suffix
			}
			want, err := staging.ReadFile(refFS, name)
			require.NoError(t, err)
			var buf bytes.Buffer
			n, err := c.WriteLog(&buf, 0, format, lf.Slot)
			require.NoError(t, err)
			require.Equal(t, len(recs), n)
			require.True(t, bytes.Equal(want, buf.Bytes()), "%s differs", name)

			// From record `from`: the tail of the same file.
			from := len(recs)/2 + 1
			buf.Reset()
			n, err = c.WriteLog(&buf, from, format, lf.Slot)
			require.NoError(t, err)
			require.Equal(t, len(recs)-from, n)
			require.True(t, bytes.HasSuffix(want, buf.Bytes()), "%s from %d is not its tail", name, from)
		}
	}
	tail, err := c.Records(len(recs) - 3)
	require.NoError(t, err)
	require.Equal(t, recs[len(recs)-3:], tail)
	past, err := c.Records(len(recs) + 5)
	require.NoError(t, err)
	require.Empty(t, past)
	_, err = c.Records(-1)
	require.Error(t, err)
	_, err = c.WriteLog(io.Discard, 0, Binary, k.Layout().NumSlots())
	require.Error(t, err)
}
