package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging/fusefs"
	"github.com/imasim/imasim/tpmext"
)

func init() {
	commands["mount"] = command{"serve a simulated kernel's /sys/kernel/security/ima at a directory (FUSE)", runMount}
}

const mountHelp = `usage: imasim mount [flags] DIR

Boots a simulated kernel (CONFIG_IMA_KEXEC; CONFIG_IMA_STAGING unless
--staging=false; the seeded firmware of 'imasim export') and serves its
/sys/kernel/security/ima at DIR over FUSE until SIGINT or SIGTERM, then
unmounts. Every file has the kernel's mode, owner, reads (seq_file), write
grammar and errnos; the caller of each request is the task (thread id,
uid, gid, effective capabilities from /proc/TID/status).

As root it mounts with mount(2) and lets every user in (allow_other), the
model's permission checks deciding. Otherwise it mounts through
fusermount3, only the mounting user may enter (FUSE's rule), and that user
counts as root with the capabilities of its bounding set, as the root of a
user namespace it owns would: an unprivileged developer can test an
agent, and a task whose bounding set lacks CAP_SYS_ADMIN still gets EPERM
for a write open.

The machine is driven from outside with 'imasim ctl DIR ...' through the
control socket DIR/../.BASE.imasim.sock (unix, mode 0600), where BASE is
DIR's last element.

A kexec or a reboot (imasim ctl DIR kexec|reboot) swaps the kernel behind
the mount. A file opened before stays bound to the old kernel, as a task
caught between the reboot notifier and the jump: its writes get that
suspended kernel's answers (A: EACCES; D, N: ESTALE), its reads EIO.

--workload rate=R,violations=K[,count=C] measures R new files a second in
the background (the seeded files of 'imasim export', continuing after
--measure), every K-th event a violation (K=0: none), C events in all
(0 or absent: until unmounted); 'imasim ctl DIR status' says when it is done.

flags:
`

// mount is a running mount: the simulated machine behind DIR.
type mount struct {
	dir, sock string
	fsys      *fusefs.FS

	// mu protects w (its kernel changes at kexec and reboot), r, events,
	// boots and bgState; measurements and kernel swaps hold it.
	mu      sync.Mutex
	w       *workload
	r       *rand.Rand
	events  int
	boots   int
	bgState string // --workload: "", "running" or "done"
}

func runMount(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("mount", mountHelp, stdout)
	banks := fs.String("banks", "sha1,sha256", "TPM banks, in the TPM's order")
	tmpl := fs.String("template", "ima-ng", "ima_template")
	hash := fs.String("hash", "sha256", "ima_hash")
	flush := fs.Bool("flush", false, "boot with ima_flush_htable")
	tpmKind := fs.String("tpm", "software", "TPM back end (see 'imasim export -h')")
	stagingOn := fs.Bool("staging", true, "CONFIG_IMA_STAGING")
	seed := fs.Int64("seed", 1, "workload seed")
	measure := fs.Int("measure", 0, "files measured at boot")
	pageSize := fs.Int("page-size", 4096, "PAGE_SIZE: the seq_file buffer, so the most one read(2) of a list returns (65536 on arm64 with 64K pages)")
	wl := fs.String("workload", "", "background measurer: rate=R,violations=K[,count=C]")
	debugFuse := fs.Bool("debug", false, "log every FUSE request to stderr")
	pos, code, ok := fs.parse(args, false, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageErr(stderr, "mount", "want exactly one DIR, got %d arguments", len(pos))
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "imasim mount:", err)
		return 1
	}
	bg, err := parseWorkload(*wl)
	if err != nil {
		fmt.Fprintln(stderr, "imasim mount: --workload:", err)
		return 2
	}
	bankList, err := tpmext.ParseBanks(*banks)
	if err != nil {
		fmt.Fprintln(stderr, "imasim mount:", err)
		return 2
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return fail(err)
	}
	if err := checkMountPoint(dir); err != nil {
		if errors.Is(err, errNoDir) {
			fmt.Fprintln(stderr, "imasim mount:", err)
			return exitUsage
		}
		return fail(err)
	}
	m := &mount{dir: dir, sock: ctlSocket(dir), r: rand.New(rand.NewSource(*seed))}
	if c, err := net.Dial("unix", m.sock); err == nil {
		c.Close()
		return fail(fmt.Errorf("%s is already served by another imasim mount (control socket %s)", dir, m.sock))
	}
	m.w = &workload{Banks: bankList, Template: *tmpl, Hash: *hash, Flush: *flush,
		Seed: *seed, TPMKind: *tpmKind, NoStaging: !*stagingOn, PageSize: *pageSize}
	if err := m.w.boot(); err != nil {
		return fail(err)
	}
	defer m.w.tpm.Close()
	for ; m.events < *measure; m.events++ {
		if err := m.w.measure(m.r, m.events, false); err != nil {
			return fail(err)
		}
	}
	// The boot's garbage goes back to the system before serving, and the
	// heap may grow by a quarter of the live heap (the kernel's list)
	// between collections rather than double (GOGC=100), so that the
	// process's RSS stays near the model's own memory. GOGC in the
	// environment wins.
	debug.FreeOSMemory()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}

	m.fsys = fusefs.New(m.w.kernel.SecurityFS())
	root := os.Geteuid() == 0
	if !root {
		m.fsys.MapRoot(uint32(os.Geteuid()))
	}
	srv, err := fusefs.Mount(dir, m.fsys, fusefs.Options{Direct: root, AllowOther: root, Debug: *debugFuse})
	if err != nil {
		return fail(err)
	}
	// unmount unmounts dir, or, when it is busy (a process has its
	// working directory or a file there), detaches it: the processes
	// still inside then get ENOTCONN once this process exits.
	unmount := func() {
		if err := srv.Unmount(); err != nil {
			msg, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
			fmt.Fprintf(stderr, "imasim mount: unmounting %s: %s; detached it (lazy unmount)\n", dir, msg)
			lazyUnmount(dir)
			return
		}
		srv.Wait()
	}
	os.Remove(m.sock) // a stale socket of a mount that died
	// The socket is created 0600 (umask 0177), never wider: it can
	// reboot the machine.
	oldMask := syscall.Umask(0o177)
	ln, err := net.Listen("unix", m.sock)
	syscall.Umask(oldMask)
	if err != nil {
		unmount()
		return fail(fmt.Errorf("control socket: %w", err))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if bg.rate > 0 {
		m.bgState = "running"
		go m.background(bg, stderr)
	}
	go m.serveCtl(ln)
	fmt.Fprintf(stdout, "imasim mount: %s serves boot %s (%d records); control socket %s\n",
		dir, m.w.kernel.BootID(), m.w.kernel.Queue().NumRecords(measlist.Binary), m.sock)
	<-sigs
	ln.Close()
	os.Remove(m.sock)
	unmount()
	return 0
}

