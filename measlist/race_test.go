package measlist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestConcurrentAddStageDeleteRead runs adders, stagers (A then D),
// N-deleters and readers at once for a fixed time, then checks that what
// was deleted ++ staged ++ current is every record added, none lost or
// duplicated, each adder's records in its own order; that the counters and
// sizes agree with the lists; and that the PCRs are the replay of that
// log, which is the order the queue appended and extended in. Run it with
// -race: the readers touch every field of every record they see while the
// deleters release records.
func TestConcurrentAddStageDeleteRead(t *testing.T) {
	budget := 1200 * time.Millisecond
	if testing.Short() {
		budget = 250 * time.Millisecond
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"noflush", Config{Kexec: true}},
		{"flush", Config{Kexec: true, FlushHtable: true}},
		{"nohtable", Config{Kexec: true, HtableDisabled: true}},
	} {
		t.Run(c.name, func(t *testing.T) { raceRun(t, c.cfg, budget) })
	}
}

// captured is a record as a deleter saw it before deleting it.
type captured struct {
	e    *template.Entry
	path string
	byN  bool // deleted by N rather than D
	live int  // its kernel footprint (measlisttest.Footprint) while listed
}

func capture(e *template.Entry) captured {
	live, _ := measlisttest.Footprint(e, len(e.Digests))
	return captured{e: e, path: string(bytes.TrimRight(e.Fields[1], "\x00")), live: live}
}

