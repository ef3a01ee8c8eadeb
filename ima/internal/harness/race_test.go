package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
	"golang.org/x/sync/errgroup"
)

// TestRaceStress runs, for a fixed time, every kind of actor against one
// kernel at once, with and without ima_flush_htable:
//
//   - adders: file measurements (each adder its own paths, some measured
//     again to meet the hash table) and violations;
//   - prompt collectors, each on its own store (one collector per store);
//   - without flush, a DeleteN collector, and N-deleters: tasks running
//     open O_RDWR, read to EOF, write "N\n", close (with flush N is EINVAL,
//     and they only contend);
//   - readers of every list file (original and staged, binary and ASCII,
//     every bank) and of the counter files, with random buffer sizes;
//   - would-be writers, tasks opening list files for write, sometimes
//     several as the same task, while a writer may hold the lock;
//   - a watcher of the counters.
//
// Checked while it runs: every open answers success or EBUSY; what a
// reader reads in one open..EOF pass decodes cleanly (no torn record; the
// queue itself panics if a reader reaches a released record); counters
// never go negative and BINARY_FULL never decreases. Checked at the end:
// what every deleter deleted, in the order of deletion, ++ staged ++
// current holds every record each adder added, in each adder's order,
// once, and nothing else but boot_aggregate; and it replays to every PCR of
// every bank.
func TestRaceStress(t *testing.T) {
	budget := 5 * time.Second
	if testing.Short() {
		budget = time.Second
	}
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			raceStress(t, flush, budget/2)
		})
	}
}

// stressCounts are per-role operation counts.
type stressCounts struct {
	adds, addDups, violations                   atomic.Int64
	cycles, cyclesSaved, cycleBusy, savedByColl atomic.Int64
	nTx, nOK, nEINVAL, nBusy, savedByN          atomic.Int64
	reads, readBytes, readBusy, counterReads    atomic.Int64
	writeOpens, writeOpenOK, writeOpenBusy      atomic.Int64
	extraOpens                                  atomic.Int64
	watches                                     atomic.Int64
}

func (c *stressCounts) String() string {
	return fmt.Sprintf("adders: %d added, %d duplicates refused, %d violations; "+
		"collectors: %d cycles, %d saved a batch, %d busy, %d records saved; "+
		"N-deleters: %d transactions, %d deleted (%d records), %d EINVAL, %d busy; "+
		"readers: %d passes to EOF (%d bytes), %d busy, %d counter reads; "+
		"would-be writers: %d write opens, %d got the lock (%d more files as the same task), %d busy; "+
		"watcher: %d checks",
		c.adds.Load(), c.addDups.Load(), c.violations.Load(),
		c.cycles.Load(), c.cyclesSaved.Load(), c.cycleBusy.Load(), c.savedByColl.Load(),
		c.nTx.Load(), c.nOK.Load(), c.savedByN.Load(), c.nEINVAL.Load(), c.nBusy.Load(),
		c.reads.Load(), c.readBytes.Load(), c.readBusy.Load(), c.counterReads.Load(),
		c.writeOpens.Load(), c.writeOpenOK.Load(), c.extraOpens.Load(), c.writeOpenBusy.Load(),
		c.watches.Load())
}

// deletion is one batch deleted from the kernel, numbered in deletion
// order (taken while the deleter still held the writer lock).
type deletion struct {
	seq     int64
	records [][]byte // binary records, SHA-1 column
}

// stressCollector is a collector and the batches it saved.
type stressCollector struct {
	c       *collector.Collector
	flavour collector.Flavour
	seqs    []int64 // deletion numbers of its saved batches, in order
	sizes   []int   // their sizes
	lastSeq int64   // set by the StepDeleted hook
}