// bgWorkload is --workload: rate events a second, every every-th a
// violation, count events in all (0: no end).
type bgWorkload struct {
	rate         float64
	every, count int
}

// parseWorkload parses rate=R,violations=K[,count=C].
func parseWorkload(s string) (bgWorkload, error) {
	var b bgWorkload
	if s == "" {
		return b, nil
	}
	var err error
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "rate":
			b.rate, err = strconv.ParseFloat(v, 64)
			if err == nil && !(b.rate > 0 && b.rate <= 1e6) {
				err = errors.New("rate must be above 0 and at most 1e6")
			}
		case "violations":
			b.every, err = strconv.Atoi(v)
			if err == nil && b.every < 0 {
				err = errors.New("violations must not be negative")
			}
		case "count":
			b.count, err = strconv.Atoi(v)
			if err == nil && b.count < 0 {
				err = errors.New("count must not be negative")
			}
		default:
			err = fmt.Errorf("unknown key %q (want rate=R,violations=K,count=C)", k)
		}
		if err != nil {
			return b, err
		}
	}
	if b.rate == 0 {
		return b, errors.New("rate=R is required")
	}
	return b, nil
}

// ctlSocket is the control socket of the mount at dir: beside it, so that
// it is not inside the mounted directory.
func ctlSocket(dir string) string {
	return filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".imasim.sock")
}

// errNoDir is what checkMountPoint's refusals of bad input wrap: DIR is
// missing or not a directory.
var errNoDir = errors.New("not a directory")

// noDirError is a refusal of DIR itself; it matches errNoDir.
type noDirError string

func (e noDirError) Error() string   { return string(e) }
func (noDirError) Is(err error) bool { return err == errNoDir }

// checkMountPoint refuses a dir that is missing, not a directory, or
// already a mount point.
func checkMountPoint(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return noDirError(dir + " does not exist (create the directory first)")
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%s is a dead FUSE mount (transport endpoint is not connected): unmount it with umount -l %s", dir, dir)
	case err != nil:
		return err
	case !st.IsDir():
		return noDirError(dir + " is not a directory")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("/dev/fuse is missing: this machine cannot serve FUSE (modprobe fuse, or run the container with --device /dev/fuse)")
	}
	if fstype, ok := mountedAt(dir); ok {
		return fmt.Errorf("%s is already a mount point (%s)", dir, fstype)
	}
	return nil
}

// mountedAt reports whether dir is a mount point, and its type, from
// /proc/self/mountinfo.
func mountedAt(dir string) (string, bool) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	fstype, found := "", false
	for _, line := range strings.Split(string(data), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		found, fstype = true, "unknown type"
		for i, x := range f {
			if x == "-" && i+1 < len(f) {
				fstype = f[i+1]
			}
		}
	}
	return fstype, found
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lazyUnmount detaches dir: umount2(MNT_DETACH) as root, fusermount3 -u -z
// otherwise.
func lazyUnmount(dir string) {
	if syscall.Unmount(dir, syscall.MNT_DETACH) == nil {
		return
	}
	_ = exec.Command("fusermount3", "-u", "-z", dir).Run()
}

