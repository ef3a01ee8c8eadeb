package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// The kill loop runs the collector in a child process (this test binary,
// re-executed) against a simulated kernel that lives in the parent, kills
// it with SIGKILL at random moments, and restarts it on the same store.
// The child reaches the kernel's securityfs and TPM through net/rpc over a
// unix socket; when the child dies, the parent releases the files it held
// as another thread of the dead process, as the kernel does at exit (the
// release context of docs/SPEC.md Q4). Nothing of this has a kernel counterpart;
// it exists so that kill -9 is real: no deferred Close, no hook, the
// process gone at any instruction.
//
// Environment of the child: killChildEnv holds "socket,store,flavour,bootid".
//
// IMASIM_KILLLOOP_KILLS sets the number of kills per case (default
// killLoopKills, killLoopKillsShort with -short); for example
//
//	IMASIM_KILLLOOP_KILLS=500 go test -run TestKillLoop -v ./staging/collector
const (
	killChildEnv       = "IMASIM_COLLECTOR_KILL_CHILD"
	killLoopKills      = 100
	killLoopKillsShort = 40
)

// ---- the parent's side: the kernel as a service ----

// KernelService serves one child's connection: its open files, by handle.
// Exported (with exported methods) for net/rpc.
type KernelService struct {
	r     *rig
	mu    sync.Mutex
	files map[int]*staging.SimFile
	next  int
}

type OpenArgs struct {
	Name string
	Flag int
}

type FileReply struct {
	Handle int
	N      int
	Data   []byte
	EOF    bool
	Errno  int    // a syscall.Errno, or 0
	Other  string // an error that is not an errno
}

type FileArgs struct {
	Handle int
	N      int
	Data   []byte
}

type PCRReply struct {
	Banks  []tpmext.Algorithm
	Values [][]byte
}

func (r *FileReply) setErr(err error) {
	var errno syscall.Errno
	switch {
	case err == nil:
	case err == io.EOF:
		r.EOF = true
	case errors.As(err, &errno):
		r.Errno = int(errno)
	default:
		r.Other = err.Error()
	}
}

func (s *KernelService) file(h int) *staging.SimFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[h]
}

func (s *KernelService) Open(a OpenArgs, r *FileReply) error {
	f, err := s.r.fs().OpenFile(a.Name, a.Flag)
	if err != nil {
		r.setErr(err)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.files[s.next] = f.(*staging.SimFile)
	r.Handle = s.next
	return nil
}

func (s *KernelService) Read(a FileArgs, r *FileReply) error {
	f := s.file(a.Handle)
	if f == nil {
		r.Errno = int(syscall.EBADF)
		return nil
	}
	buf := make([]byte, min(a.N, 1<<20))
	n, err := f.Read(buf)
	r.N, r.Data = n, buf[:n]
	r.setErr(err)
	return nil
}

func (s *KernelService) Write(a FileArgs, r *FileReply) error {
	f := s.file(a.Handle)
	if f == nil {
		r.Errno = int(syscall.EBADF)
		return nil
	}
	n, err := f.Write(a.Data)
	r.N = n
	r.setErr(err)
	return nil
}

func (s *KernelService) Close(a FileArgs, r *FileReply) error {
	s.mu.Lock()
	f := s.files[a.Handle]
	delete(s.files, a.Handle)
	s.mu.Unlock()
	if f == nil {
		r.Errno = int(syscall.EBADF)
		return nil
	}
	r.setErr(f.Close())
	return nil
}

func (s *KernelService) PCRs(_ int, r *PCRReply) error {
	for _, alg := range s.r.tpm.Banks() {
		v, err := s.r.tpm.ReadPCR(ima.DefaultMeasurePCR, alg)
		if err != nil {
			return err
		}
		r.Banks, r.Values = append(r.Banks, alg), append(r.Values, v)
	}
	return nil
}

// exit releases what a dead child left open, as another thread of it.
func (s *KernelService) exit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, f := range s.files {
		f.CloseAs(exitTask)
		delete(s.files, h)
	}
}

// serveKernel accepts children on a unix socket. idle reports whether no
// connection is being served: every dead child's files are released.
func serveKernel(t *testing.T, r *rig, sock string) (idle func() bool) {
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	var live atomic.Int64
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			live.Add(1)
			go func() {
				defer live.Add(-1)
				svc := &KernelService{r: r, files: map[int]*staging.SimFile{}}
				srv := rpc.NewServer()
				if err := srv.Register(svc); err != nil {
					panic(err)
				}
				srv.ServeConn(conn) // until the child dies
				svc.exit()
			}()
		}
	}()
	return func() bool { return live.Load() == 0 }
}

// ---- the child's side: a staging.FS over the connection ----

type remoteFS struct{ c *rpc.Client }