func raceStress(t *testing.T, flush bool, budget time.Duration) {
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	tpm, err := tpmext.NewSoftware(banks...)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, FlushHtable: flush})
	if err != nil {
		t.Fatal(err)
	}
	layout := k.Layout()
	sfs := k.SecurityFS()
	var (
		counts  stressCounts
		seq     atomic.Int64 // deletion numbers
		mu      sync.Mutex   // protects raw
		raw     []deletion   // batches the N-deleters deleted
		added   = make([][]string, 2)
		listDir []staging.DirEntry
	)
	for _, e := range sfs.ReadDir() {
		if e.Mode&os.ModeSymlink == 0 {
			listDir = append(listDir, e)
		}
	}

	base := storeDir(t)
	var colls []*stressCollector
	flavours := []collector.Flavour{collector.Prompt, collector.Prompt}
	if !flush {
		flavours = append(flavours, collector.DeleteN)
	}
	for i, fl := range flavours {
		sc := &stressCollector{flavour: fl}
		sc.c, err = collector.Open(filepath.Join(base, fmt.Sprint(i)), k.FS(staging.Root(100+i)), collector.Options{
			Flavour: fl, BootID: k.BootID(), Layout: layout, Retries: 3, Backoff: 50 * time.Microsecond,
			Hook: func(s collector.Step) error {
				if s == collector.StepDeleted {
					sc.lastSeq = seq.Add(1) // the collector still holds the writer lock
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.c.Close()
		colls = append(colls, sc)
	}

	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	running := func() bool { return ctx.Err() == nil }

	// Adders.
	for i := range added {
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			type meas struct{ path, content string }
			var mine []meas
			q := k.Queue()
			for n := 0; running(); n++ {
				// Keep the lists short enough that readers and deleters
				// get turns: wait while the current list is long.
				for q.NumRecords(measlist.Binary) > 400 && running() {
					time.Sleep(100 * time.Microsecond)
				}
				switch c := r.IntN(20); {
				case c < 2:
					p := fmt.Sprintf("/v%d/%d", i, n)
					if err := k.Violation(p, nil, ima.CauseToMToU); err != nil {
						return fmt.Errorf("adder %d: violation: %w", i, err)
					}
					added[i] = append(added[i], p)
					counts.violations.Add(1)
				default:
					m := meas{fmt.Sprintf("/a%d/%d", i, n), strconv.Itoa(r.IntN(4))}
					if c < 5 && len(mine) > 0 {
						m = mine[r.IntN(len(mine))] // measured again
					}
					var pcr ima.RulePCR
					if r.IntN(8) == 0 {
						pcr = ima.PCR(11)
					}
					f := ima.NewFile(m.path, []byte(m.content+m.path))
					f.PCR = pcr
					err := k.Measure(f)
					switch {
					case err == nil:
						added[i] = append(added[i], m.path)
						mine = append(mine, m)
						counts.adds.Add(1)
					case errors.Is(err, syscall.EEXIST):
						counts.addDups.Add(1)
					default:
						return fmt.Errorf("adder %d: measure: %w", i, err)
					}
				}
			}
			return nil
		})
	}

	// Collectors.
	for i, sc := range colls {
		g.Go(func() error {
			for running() {
				before := sc.c.Committed()
				res, err := sc.c.Cycle()
				counts.cycles.Add(1)
				switch {
				case errors.Is(err, collector.ErrBusy):
					counts.cycleBusy.Add(1)
				case err != nil:
					return fmt.Errorf("collector %d (%v): %w", i, sc.flavour, err)
				case res.Saved > 0:
					if got := sc.c.Committed(); got != before+res.Saved {
						return fmt.Errorf("collector %d: committed %d after saving %d onto %d", i, got, res.Saved, before)
					}
					sc.seqs = append(sc.seqs, sc.lastSeq)
					sc.sizes = append(sc.sizes, res.Saved)
					counts.cyclesSaved.Add(1)
					counts.savedByColl.Add(int64(res.Saved))
				}
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			}
			return nil
		})
	}

	// N-deleters: read the current list and delete what was read (or a
	// prefix of it), in one O_RDWR transaction.
	for i := range 2 {
		task := staging.Root(200 + i)
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(i), 2))
			for running() {
				counts.nTx.Add(1)
				f, err := sfs.Open(task, staging.BinaryRuntimeMeasurements, os.O_RDWR)
				if errors.Is(err, syscall.EBUSY) {
					counts.nBusy.Add(1)
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
					continue
				}
				if err != nil {
					return fmt.Errorf("N-deleter %d: open: %w", i, err)
				}
				data, err := readAll(f, r)
				if err != nil {
					f.Close()
					return fmt.Errorf("N-deleter %d: read: %w", i, err)
				}
				recs, err := splitRecords(data, 20)
				if err != nil {
					f.Close()
					return fmt.Errorf("N-deleter %d: torn read: %w", i, err)
				}
				if n := len(recs); n > 0 {
					if r.IntN(3) == 0 {
						n = 1 + r.IntN(n)
					}
					_, err := f.Write([]byte(fmt.Sprintf("%d\n", n)))
					switch {
					case err == nil:
						mu.Lock()
						raw = append(raw, deletion{seq: seq.Add(1), records: recs[:n]})
						mu.Unlock()
						counts.nOK.Add(1)
						counts.savedByN.Add(int64(n))
					case flush && errors.Is(err, syscall.EINVAL):
						counts.nEINVAL.Add(1)
					default:
						f.Close()
						return fmt.Errorf("N-deleter %d: N=%d of %d: %w", i, n, len(recs), err)
					}
				}
				if err := f.Close(); err != nil {
					return err
				}
				time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
			}
			return nil
		})
	}

	// Readers.
	for i := range 3 {
		task := staging.Root(300 + i)
		if i == 2 {
			task = staging.Task{TID: 300 + i, UID: 1000, GID: 1000, Groups: []uint32{0}}
		}
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(i), 3))
			for running() {
				e := listDir[r.IntN(len(listDir))]
				f, err := sfs.Open(task, e.Name, os.O_RDONLY)
				if errors.Is(err, syscall.EBUSY) {
					counts.readBusy.Add(1)
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
					continue
				}
				if err != nil {
					return fmt.Errorf("reader %d: open %s: %w", i, e.Name, err)
				}
				var data []byte
				if strings.Contains(e.Name, "_runtime_") {
					data, err = readAll(f, r)
				} else {
					// A counter is rendered anew at every read(), so only
					// one read from offset 0 shows one value.
					buf := make([]byte, 64)
					var n int
					n, err = f.Read(buf)
					data = buf[:n]
				}
				f.Close()
				if err != nil {
					return fmt.Errorf("reader %d: %s: %w", i, e.Name, err)
				}
				if err := checkRead(e.Name, data, layout); err != nil {
					return fmt.Errorf("reader %d: %s: %w", i, e.Name, err)
				}
				if strings.Contains(e.Name, "_runtime_") {
					counts.reads.Add(1)
					counts.readBytes.Add(int64(len(data)))
					time.Sleep(time.Duration(r.IntN(1000)) * time.Microsecond)
				} else {
					counts.counterReads.Add(1)
				}
			}
			return nil
		})
	}

	// Would-be writers.
	var lists []string
	for _, e := range listDir {
		if strings.Contains(e.Name, "_runtime_") {
			lists = append(lists, e.Name)
		}
	}
	for i := range 2 {
		task := staging.Root(400 + i)
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(i), 4))
			for running() {
				flag := []int{os.O_WRONLY, os.O_RDWR}[r.IntN(2)]
				counts.writeOpens.Add(1)
				f, err := sfs.Open(task, lists[r.IntN(len(lists))], flag)
				if errors.Is(err, syscall.EBUSY) {
					counts.writeOpenBusy.Add(1)
					time.Sleep(time.Duration(r.IntN(100)) * time.Microsecond)
					continue
				}
				if err != nil {
					return fmt.Errorf("writer %d: open: %w", i, err)
				}
				counts.writeOpenOK.Add(1)
				files := []*staging.SimFile{f}
				for r.IntN(2) == 0 { // the same writer may open more files
					f2, err := sfs.Open(task, lists[r.IntN(len(lists))], os.O_RDWR)
					if err != nil {
						return fmt.Errorf("writer %d: the writer's second open: %w", i, err)
					}
					files = append(files, f2)
					counts.extraOpens.Add(1)
				}
				// A request that changes nothing.
				if _, err := f.Write([]byte("0\n")); !errors.Is(err, syscall.EINVAL) {
					return fmt.Errorf("writer %d: writing 0: %v", i, err)
				}
				for _, f := range files {
					if err := f.Close(); err != nil {
						return err
					}
				}
				time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
			}
			return nil
		})
	}

	// The counter watcher.
	g.Go(func() error {
		q := k.Queue()
		var lastFull int64
		for running() {
			counts.watches.Add(1)
			b, s, full, v := q.NumRecords(measlist.Binary), q.NumRecords(measlist.BinaryStaged), q.NumRecords(measlist.BinaryFull), q.NumViolations()
			if b < 0 || s < 0 || full < 0 || v < 0 {
				return fmt.Errorf("watcher: a counter is negative: BINARY %d, BINARY_STAGED %d, BINARY_FULL %d, violations %d", b, s, full, v)
			}
			if full < lastFull {
				return fmt.Errorf("watcher: BINARY_FULL went from %d to %d", lastFull, full)
			}
			lastFull = full
			time.Sleep(20 * time.Microsecond)
		}
		return nil
	})

	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	// The end: gather every deleted batch in deletion order.
	all := append([]deletion(nil), raw...)
	for i, sc := range colls {
		recs, err := sc.c.Records(0)
		if err != nil {
			t.Fatalf("collector %d: Records: %v", i, err)
		}
		store := recs[:sc.c.Committed()]
		off := 0
		for j, n := range sc.sizes {
			all = append(all, deletion{seq: sc.seqs[j], records: store[off : off+n]})
			off += n
		}
		if off != len(store) {
			t.Fatalf("collector %d: its store holds %d records, its batches %d", i, len(store), off)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	var log [][]byte
	for _, d := range all {
		log = append(log, d.records...)
	}
	deleted := len(log)
	for _, name := range []string{staging.BinaryRuntimeMeasurementsStaged, staging.BinaryRuntimeMeasurements} {
		data, err := staging.ReadFile(k.FS(staging.Root(1)), name)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := splitRecords(data, 20)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, recs...)
	}
	if err := checkConservation(log, added); err != nil {
		t.Fatal(err)
	}
	if err := checkStressReplay(log, tpm, layout); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: %d records since boot, %d deleted in %d batches; %s", budget, len(log), deleted, len(all), &counts)
}