// background runs the --workload measurer.
func (m *mount) background(b bgWorkload, stderr io.Writer) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.rate))
	defer tick.Stop()
	reported := false
	for n := 0; b.count == 0 || n < b.count; n++ {
		<-tick.C
		m.mu.Lock()
		i := m.events
		m.events++
		err := m.w.measure(m.r, i, b.every > 0 && n%b.every == b.every-1)
		m.mu.Unlock()
		if err != nil && !reported {
			fmt.Fprintln(stderr, "imasim mount: workload:", err)
			reported = true
		}
	}
	m.mu.Lock()
	m.bgState = "done"
	m.mu.Unlock()
}

// ctlRequest is one request on the control socket (one JSON line).
type ctlRequest struct {
	Op    string    `json:"op"`
	Files []ctlFile `json:"files,omitempty"`
	Path  string    `json:"path,omitempty"`
	Bank  string    `json:"bank,omitempty"`
}

// ctlFile is a file to measure: its path and what IMA would read of it.
type ctlFile struct {
	Path     string `json:"path"`
	Content  []byte `json:"content"`
	UID, GID uint32
	Mode     uint32
}

// ctlReply is the answer (one JSON line).
type ctlReply struct {
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (m *mount) serveCtl(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var req ctlRequest
			var rep ctlReply
			line, err := bufio.NewReader(c).ReadBytes('\n')
			if err == nil {
				err = json.Unmarshal(line, &req)
			}
			if err == nil {
				rep.Output, err = m.do(req)
			}
			if err != nil {
				rep.Error = err.Error()
			}
			out, _ := json.Marshal(rep)
			c.Write(append(out, '\n'))
		}()
	}
}

// do carries out one control request.
func (m *mount) do(req ctlRequest) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.w.kernel
	var out strings.Builder
	switch req.Op {
	case "measure":
		for _, f := range req.Files {
			mf := ima.NewFile(f.Path, f.Content)
			mf.UID, mf.GID, mf.Mode = f.UID, f.GID, uint16(f.Mode)
			err := k.Measure(mf)
			switch {
			case errors.Is(err, syscall.EEXIST):
				fmt.Fprintf(&out, "%s: already measured (EEXIST)\n", f.Path)
			case err != nil:
				return out.String(), fmt.Errorf("%s: %w", f.Path, err)
			default:
				fmt.Fprintf(&out, "%s: measured\n", f.Path)
			}
		}
	case "violation":
		if err := k.Violation(req.Path, nil, ima.CauseToMToU); err != nil {
			return "", err
		}
		fmt.Fprintf(&out, "violation on %s recorded\n", req.Path)
	case "kexec", "reboot":
		next := k.Kexec
		if req.Op == "reboot" {
			next = k.Reboot
		}
		nk, err := next()
		if err != nil {
			return "", err
		}
		m.w.kernel = nk
		m.boots++
		m.fsys.Swap(nk.SecurityFS())
		fmt.Fprintf(&out, "%s: boot %s, %d records in the current list\n", req.Op, nk.BootID(), nk.Queue().NumRecords(measlist.Binary))
	case "pcrs":
		pcrs, err := m.w.tpm.ReadPCRs()
		if err != nil {
			return "", err
		}
		alg := tpmext.SHA1
		if req.Bank != "" {
			if alg, err = tpmext.ParseAlgorithm(req.Bank); err != nil {
				return "", err
			}
		}
		bank, ok := pcrs[alg]
		if !ok {
			return "", fmt.Errorf("the TPM has no %v bank", alg)
		}
		out.Write(eventlog.AppendPCRFile(nil, bank))
	case "status":
		q := k.Queue()
		cur, staged, full := q.NumRecords(measlist.Binary), q.NumRecords(measlist.BinaryStaged), q.NumRecords(measlist.BinaryFull)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(&out, "boot_id: %s\nkexecs_and_reboots: %d\nrecords: %d\nstaged: %d\ndeleted: %d\nviolations: %d\n",
			k.BootID(), m.boots, cur, staged, full-cur-staged, q.NumViolations())
		fmt.Fprintf(&out, "kernel_memory_bytes: %d\nopen_files: %d\nevents: %d\nworkload: %s\nheap_bytes: %d\nrss_bytes: %d\nrss_peak_bytes: %d\n",
			q.KernelMemory().Total(), m.fsys.OpenFiles(), m.events, cmp.Or(m.bgState, "none"), ms.HeapAlloc, procStatusBytes("VmRSS"), procStatusBytes("VmHWM"))
	default:
		return "", fmt.Errorf("unknown request %q", req.Op)
	}
	return out.String(), nil
}

// procStatusBytes reads a "kB" figure of /proc/self/status, in bytes.
func procStatusBytes(key string) int64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range bytes.Split(data, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(k) == key {
			f := bytes.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}
