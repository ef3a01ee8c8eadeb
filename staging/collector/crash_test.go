package collector

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/stretchr/testify/require"
)

var crashSeed = flag.Uint64("crashseed", 0, "base seed of TestCrashRandom (0: the fixed default seeds)")

var debugHook = os.Getenv("DEBUGHOOK") != ""

// errInjected is what the crash hook returns.
var errInjected = errors.New("injected crash")

// crashPoint is where a crash is injected.
type crashPoint int

const (
	// A Step value: the hook stops the cycle there.
	// tearCommit: a cycle completes, then its last write (the commit
	// frame) is torn, as a crash between that write and its fsync leaves
	// it; the kernel had deleted the batch.
	tearCommit crashPoint = 100
)

// deadEvent is what happens to the kernel while the collector is down.
type deadEvent int

const (
	nothing deadEvent = iota
	kexecWhileDead
	rebootWhileDead
	kexecTwiceWhileDead // the store never sees the middle kernel
)

func (e deadEvent) String() string {
	return [...]string{"same-kernel", "kexec", "reboot", "kexec-twice"}[e]
}

// crash is one injected crash and what follows it.
type crash struct {
	at        crashPoint
	powerLoss bool // after StepWritten: tear the unsynced batch at random
	dead      deadEvent
	// during is how many records goroutines measure during the crashing
	// cycle.
	during int
}

func (c crash) String() string {
	s := "tear-commit"
	if c.at != tearCommit {
		s = stepName(Step(c.at))
	}
	if c.powerLoss {
		s += "+power-loss"
	}
	return s + "/" + c.dead.String()
}

func stepName(s Step) string {
	return [...]string{"StepStaged", "StepReadPartial", "StepRead", "StepWritten", "StepSealed", "StepDeleted"}[s]
}

var allSteps = []Step{StepStaged, StepReadPartial, StepRead, StepWritten, StepSealed, StepDeleted}

// harness runs one collector on a rig through crashes and restarts.
type harness struct {
	t     testing.TB
	r     *rig
	dir   string
	flav  Flavour
	cover func(int, [][]byte) (int, error)
	rng   *rand.Rand
	c     *Collector

	armed   bool
	crashAt Step
	// written is the store's state when the crash hit StepWritten.
	written struct {
		seg           int
		durable, size int64
	}
	tears int // power losses that cut bytes
}