// readAll reads f to EOF with random buffer sizes.
func readAll(f *staging.SimFile, r *rand.Rand) ([]byte, error) {
	var data []byte
	for {
		buf := make([]byte, 1+r.IntN(8192))
		n, err := f.Read(buf)
		data = append(data, buf[:n]...)
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return data, err
		}
	}
}

// splitRecords decodes a binary list with digests of size bytes into its
// records, failing on any torn or malformed record.
func splitRecords(data []byte, size int) ([][]byte, error) {
	return template.Split(data, template.DecodeOptions{DigestSize: size})
}

// checkRead checks one open..EOF pass of a file: binary lists decode
// cleanly, ASCII lists are whole lines of the right shape, counters are
// non-negative numbers.
func checkRead(name string, data []byte, l *template.Layout) error {
	size := 20
	if strings.Contains(name, "sha256") {
		size = 32
	}
	switch {
	case strings.HasPrefix(name, "binary_"):
		_, err := splitRecords(data, size)
		return err
	case strings.HasPrefix(name, "ascii_"):
		if len(data) > 0 && data[len(data)-1] != '\n' {
			return fmt.Errorf("a torn line at the end: %q", data[max(0, len(data)-80):])
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if line == "" {
				if len(data) == 0 {
					break
				}
				return errors.New("an empty line")
			}
			f := strings.Fields(line)
			if len(f) < 4 || len(f[1]) != 2*size || (f[2] != "ima-ng" && f[2] != "ima-buf") {
				return fmt.Errorf("a malformed line %q", line)
			}
			for _, c := range f[1] {
				if !strings.ContainsRune("0123456789abcdef", c) {
					return fmt.Errorf("a malformed digest in %q", line)
				}
			}
		}
		return nil
	default:
		v, err := strconv.ParseInt(strings.TrimSuffix(string(data), "\n"), 10, 64)
		if err != nil || v < 0 || !bytes.HasSuffix(data, []byte("\n")) {
			return fmt.Errorf("counter %q", data)
		}
		return nil
	}
}

