package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

// RunFile parses and runs the script in the file at path, writing its
// transcript to w (which may be nil).
func RunFile(path string, w io.Writer) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s, err := Parse(path, src)
	if err != nil {
		return err
	}
	return s.Run(w)
}

// Run runs the script on a fresh machine and writes its transcript to w
// (nil: none): every line of the script, each command followed by what it
// actually printed ("> " lines) and the errno it failed with ("! ERRNO").
// It stops at the first command that does not do what the script expects,
// or cannot run, and returns an *Error naming its file and line.
func (s *Script) Run(w io.Writer) error {
	if w == nil {
		w = io.Discard
	}
	m := newMachine()
	defer m.shutdown()
	for _, it := range s.items {
		if it.step == nil {
			fmt.Fprintln(w, it.text)
			continue
		}
		res, err := m.exec(it.step)
		writeResult(w, it.text, res)
		if err != nil {
			return &Error{File: s.name, Line: it.step.line, Command: it.step.text, Msg: err.Error(), Err: err}
		}
		st := it.step
		if res.errno != st.wantErr || !equalLines(res.out, st.want) {
			return &Error{File: s.name, Line: st.line, Command: st.text,
				Want: st.want, Got: res.out, WantErr: st.wantErr, GotErr: res.errno, GotErrText: res.errText}
		}
	}
	return nil
}

// Update runs the script and returns its text with each command's
// expectations replaced by what the command did: a script written without
// expectations comes back with them filled in. It does not stop at
// mismatches, only at a command that cannot run (an *Error), and then
// returns the text up to that command. Comments and blank lines are kept.
func (s *Script) Update() ([]byte, error) {
	var b bytes.Buffer
	m := newMachine()
	defer m.shutdown()
	for _, it := range s.items {
		if it.step == nil {
			fmt.Fprintln(&b, it.text)
			continue
		}
		res, err := m.exec(it.step)
		writeResult(&b, it.text, res)
		if err != nil {
			return b.Bytes(), &Error{File: s.name, Line: it.step.line, Command: it.step.text, Msg: err.Error(), Err: err}
		}
	}
	return b.Bytes(), nil
}

// result is what a command did.
type result struct {
	out     []string
	errno   syscall.Errno
	errText string
}

func writeResult(w io.Writer, cmd string, r result) {
	fmt.Fprintln(w, cmd)
	for _, l := range r.out {
		fmt.Fprintln(w, expectLine(l))
	}
	if r.errno != 0 {
		fmt.Fprintln(w, "! "+errnoName(r.errno))
	}
}

// machine is the simulated computer a script drives: a software TPM, the
// running kernel, the kernel before the last kexec or reboot, the open
// file descriptors, and what user space has saved.
type machine struct {
	tpm tpmext.TPM // nil: no TPM
	k   *ima.Kernel
	old *ima.Kernel
	fds map[int]*openFile
	// saved is, per list-file suffix ("sha1", "sha256"), the binary
	// records user space saved since the cold boot, with that bank's
	// template digests.
	saved map[string][]byte
	// lastSave is the length of each saved log before the last save.
	lastSave map[string]int
	// coll is the collector daemon once "collect" has run, with its
	// store in collDir.
	coll    *collector.Collector
	collDir string
	// armed is the command "at" armed for the next command.
	armed *armed
	// faultsSeen is, per kernel, how many kernel-exact faults have been
	// printed.
	faultsSeen map[*ima.Kernel]int
}

// openFile is an open file descriptor and the kernel it belongs to.
type openFile struct {
	f    *staging.SimFile
	k    *ima.Kernel
	kind fileKind
}

func newMachine() *machine {
	return &machine{fds: map[int]*openFile{}, saved: map[string][]byte{}}
}

// execCtx is one command's context: the task running it (root, thread 1,
// unless "as"), the kernel it runs on, and its output.
type execCtx struct {
	m            *machine
	task         staging.Task
	explicitTask bool
	old          bool
	out          bytes.Buffer
}

// errNoKernel is returned by commands that need a booted machine.
var errNoKernel = errors.New("no machine: the script must boot first")

func (x *execCtx) kernel() (*ima.Kernel, error) {
	if x.old {
		if x.m.old == nil {
			return nil, errors.New("old: there is no previous kernel (no kexec or reboot yet)")
		}
		return x.m.old, nil
	}
	if x.m.k == nil {
		return nil, errNoKernel
	}
	return x.m.k, nil
}

// exec runs one step. An error that carries an errno is the command's
// outcome (res.errno); any other error means the command could not run.
func (m *machine) exec(st *step) (result, error) {
	x := &execCtx{m: m, task: staging.Root(1)}
	a := m.armed
	m.armed = nil
	k := m.k
	var finish func()
	if a != nil && k != nil {
		finish = m.arm(a, k, x)
	}
	err := st.run(x)
	if finish != nil {
		finish()
	}
	for _, kk := range []*ima.Kernel{m.old, m.k} {
		if kk != nil {
			m.printFaults(kk, x)
		}
	}
	if errors.Is(err, measlist.ErrFault) {
		err = nil // printed as a fault line
	}
	res := result{out: splitOutput(x.out.String())}
	if err != nil {
		e, ok := errnoOf(err)
		if !ok {
			return res, err
		}
		res.errno, res.errText = e, err.Error()
	}
	return res, nil
}

// splitOutput splits output into lines, without the final newline and
// with trailing blanks dropped.
func splitOutput(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return lines
}