type remoteFile struct {
	fs   remoteFS
	name string
	h    int
}

func (r *FileReply) err(op, name string) error {
	switch {
	case r.Errno != 0:
		return &fs.PathError{Op: op, Path: name, Err: syscall.Errno(r.Errno)}
	case r.Other != "":
		return &fs.PathError{Op: op, Path: name, Err: errors.New(r.Other)}
	case r.EOF:
		return io.EOF
	}
	return nil
}

func (f remoteFS) OpenFile(name string, flag int) (staging.File, error) {
	var r FileReply
	if err := f.c.Call("KernelService.Open", OpenArgs{name, flag}, &r); err != nil {
		return nil, err
	}
	if err := r.err("open", name); err != nil {
		return nil, err
	}
	return &remoteFile{fs: f, name: name, h: r.Handle}, nil
}

func (f *remoteFile) Name() string { return f.name }

func (f *remoteFile) Read(p []byte) (int, error) {
	var r FileReply
	if err := f.fs.c.Call("KernelService.Read", FileArgs{Handle: f.h, N: len(p)}, &r); err != nil {
		return 0, err
	}
	return copy(p, r.Data), r.err("read", f.name)
}

func (f *remoteFile) Write(p []byte) (int, error) {
	var r FileReply
	if err := f.fs.c.Call("KernelService.Write", FileArgs{Handle: f.h, Data: p}, &r); err != nil {
		return 0, err
	}
	return r.N, r.err("write", f.name)
}

func (f *remoteFile) Close() error {
	var r FileReply
	if err := f.fs.c.Call("KernelService.Close", FileArgs{Handle: f.h}, &r); err != nil {
		return err
	}
	return r.err("close", f.name)
}

func (f remoteFS) pcrs() (eventlog.Target, error) {
	var r PCRReply
	if err := f.c.Call("KernelService.PCRs", 0, &r); err != nil {
		return eventlog.Target{}, err
	}
	want := eventlog.Expected{}
	for i, alg := range r.Banks {
		want[alg] = map[int][]byte{ima.DefaultMeasurePCR: r.Values[i]}
	}
	return eventlog.Target{PCRs: want}, nil
}