// eventName returns the n-ng field of a binary record (SHA-1 column).
func eventName(rec []byte) (string, error) {
	es, err := template.DecodeAll(rec, template.DecodeOptions{DigestSize: 20})
	if err != nil || len(es) != 1 {
		return "", fmt.Errorf("decoding %q: %v", rec, err)
	}
	return strings.TrimRight(string(es[0].Fields[1]), "\x00"), nil
}

// checkConservation checks that log holds boot_aggregate first, then every
// adder's records in that adder's order, each once, and nothing else.
func checkConservation(log [][]byte, added [][]string) error {
	got := make([][]string, len(added))
	for i, rec := range log {
		name, err := eventName(rec)
		if err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if i == 0 {
			if name != template.BootAggregateName {
				return fmt.Errorf("record 0 is %q, not boot_aggregate", name)
			}
			continue
		}
		var a int
		if _, err := fmt.Sscanf(name[2:], "%d/", &a); err != nil || a < 0 || a >= len(added) {
			return fmt.Errorf("record %d: unexpected %q", i, name)
		}
		got[a] = append(got[a], name)
	}
	for a := range added {
		if len(got[a]) != len(added[a]) {
			return fmt.Errorf("adder %d added %d records, %d were found (deleted ++ staged ++ current)", a, len(added[a]), len(got[a]))
		}
		for j := range got[a] {
			if got[a][j] != added[a][j] {
				return fmt.Errorf("adder %d: record %d is %q, want %q", a, j, got[a][j], added[a][j])
			}
		}
	}
	return nil
}