// boot powers on a new machine: a software TPM with the banks, then the
// kernel, as ima.New does at a cold boot.
func (m *machine) boot(b bootSpec) error {
	m.shutdown()
	*m = *newMachine()
	cfg := b.cfg
	if b.banks != nil {
		t, err := tpmext.NewSoftware(b.banks...)
		if err != nil {
			return err
		}
		m.tpm, cfg.TPM = t, t
	}
	k, err := ima.New(cfg)
	if err != nil {
		return err
	}
	m.k = k
	return nil
}

// doReboot reboots: measurement is suspended on the old kernel by the
// reboot notifier (security/integrity/ima/ima_queue.c:ima_reboot_notifier()),
// the TPM resets, and a new kernel starts a new log; what user space saved
// belongs to the old boot and is dropped.
func doReboot(x *execCtx) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	nk, err := k.Reboot()
	if err != nil {
		return err
	}
	x.m.old, x.m.k = k, nk
	x.m.saved, x.m.lastSave = map[string][]byte{}, nil
	return x.m.switchCollector(nk, collector.Reboot)
}

// doKexecLoad is `kexec -l`: kexec_file_load sizes the segment that will
// carry the list (security/integrity/ima/ima_kexec.c:ima_add_kexec_buffer()).
// A list too large to carry (or CONFIG_IMA_KEXEC=n) only makes the kernel
// log an error; the load itself succeeds, as there.
func doKexecLoad(x *execCtx) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	if _, err := k.KexecLoad(); err != nil && !errors.Is(err, measlist.ErrKexecTooLarge) {
		return err
	}
	return nil
}

// doKexec is `kexec -e`: the reboot notifier suspends measurement, the
// staged records then the current ones are dumped, and the new kernel
// restores them before its boot_aggregate (ima.Kernel.KexecInto). Saved
// records stay saved: the log since the cold boot goes on.
func doKexec(x *execCtx) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	nk, err := k.Kexec()
	if err != nil {
		return err
	}
	x.m.old, x.m.k = k, nk
	return x.m.switchCollector(nk, collector.Kexec)
}

// writeAction is echo or printf: to the output, or with a redirection a
// shell's open (O_WRONLY|O_CREAT|O_TRUNC for ">", O_APPEND for ">>"), one
// write() and close. The documentation's steps `echo A > <_staged>`,
// `echo D > <_staged>` and `echo N > <original>`
// (Documentation/security/IMA-export-delete.rst, Usage) are this.
func writeAction(data []byte, flag int, file string) action {
	if file == "" {
		return func(x *execCtx) error {
			x.out.Write(data)
			return nil
		}
	}
	file = fileName(file)
	return func(x *execCtx) error {
		k, err := x.kernel()
		if err != nil {
			return err
		}
		f, err := k.SecurityFS().Open(x.task, file, flag)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
}

// cat is cat(1): each file opened O_RDONLY, read to EOF, closed. It is the
// documentation's `cat <_staged>` and `cat <original>` step.
func (x *execCtx) cat(names []string) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	for _, name := range names {
		f, err := k.SecurityFS().Open(x.task, name, os.O_RDONLY)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		render(&x.out, k, kindOf(k, name), data)
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *execCtx) ls(long bool) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	for _, e := range k.SecurityFS().ReadDir() {
		if !long {
			fmt.Fprintln(&x.out, e.Name)
			continue
		}
		fmt.Fprintln(&x.out, e.LongLine())
	}
	return nil
}

func (x *execCtx) open(fd int, name string, flag int) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	if _, busy := x.m.fds[fd]; busy {
		return fmt.Errorf("open: fd %d is already open (close it first)", fd)
	}
	f, err := k.SecurityFS().Open(x.task, name, flag)
	if err != nil {
		return err
	}
	x.m.fds[fd] = &openFile{f: f, k: k, kind: kindOf(k, name)}
	return nil
}

func (x *execCtx) fd(fd int) (*openFile, error) {
	of, ok := x.m.fds[fd]
	if !ok {
		return nil, &os.PathError{Op: "fd", Path: fmt.Sprint(fd), Err: syscall.EBADF}
	}
	return of, nil
}

// read is read(2): one call of n bytes (printing the count), or, with n < 0,
// calls until EOF (printing what was read as cat does).
func (x *execCtx) read(fd, n int) error {
	of, err := x.fd(fd)
	if err != nil {
		return err
	}
	if n >= 0 {
		got, err := of.f.Read(make([]byte, n))
		if err == io.EOF {
			err = nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(&x.out, got)
		return nil
	}
	data, err := io.ReadAll(of.f)
	render(&x.out, of.k, of.kind, data)
	return err
}

func (x *execCtx) write(fd int, data []byte) error {
	of, err := x.fd(fd)
	if err != nil {
		return err
	}
	n, err := of.f.Write(data)
	if err != nil {
		return err
	}
	fmt.Fprintln(&x.out, n)
	return nil
}

func (x *execCtx) seek(fd int, off int64) error {
	of, err := x.fd(fd)
	if err != nil {
		return err
	}
	_, err = of.f.Seek(off, io.SeekStart)
	return err
}

// close is close(2). The release runs in the context of the opener, or of
// the task "as" names: the task that drops the last reference (docs/SPEC.md Q4).
func (x *execCtx) close(fd int) error {
	of, err := x.fd(fd)
	if err != nil {
		return err
	}
	delete(x.m.fds, fd)
	if x.explicitTask {
		return of.f.CloseAs(x.task)
	}
	return of.f.Close()
}
