package ima

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// The end-to-end tests run both flavours on the TPM simulator back end
// while measurements go on, and check the property the documentation asks
// user space to keep: everything saved ++ staged ++ current is the log a
// never-staged kernel would have, and it replays to PCR 10 of every bank.
// Only one simulator can be open per process, so these tests do not run in
// parallel.

// newSimulator returns a fresh simulated TPM with SHA-1 and SHA-256 banks,
// closed at the end of the test, or skips without cgo.
func newSimulator(t *testing.T) *tpmext.Simulator {
	t.Helper()
	if !tpmext.SimulatorAvailable {
		t.Skip("the TPM simulator back end needs cgo")
	}
	sim, err := tpmext.NewSimulator(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// e2eConfig is the kernel both end-to-end tests boot: staging, kexec,
// critical data, ima_hash=sha256.
func e2eConfig(tpm tpmext.TPM) Config {
	return Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, CriticalData: true, Firmware: (&firmware{}).run}
}

// measurers runs n goroutines, each measuring its own series of files,
// until stop is called, at least min and at most max files each. It records
// what was measured.
type measurers struct {
	g        errgroup.Group
	done     chan struct{}
	n        atomic.Int64 // measurements made so far
	failed   atomic.Bool  // a measurer stopped on an error (reported by stop)
	mu       sync.Mutex
	measured map[string]File // path -> file; protected by mu
}

// await waits until at least n measurements were made, so that every cycle
// of a test overlaps with measurements.
func (m *measurers) await(n int64) {
	for m.n.Load() < n && !m.failed.Load() {
		time.Sleep(50 * time.Microsecond)
	}
}

func startMeasurers(k *Kernel, n, min, max int) *measurers {
	m := &measurers{measured: map[string]File{}, done: make(chan struct{})}
	for w := range n {
		series := fmt.Sprintf("m%d", w)
		m.g.Go(func() error {
			for i := 0; i < max; i++ {
				if i >= min {
					select {
					case <-m.done:
						return nil
					default:
					}
				}
				f := file(series, i)
				if err := k.Measure(f); err != nil {
					m.failed.Store(true)
					return fmt.Errorf("measure %s: %w", f.Path, err)
				}
				m.mu.Lock()
				m.measured[f.Path] = f
				m.mu.Unlock()
				m.n.Add(1)
			}
			return nil
		})
	}
	return m
}

// stop ends the measurements and returns what was measured.
func (m *measurers) stop(t *testing.T) map[string]File {
	close(m.done)
	require.NoError(t, m.g.Wait())
	return m.measured
}

// history collects, per bank, what user space saved.
type history map[tpmext.Algorithm][]byte

// script runs the commands of a scenario file in testdata as the root task
// tid would in a shell: "echo X > file" is staging.WriteFile (X "N" is the
// number of records the flavour's first cat returned), "cat file" is
// staging.ReadFile, whose output is saved: all of it for a _staged file,
// the first N records for an original one. It returns the first error of a
// command, which ends the script like `set -e`.
func script(t *testing.T, k *Kernel, tid int, path string, saved history) error {
	t.Helper()
	fsys := k.FS(staging.Root(tid))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	n := -1
	pending := history{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 4 && fields[0] == "echo" && fields[2] == ">":
			arg := fields[1]
			if arg == "N" {
				require.GreaterOrEqual(t, n, 0, "echo N before cat")
				if n == 0 {
					continue // nothing read, nothing to delete ("0" is EINVAL)
				}
				arg = fmt.Sprint(n)
			}
			if err := staging.WriteFile(fsys, fields[3], []byte(arg+"\n")); err != nil {
				return err
			}
			if fields[1] == "N" {
				for alg, b := range pending {
					saved[alg] = append(saved[alg], b...)
				}
			}
		case len(fields) == 2 && fields[0] == "cat":
			data, err := staging.ReadFile(fsys, fields[1])
			if err != nil {
				return err
			}
			alg := bankOf(t, k, fields[1])
			if strings.HasSuffix(fields[1], "_staged") {
				saved[alg] = append(saved[alg], data...)
				continue
			}
			es := decode(t, data, alg.Size())
			if n < 0 {
				n = len(es)
			}
			var b []byte
			for _, e := range es[:n] {
				b = append(b, raw(t, e)...)
			}
			pending[alg] = b
		default:
			t.Fatalf("%s: cannot run %q", path, line)
		}
	}
	require.NoError(t, sc.Err())
	return nil
}