// checkStressReplay replays log onto reset PCRs in every bank and compares
// every PCR with the TPM.
func checkStressReplay(log [][]byte, tpm *tpmext.Software, l *template.Layout) error {
	pcrs, err := tpm.ReadPCRs()
	if err != nil {
		return err
	}
	for _, b := range l.Banks() {
		want := make([][]byte, tpmext.NumPCRs)
		for i := range want {
			want[i] = tpmext.InitialPCRValue(i, b)
		}
		for _, rec := range log {
			es, err := template.DecodeAll(rec, template.DecodeOptions{DigestSize: 20})
			if err != nil {
				return err
			}
			e := es[0]
			d := bytes.Repeat([]byte{0xff}, b.Size())
			if !bytes.Equal(e.Digests[0].Value, make([]byte, 20)) {
				if d, err = e.TemplateDigest(template.HashAlgoFromTPM(b), l.Order()); err != nil {
					return err
				}
			}
			want[e.PCR] = tpmext.ExtendValue(b, want[e.PCR], d)
		}
		for i := range want {
			if !bytes.Equal(want[i], pcrs[b][i]) {
				return fmt.Errorf("replaying %d records: PCR %d of bank %s is %x, the TPM has %x", len(log), i, b, want[i], pcrs[b][i])
			}
		}
	}
	return nil
}