func newHarness(t testing.TB, flav Flavour, seed uint64) *harness {
	h := &harness{t: t, r: newRig(t, ima.Config{}), dir: t.TempDir(), flav: flav, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	h.open(Unknown)
	return h
}

func (h *harness) hook(s Step) error {
	if debugHook {
		h.t.Logf("hook %s armed %v at %s", stepName(s), h.armed, stepName(h.crashAt))
	}
	if !h.armed || s != h.crashAt {
		return nil
	}
	h.armed = false
	if s == StepWritten {
		h.written.seg, h.written.durable, h.written.size = h.c.st.segN, h.c.st.durable, h.c.st.size
		require.Less(h.t, h.written.durable, h.written.size, "a written batch is not durable before StepSealed")
	}
	if s == StepSealed {
		require.Equal(h.t, h.c.st.size, h.c.st.durable, "a sealed batch is durable")
	}
	return errInjected
}

func (h *harness) open(kind BootKind) {
	h.t.Helper()
	opts := h.r.options(h.flav)
	opts.NewBoot, opts.Hook, opts.Cover = kind, h.hook, h.cover
	c, err := Open(h.dir, h.r.fs(), opts)
	require.NoError(h.t, err)
	h.c = c
}

// cycle runs a cycle that must succeed.
func (h *harness) cycle(msg string) {
	h.t.Helper()
	_, err := h.c.Cycle()
	require.NoError(h.t, err, msg)
	h.r.check(h.c, msg)
}

// run injects cr: a cycle (with measurements running) stopped at the
// crash point, the process's death (its files and its store lock
// released), perhaps a power loss, perhaps a kexec or reboot, and a
// restart on the same store.
func (h *harness) run(cr crash, msg string) {
	h.t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range cr.during {
			h.r.measure(1)
		}
	}()
	if cr.at == tearCommit {
		_, err := h.c.Cycle()
		wg.Wait()
		require.NoError(h.t, err, msg)
	} else {
		h.armed, h.crashAt = true, Step(cr.at)
		_, err := h.c.Cycle()
		wg.Wait()
		require.ErrorIs(h.t, err, ErrCrashed, msg)
		require.ErrorContains(h.t, err, errInjected.Error(), msg)
		require.False(h.t, h.armed, "%s: the crash step was not reached", msg)
	}
	// The process dies: the kernel released its securityfs file when the
	// cycle stopped; the store's lock goes with the process.
	lastSeg := h.c.st.segN
	require.NoError(h.t, h.c.Close())
	switch {
	case cr.at == tearCommit:
		// The commit frame is the last write; cut 1 to 9 of its bytes.
		seg := segmentPath(h.dir, segName(lastSeg))
		fi, err := os.Stat(seg)
		require.NoError(h.t, err)
		require.NoError(h.t, os.Truncate(seg, fi.Size()-1-h.rng.Int64N(frameHeader)))
		tearManifest(h.t, h.dir) // the crash came before the manifest write
	case cr.powerLoss:
		w := h.written
		cut := w.durable + h.rng.Int64N(w.size-w.durable+1)
		if cut < w.size {
			h.tears++
		}
		require.NoError(h.t, os.Truncate(segmentPath(h.dir, segName(w.seg)), cut))
	}
	var oldLog []byte
	kind := Unknown
	switch cr.dead {
	case kexecWhileDead:
		h.r.kexec()
		kind = Kexec
	case kexecTwiceWhileDead:
		h.r.kexec()
		h.r.measure(2)
		h.r.kexec()
		kind = Kexec
	case rebootWhileDead:
		oldLog = h.r.want()
		h.r.reboot()
		kind = Reboot
	}
	h.open(kind)
	h.r.check(h.c, msg+": after the restart")
	// Open decided any pending batch; the files, read independently,
	// hold what the collector serves from its store.
	require.Equal(h.t, batchNone, h.c.st.log.state, msg)
	require.Empty(h.t, h.c.st.log.unsealed, msg)
	logs := logRecords(h.t, h.dir)
	recs, err := h.c.Records(0)
	require.NoError(h.t, err)
	require.Equal(h.t, bytes.Join(logs[len(logs)-1], nil), bytes.Join(recs[:h.c.Committed()], nil), msg)
	require.Len(h.t, logs[len(logs)-1], h.c.Committed(), msg)
	if cr.dead == rebootWhileDead {
		// The old log's saved records stay in the store, as a prefix of
		// the list that kernel had; Records serves the new log.
		require.GreaterOrEqual(h.t, len(logs), 2, msg)
		saved := bytes.Join(logs[len(logs)-2], nil)
		require.True(h.t, bytes.HasPrefix(oldLog, saved), "%s: the old log's saved records are not a prefix of its list", msg)
		require.Len(h.t, logs[len(logs)-1], h.c.Committed(), msg)
	}
}

// TestCrashAtEveryStep injects each crash point once per flavour, with the
// kernel kept, kexec'd or rebooted while the collector is down, and checks
// after the restart and after more cycles that the served log equals the
// unstaged one: no record lost, none duplicated.
func TestCrashAtEveryStep(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		var crashes []crash
		for _, dead := range []deadEvent{nothing, kexecWhileDead, rebootWhileDead, kexecTwiceWhileDead} {
			for _, s := range allSteps {
				crashes = append(crashes, crash{at: crashPoint(s), dead: dead, during: 5})
			}
			crashes = append(crashes,
				crash{at: crashPoint(StepWritten), powerLoss: true, dead: dead, during: 5},
				crash{at: tearCommit, dead: dead, during: 5})
		}
		for i, cr := range crashes {
			t.Run(flav.String()+"/"+cr.String(), func(t *testing.T) {
				h := newHarness(t, flav, uint64(i))
				h.r.measure(30)
				h.r.violation()
				h.cycle("first cycle")
				h.r.measure(30)
				h.r.violation()
				h.run(cr, cr.String())
				h.r.measure(7)
				h.cycle("cycle after the restart")
				h.r.measure(3)
				h.cycle("second cycle after the restart")
				recs, err := h.c.Records(0)
				require.NoError(t, err)
				verifyPCR10(t, h.r.layout(), h.r.tpm, recs)
				h.r.checkOnce(bytes.Join(recs, nil))
				require.NoError(t, h.c.Close())
			})
		}
	}
}