func raceRun(t *testing.T, cfg Config, budget time.Duration) {
	f := newFixture(t, cfg)
	l := f.l
	const adders, stagers, partials, readers = 3, 2, 2, 2

	// writeMu is the securityfs one-writer rule: a stager's A, its read of
	// the staged list and its D, or a deleter's read and its N, are one
	// transaction.
	var writeMu sync.Mutex
	var deleted []captured // protected by writeMu
	var stats struct {
		sync.Mutex
		stages, partials, partialRecords, reads, readRecords int
	}
	addedBy := make([][]*template.Entry, adders) // each adder's own, in its order
	addedSize := make([]uint64, adders)
	addedMem := make([]int64, adders) // kernel footprints, taken before Add

	stop := time.Now().Add(budget)
	running := func() bool { return time.Now().Before(stop) }
	g, _ := errgroup.WithContext(context.Background())
	for a := range adders {
		g.Go(func() error {
			for seq := 0; running(); seq++ {
				var e *template.Entry
				if a == 0 && seq%7 == 6 {
					e = f.violation(fmt.Sprintf("/race/a%d/%06d", a, seq))
				} else {
					e = fileEntry(t, l, fmt.Sprintf("/race/a%d/%06d", a, seq), fmt.Sprint(seq), 10)
				}
				size := uint64(e.BinaryRuntimeSize()) // a deleter may free it once added
				live, _ := measlisttest.Footprint(e, l.NumSlots())
				if err := f.q.Add(e); err != nil {
					return fmt.Errorf("adder %d record %d: %w", a, seq, err)
				}
				addedBy[a] = append(addedBy[a], e)
				addedSize[a] += size
				addedMem[a] += int64(live)
				if seq%8 == 0 {
					runtime.Gosched() // 2 cores: let the writers in
				}
			}
			return nil
		})
	}
	for s := range stagers {
		g.Go(func() error {
			for running() {
				if err := func() error {
					writeMu.Lock()
					defer writeMu.Unlock()
					if err := f.q.Stage(); errors.Is(err, syscall.ENOENT) {
						return nil
					} else if err != nil {
						return fmt.Errorf("stager %d: A: %w", s, err)
					}
					var got []captured
					f.q.Walk(Staged, 0, func(_ int, e *template.Entry) bool {
						got = append(got, capture(e))
						return true
					})
					n, err := f.q.DeleteStaged()
					if err != nil || n != len(got) {
						return fmt.Errorf("stager %d: D deleted %d records (%v), the staged list had %d", s, n, err, len(got))
					}
					deleted = append(deleted, got...)
					stats.Lock()
					stats.stages++
					stats.Unlock()
					return nil
				}(); err != nil {
					return err
				}
				time.Sleep(300 * time.Microsecond) // let the lists grow between writers
			}
			return nil
		})
	}
	for p := range partials {
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(p), 7))
			for running() {
				if err := func() error {
					writeMu.Lock()
					defer writeMu.Unlock()
					// Only appends can happen between this walk and the
					// cut, so the first records seen are the ones N
					// removes.
					want := 1 + r.IntN(40)
					var got []captured
					f.q.Walk(Current, 0, func(i int, e *template.Entry) bool {
						got = append(got, capture(e))
						return len(got) < want
					})
					if len(got) == 0 {
						return nil
					}
					n := 1 + r.IntN(len(got))
					if err := f.q.DeletePartial(uint64(n)); err != nil {
						return fmt.Errorf("deleter %d: N %d: %w", p, n, err)
					}
					for i := range got[:n] {
						got[i].byN = true
					}
					deleted = append(deleted, got[:n]...)
					stats.Lock()
					stats.partials++
					stats.partialRecords += n
					stats.Unlock()
					return nil
				}(); err != nil {
					return err
				}
				time.Sleep(300 * time.Microsecond) // let the lists grow between writers
			}
			return nil
		})
	}
	for rd := range readers {
		g.Go(func() error {
			var c Cursor
			pos := map[Head]int{}
			for running() {
				for _, h := range []Head{Current, Staged} {
					// Read in chunks like seq_file, resuming with a cursor;
					// start over at the end of the list.
					var err error
					n := 0
					next := f.q.WalkAt(h, pos[h], &c, func(i int, e *template.Entry) bool {
						if i != pos[h]+n {
							err = fmt.Errorf("position %d after %d from %d", i, n, pos[h])
						} else {
							err = checkIntact(l, e)
						}
						n++
						return err == nil && n < 64
					})
					if err != nil {
						return fmt.Errorf("reader %d, %v list at %d: %w", rd, h, pos[h]+n-1, err)
					}
					if n < 64 {
						next = 0
					}
					pos[h] = next
					runtime.Gosched()
					stats.Lock()
					stats.reads++
					stats.readRecords += n
					stats.Unlock()
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	require.Zero(t, f.q.RCU().Readers(), "every read-side section ended")

	// The whole log: deleted ++ staged ++ current.
	staged, current := f.q.Entries(Staged), f.q.Entries(Current)
	log := append([]captured(nil), deleted...)
	for _, e := range append(append([]*template.Entry(nil), staged...), current...) {
		log = append(log, capture(e))
	}
	total := 0
	owner := map[*template.Entry]int{}
	for a, es := range addedBy {
		total += len(es)
		for _, e := range es {
			owner[e] = a
		}
	}
	require.Len(t, log, total, "deleted ++ staged ++ current against every record added")
	seen := map[*template.Entry]bool{}
	perAdder := make([][]*template.Entry, adders)
	history := make([]*template.Entry, len(log))
	for i, c := range log {
		a, ok := owner[c.e]
		require.True(t, ok, "record %d (%s) was never added", i, c.path)
		require.False(t, seen[c.e], "record %d (%s) appears twice", i, c.path)
		seen[c.e] = true
		require.True(t, strings.HasPrefix(c.path, fmt.Sprintf("/race/a%d/", a)), "record %d: path %q", i, c.path)
		perAdder[a] = append(perAdder[a], c.e)
		history[i] = c.e
	}
	for a := range adders {
		requireSameEntries(t, fmt.Sprintf("adder %d's records in the log", a), addedBy[a], perAdder[a])
	}

	// Counters and sizes agree with the lists.
	var full uint64
	for _, s := range addedSize {
		full += s
	}
	f.wantCounts(int64(len(current)), int64(len(staged)), int64(total))
	f.wantSizes(sizeOf(current...), sizeOf(staged...), KexecHeaderSize+full)
	for i := range deleted {
		requireFreed(t, deleted[i].e)
	}
	requireLive(t, staged...)
	requireLive(t, current...)
	if !cfg.HtableDisabled && !cfg.FlushHtable {
		require.Equal(t, total, f.q.HtableLen())
		for _, e := range history {
			require.True(t, f.inHtable(e))
		}
	}

	// The modelled kernel memory agrees with the lists and the deletions:
	// deleted records keep all but their field data unless a flushing D or
	// the absence of a hash table freed them whole.
	var lists, retained, ever int64 = 0, 0, measlisttest.HtableBytes
	for _, c := range log[len(deleted):] {
		lists += int64(c.live)
	}
	for _, c := range deleted {
		if !cfg.HtableDisabled && (c.byN || !cfg.FlushHtable) {
			_, kept := measlisttest.Footprint(c.e, l.NumSlots())
			retained += int64(kept)
		}
	}
	for _, m := range addedMem {
		ever += m
	}
	km := f.q.KernelMemory()
	require.Equal(t, [4]int64{lists, retained, 0, ever}, [4]int64{km.Lists, km.Retained, km.Lost, km.WithoutStaging},
		"kernel memory: lists, retained, lost, without staging")

	// The PCRs are the replay of the log in list order.
	f.history = history
	f.wantPCRs()
	n, _ := f.q.TPMErrors()
	require.Zero(t, n)

	t.Logf("%d records added, %d deleted (%d A+D, %d N removing %d); %d reads saw %d records",
		total, len(deleted), stats.stages, stats.partials, stats.partialRecords, stats.reads, stats.readRecords)
	require.Positive(t, stats.stages, "no A+D ran")
	require.Positive(t, stats.partials, "no N ran")
}

// checkIntact checks that a record a reader reached is whole: every field
// present, and its binary encoding decodes back to the same record.
func checkIntact(l *template.Layout, e *template.Entry) error {
	for j, fd := range e.Fields {
		if fd == nil {
			return fmt.Errorf("field %d released under a reader", j)
		}
	}
	if !strings.HasPrefix(string(e.Fields[1]), "/race/") {
		return fmt.Errorf("unexpected record %q", e.Fields[1])
	}
	b, err := e.AppendBinary(nil, l.HashIndex(), l.Order())
	if err != nil {
		return err
	}
	dec, err := template.DecodeAll(b, template.DecodeOptions{Order: l.Order(), DigestSize: 32})
	if err != nil {
		return err
	}
	if len(dec) != 1 || dec[0].PCR != e.PCR || dec[0].Desc.DisplayName() != e.Desc.DisplayName() ||
		!bytes.Equal(dec[0].Digests[0].Value, e.Digests[l.HashIndex()].Value) {
		return fmt.Errorf("record does not decode to itself")
	}
	for j := range e.Fields {
		if !bytes.Equal(dec[0].Fields[j], e.Fields[j]) {
			return fmt.Errorf("field %d does not decode to itself", j)
		}
	}
	return nil
}