// bankOf returns the bank whose column a binary list file shows.
func bankOf(t *testing.T, k *Kernel, name string) tpmext.Algorithm {
	name = strings.TrimSuffix(name, "_staged")
	if name == staging.BinaryRuntimeMeasurements {
		return tpmext.SHA1
	}
	for _, lf := range k.Layout().ListFiles() {
		if name == "binary_runtime_measurements_"+lf.Suffix {
			return k.Layout().Slot(lf.Slot).Bank
		}
	}
	t.Fatalf("%s is not a binary list file", name)
	return 0
}

// requireNeverStagedLog checks the end result: for each bank, saved ++
// staged ++ current equals, byte for byte, the list of a kernel booted on a
// second (software) TPM with the same configuration but no staging, given
// the same measurements in the same order; every measurement is there
// once; and the log replays to PCR 10 of every bank of the TPM, which
// equals the reference TPM's.
func requireNeverStagedLog(t *testing.T, k *Kernel, tpm tpmext.TPM, saved history, measured map[string]File) {
	t.Helper()
	hist := history{}
	for _, alg := range tpm.Banks() {
		hist[alg] = append(append(append([]byte(nil), saved[alg]...),
			read(t, k, bankFile(t, k, alg, true))...), read(t, k, bankFile(t, k, alg, false))...)
	}
	order := names(decode(t, hist[tpmext.SHA1], 20))
	require.Equal(t, []string{template.BootAggregateName, "kernel_version"}, order[:2])
	require.Len(t, order, 2+len(measured), "every measurement once")
	soft := newSoftware(t, tpm.Banks()...)
	refCfg := e2eConfig(soft)
	refCfg.Staging = false
	ref := mustNew(t, refCfg)
	for _, name := range order[2:] {
		f, ok := measured[name]
		require.True(t, ok, "%s was measured", name)
		require.NoError(t, ref.Measure(f))
	}
	for _, alg := range tpm.Banks() {
		require.Equal(t, read(t, ref, bankFile(t, ref, alg, false)), hist[alg], "bank %v: saved ++ staged ++ current", alg)
		require.Equal(t, pcr(t, soft, 10, alg), pcr(t, tpm, 10, alg), "bank %v: both TPMs agree", alg)
	}
	requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte { return hist[alg] })
}

// TestEndToEndShellSteps runs the documentation's shell steps of both
// flavours, alternately, while goroutines measure files, on the simulator.
func TestEndToEndShellSteps(t *testing.T) {
	sim := newSimulator(t)
	k := mustNew(t, e2eConfig(sim))
	cycles := 12
	if testing.Short() {
		cycles = 4
	}
	m := startMeasurers(k, 3, 5, 200)
	saved := history{}
	for c := range cycles {
		m.await(int64(6 * (c + 1)))
		path := "testdata/staging-with-prompt.txt"
		if c%2 == 1 {
			path = "testdata/staging-and-deleting.txt"
		}
		err := script(t, k, 1000, path, saved)
		if errors.Is(err, syscall.ENOENT) {
			continue // A with an empty current list, or N raced to 0 records: nothing to do
		}
		require.NoError(t, err, "cycle %d (%s)", c, path)
	}
	// End with records staged and not deleted, and more current ones.
	measured := m.stop(t)
	for i := range 2 {
		if i == 1 {
			require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
		}
		require.NoError(t, k.Measure(file("last", i)))
		measured[file("last", i).Path] = file("last", i)
	}
	t.Logf("%d cycles, %d measurements", cycles, len(measured))
	requireNeverStagedLog(t, k, sim, saved, measured)
}