// TestCrashRandom runs long seeded sequences of measurements, clean cycles
// and crashes at random points (with torn batches, kexecs and reboots
// while the collector is down, and crashes in a row), checking after
// every restart that the served log equals the unstaged one.
func TestCrashRandom(t *testing.T) {
	iters := 150
	if testing.Short() {
		iters = 15
	}
	for _, tc := range []struct {
		name  string
		flav  Flavour
		cover bool
		seed  uint64
	}{
		{"prompt", Prompt, false, 1},
		{"n", DeleteN, false, 2},
		{"n-cover", DeleteN, true, 3},
		{"prompt-2", Prompt, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := tc.seed
			if *crashSeed != 0 {
				seed = *crashSeed + tc.seed
			}
			t.Logf("seed %d (rerun with -crashseed=%d)", seed, seed-tc.seed)
			h := newHarness(t, tc.flav, seed)
			if tc.cover {
				h.cover = func(_ int, records [][]byte) (int, error) {
					if len(records) == 0 {
						return 0, nil
					}
					return 1 + h.rng.IntN(len(records)), nil
				}
			}
			counts := map[string]int{}
			rollovers := 0
			for it := range iters {
				h.r.measure(1 + h.rng.IntN(12))
				if h.rng.IntN(3) == 0 {
					h.r.violation()
				}
				if h.rng.IntN(4) == 0 {
					h.cycle(fmt.Sprintf("iteration %d: clean cycle", it))
				}
				if h.rng.IntN(8) == 0 {
					// Start a new segment, as the store does past
					// segmentLimit, so that crashes and tears also
					// hit fresh segments and recovery walks links.
					require.NoError(t, h.c.st.openSegment(h.c.st.segN+1))
					rollovers++
				}
				cr := crash{during: h.rng.IntN(8)}
				if p := h.rng.IntN(len(allSteps) + 1); p == len(allSteps) {
					cr.at = tearCommit
				} else {
					cr.at = crashPoint(allSteps[p])
				}
				cr.powerLoss = cr.at == crashPoint(StepWritten) && h.rng.IntN(3) != 0
				switch d := h.rng.IntN(20); {
				case d < 3:
					cr.dead = kexecWhileDead
				case d < 4:
					cr.dead = kexecTwiceWhileDead
				case d < 6:
					cr.dead = rebootWhileDead
				}
				counts[cr.String()]++
				msg := fmt.Sprintf("seed %d iteration %d (%v)", seed, it, cr)
				h.r.measure(1) // something to stage, whatever the clean cycle took
				h.run(cr, msg)
				if h.rng.IntN(2) == 0 {
					h.r.measure(h.rng.IntN(5))
					h.cycle(msg + ": cycle after the restart")
				}
				if it%25 == 24 {
					recs, err := h.c.Records(0)
					require.NoError(t, err)
					verifyPCR10(t, h.r.layout(), h.r.tpm, recs)
				}
			}
			h.r.measure(3)
			h.cycle("last cycle")
			recs, err := h.c.Records(0)
			require.NoError(t, err)
			verifyPCR10(t, h.r.layout(), h.r.tpm, recs)
			h.r.checkOnce(bytes.Join(recs, nil))
			require.NoError(t, h.c.Close())
			t.Logf("%d crash/restart iterations, %d torn batches, %d segments, %d records in the last log; crash points: %v", iters, h.tears, rollovers+1, len(recs), counts)
		})
	}
}