// killChild is the child's main: open the collector (retrying while the
// disk is full) and run cycles until killed, printing a line for each.
func killChild(spec string) {
	parts := strings.Split(spec, ",")
	fail := func(err error) {
		fmt.Println("fatal:", err)
		os.Exit(1)
	}
	if len(parts) != 4 {
		fail(fmt.Errorf("bad %s %q", killChildEnv, spec))
	}
	sock, dir, flav, bootID := parts[0], parts[1], parts[2], parts[3]
	client, err := rpc.Dial("unix", sock)
	if err != nil {
		fail(err)
	}
	rfs := remoteFS{client}
	// Kexec: the parent may have kexec'd the kernel while no child ran.
	opts := Options{BootID: bootID, NewBoot: Kexec, PCRs: rfs.pcrs, Backoff: time.Millisecond, Retries: 1000}
	var c *Collector
	for {
		if c, err = Open(dir, rfs, opts); err == nil {
			break
		}
		if !errors.Is(err, syscall.ENOSPC) {
			fail(err)
		}
		fmt.Println("open: disk full")
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Println("open")
	for i := 0; ; i++ {
		f := Prompt
		if flav == "n" || flav == "mixed" && i%2 == 1 {
			f = DeleteN
		}
		res, err := c.CycleFlavour(f)
		switch {
		case err == nil:
			fmt.Println("cycle", res.Saved)
		case errors.Is(err, syscall.ENOSPC):
			fmt.Println("cycle: disk full")
			time.Sleep(2 * time.Millisecond)
		default:
			fail(err)
		}
	}
}

// ---- the loop ----

// TestKillLoop kills a collector child with SIGKILL at random moments and
// restarts it on the same store, while the kernel records violations that
// are all the same, byte for byte (so a deleted batch is followed by
// copies of itself), in bursts. Prompt, N, and both alternating on a store
// whose small tmpfs is filled and freed over and over. After every kill the
// kernel's writer bookkeeping must be back to zero (a child holding two
// writer descriptors would leave it stuck); at the end, a collector on the
// store serves exactly the log of a kernel without staging: no record lost
// or doubled, and it replays to PCR 10.
func TestKillLoop(t *testing.T) {
	kills := killLoopKills
	if testing.Short() {
		kills = killLoopKillsShort
	}
	if s := os.Getenv("IMASIM_KILLLOOP_KILLS"); s != "" {
		var err error
		kills, err = strconv.Atoi(s)
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		flav     string
		fullDisk bool
		kexec    bool // kexec the kernel now and then while no child runs
	}{
		{"prompt", false, false},
		{"n", false, false},
		{"mixed", true, false},
		{"mixed", false, true},
	} {
		name := tc.flav
		if tc.fullDisk {
			name += "-full-disk"
		}
		if tc.kexec {
			name += "-kexec"
		}
		t.Run(name, func(t *testing.T) {
			runKillLoop(t, tc.flav, tc.fullDisk, tc.kexec, kills)
		})
	}
}

func runKillLoop(t *testing.T, flav string, fullDisk, kexec bool, kills int) {
	r := newRig(t, ima.Config{})
	rng := rand.New(rand.NewPCG(uint64(len(flav)), 11))
	base := t.TempDir()
	storeParent := base
	if fullDisk {
		// Room for the log of the whole run (about 10 records of 110
		// bytes per kill) once the ballast is gone.
		storeParent = smallDisk(t, fmt.Sprintf("%dk", max(256, 2*kills)))
	}
	dir := filepath.Join(storeParent, "store")
	sock := filepath.Join(base, "kernel.sock")
	idle := serveKernel(t, r, sock)

	// Violations in bursts, all the same record.
	stop := make(chan struct{})
	var gen sync.WaitGroup
	gen.Add(1)
	go func() {
		defer gen.Done()
		g := rand.New(rand.NewPCG(7, uint64(len(flav))))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(g.IntN(40)) * time.Millisecond):
			}
			for range 1 + g.IntN(6) {
				r.sameViolation()
			}
		}
	}()

	kexecs := 0
	var ballast string
	cycles, fullCycles := 0, 0
	est := 5 * time.Millisecond
	for kill := range kills {
		if fullDisk && kill%4 == 1 {
			if ballast == "" {
				ballast = fillDisk(t, storeParent, rng.Int64N(700))
			} else {
				require.NoError(t, os.Remove(ballast))
				ballast = ""
			}
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		spec := strings.Join([]string{sock, dir, flav, r.kernel().BootID()}, ",")
		cmd.Env = append(os.Environ(), killChildEnv+"="+spec)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Kill before the collector is open, sometimes; usually a few
		// cycles in, at a random point of a cycle (est is how long a
		// cycle takes, measured as the loop goes) or within 15 ms.
		var timer <-chan time.Time
		at := func() <-chan time.Time {
			if rng.IntN(2) == 0 {
				return time.After(time.Duration(rng.IntN(15)) * time.Millisecond)
			}
			return time.After(time.Duration(rng.Int64N(int64(2*est) + 1)))
		}
		if rng.IntN(5) == 0 {
			timer = time.After(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		want := rng.IntN(4)
		n := 0
		last := time.Now()
	wait:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					cmd.Wait()
					t.Fatalf("kill %d: the child exited on its own", kill)
				}
				switch {
				case strings.HasPrefix(line, "fatal:"):
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("kill %d: child: %s", kill, line)
				case line == "open":
					last = time.Now()
					if timer == nil && want == 0 {
						timer = at()
					}
				case strings.HasPrefix(line, "cycle"):
					cycles++
					if strings.Contains(line, "disk full") {
						fullCycles++
					}
					est = (3*est + time.Since(last)) / 4
					last = time.Now()
					if n++; n >= want && timer == nil {
						timer = at()
					}
				}
			case <-timer:
				break wait
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("kill %d: the child is stuck", kill)
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		for range lines {
		}
		for !idle() { // the dead child's files are released
			time.Sleep(100 * time.Microsecond)
		}
		st := r.kernel().SecurityFS().MeasureState()
		require.Zero(t, st.Users, "kill %d: the kernel's user count is stuck", kill)
		require.False(t, st.HasWriter, "kill %d: the kernel still has a writer", kill)
		if kexec && rng.IntN(8) == 0 {
			r.kexec()
			kexecs++
		}
	}
	close(stop)
	gen.Wait()
	if ballast != "" {
		require.NoError(t, os.Remove(ballast))
	}
	if fullDisk {
		// The workload's records grow with the run's length, which load
		// stretches: the check at the end needs room whatever the size.
		growDisk(t, storeParent, "64m")
	}

	opts := r.options(Prompt)
	opts.NewBoot = Kexec // if the last kill was followed by one
	c, err := Open(dir, r.fs(), opts)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Cycle()
	require.NoError(t, err)
	recs, err := c.Records(0)
	require.NoError(t, err)
	wantRecs := len(decode(t, r.layout(), r.want()))
	t.Logf("%s: %d kills, %d kexecs, %d cycles completed by the children (%d refused for a full disk), %d records in the log, %d committed, %d served, %d lost",
		flav, kills, kexecs, cycles, fullCycles, wantRecs, c.Committed(), len(recs), wantRecs-len(recs))
	r.check(c, "after the kill loop")
	verifyPCR10(t, r.layout(), r.tpm, recs)
	require.Greater(t, c.Committed(), 1, "the children never committed anything")
}