// TestEndToEndTransaction runs each cycle as one transaction of one task
// holding the writer lock: A, read to EOF, D through one O_RDWR _staged
// descriptor (and the SHA-256 twin opened O_RDWR by the same task), or read
// and N through one O_RDWR original descriptor. While a transaction is open,
// other tasks trying to open any list file get EBUSY, and so does the
// writer opening O_RDONLY; between transactions, background readers come
// and go and the writer retries on EBUSY. Measurements go on throughout.
func TestEndToEndTransaction(t *testing.T) {
	sim := newSimulator(t)
	k := mustNew(t, e2eConfig(sim))
	sfs := k.SecurityFS()
	cycles := 12
	if testing.Short() {
		cycles = 4
	}
	m := startMeasurers(k, 3, 5, 200)

	// Background readers: other tasks cat the lists; they either get in
	// (no writer) or get EBUSY, nothing else.
	stop := make(chan struct{})
	var bg errgroup.Group
	for r := range 2 {
		bg.Go(func() error {
			tid := 3000 + r
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				_, err := staging.ReadFile(k.FS(staging.Root(tid)), staging.ASCIIRuntimeMeasurements)
				if err != nil && !errors.Is(err, syscall.EBUSY) {
					return err
				}
				time.Sleep(200 * time.Microsecond) // a cat now and then, not a busy loop
			}
		})
	}

	admin := staging.Root(1000)
	openRetry := func(name string) *staging.SimFile {
		for {
			f, err := sfs.Open(admin, name, os.O_RDWR)
			if err == nil {
				return f
			}
			require.ErrorIs(t, err, syscall.EBUSY)
			runtime.Gosched()
		}
	}
	// contenders checks, from goroutines standing for other tasks, that
	// every open of a list file is refused while the writer holds one.
	contenders := func() {
		t.Helper()
		var g errgroup.Group
		for j := range 4 {
			g.Go(func() error {
				task := staging.Root(2000 + j)
				for _, name := range []string{staging.BinaryRuntimeMeasurements, staging.BinaryRuntimeMeasurementsStaged,
					"ascii_runtime_measurements_sha256", "binary_runtime_measurements_sha256_staged"} {
					for _, flag := range []int{os.O_RDONLY, os.O_WRONLY, os.O_RDWR} {
						f, err := sfs.Open(task, name, flag)
						if err == nil {
							f.Close()
							return fmt.Errorf("task %d opened %s while the writer held the lock", task.TID, name)
						}
						if !errors.Is(err, syscall.EBUSY) {
							return err
						}
					}
				}
				return nil
			})
		}
		require.NoError(t, g.Wait())
		_, err := sfs.Open(admin, staging.BinaryRuntimeMeasurements, os.O_RDONLY)
		require.ErrorIs(t, err, syscall.EBUSY, "the writer itself must use O_RDWR")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	readSome := func(f io.Reader) []byte { return readRandom(t, f, rng) }

	saved := history{}
	for c := range cycles {
		m.await(int64(6 * (c + 1)))
		if c%2 == 0 {
			fd := openRetry(staging.BinaryRuntimeMeasurementsStaged)
			if _, err := fd.Write([]byte("A\n")); err != nil {
				require.ErrorIs(t, err, syscall.ENOENT)
				require.NoError(t, fd.Close())
				continue
			}
			contenders()
			fd256, err := sfs.Open(admin, "binary_runtime_measurements_sha256_staged", os.O_RDWR)
			require.NoError(t, err, "the writer may open more list files read-write")
			saved[tpmext.SHA1] = append(saved[tpmext.SHA1], readSome(fd)...)
			saved[tpmext.SHA256] = append(saved[tpmext.SHA256], readSome(fd256)...)
			n, err := fd.Write([]byte("D\n"))
			require.NoError(t, err)
			require.Equal(t, 2, n)
			require.NoError(t, fd256.Close())
			require.NoError(t, fd.Close())
		} else {
			fd := openRetry(staging.BinaryRuntimeMeasurements)
			contenders()
			fd256, err := sfs.Open(admin, "binary_runtime_measurements_sha256", os.O_RDWR)
			require.NoError(t, err)
			data := readSome(fd)
			es := decode(t, data, 20)
			data256 := readSome(fd256) // may hold more records: keep the same first N
			var b []byte
			for _, e := range decode(t, data256, 32)[:len(es)] {
				b = append(b, raw(t, e)...)
			}
			if len(es) > 0 {
				_, err = fd.Write(fmt.Appendf(nil, "%d\n", len(es)))
				require.NoError(t, err)
			}
			saved[tpmext.SHA1] = append(saved[tpmext.SHA1], data...)
			saved[tpmext.SHA256] = append(saved[tpmext.SHA256], b...)
			require.NoError(t, fd256.Close())
			require.NoError(t, fd.Close())
		}
		require.Equal(t, staging.MeasureState{}, withoutReaders(normalized(sfs.MeasureState())))
	}
	measured := m.stop(t)
	close(stop)
	require.NoError(t, bg.Wait())
	require.Equal(t, staging.MeasureState{}, normalized(sfs.MeasureState()))
	t.Logf("%d cycles, %d measurements", cycles, len(measured))
	requireNeverStagedLog(t, k, sim, saved, measured)
}

// readRandom reads r to EOF with buffers of random sizes.
func readRandom(t *testing.T, r io.Reader, rng *rand.Rand) []byte {
	t.Helper()
	var out []byte
	for {
		buf := make([]byte, 1+rng.IntN(700))
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
	}
}

// normalized clears Writer when there is no writer.
func normalized(st staging.MeasureState) staging.MeasureState {
	if !st.HasWriter {
		st.Writer = 0
	}
	return st
}

// withoutReaders drops the readers the background goroutines may hold.
func withoutReaders(st staging.MeasureState) staging.MeasureState {
	if st.Users > 0 {
		st.Users = 0
	}
	return st
}
