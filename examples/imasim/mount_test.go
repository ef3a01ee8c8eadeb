package main

import (
	"bufio"
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/eventlog/evmctl"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

// needFUSE skips a test where the machine cannot serve FUSE.
func needFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: imasim mount cannot be tested on this machine")
	}
}

// needRoot skips a test that changes credentials or mounts other file
// systems.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (setpriv, mount)")
	}
}

// buildImasim builds the command into a temporary directory, so that
// mounts run as real processes.
func buildImasim(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "imasim")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// startMount runs `imasim mount ARGS DIR` on a new directory until the
// test ends (SIGTERM, then a check that nothing is left mounted; a lazy
// unmount if something is). It returns the directory.
func startMount(t testing.TB, bin string, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ima")
	require.NoError(t, os.Mkdir(dir, 0o755))
	errFile, err := os.Create(filepath.Join(t.TempDir(), "mount.stderr"))
	require.NoError(t, err)
	cmd := exec.Command(bin, append(append([]string{"mount"}, args...), dir)...)
	cmd.Stderr = errFile
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Wait()
		msg, _ := os.ReadFile(errFile.Name())
		t.Fatalf("imasim mount did not start: %v\n%s", err, msg)
	}
	require.Contains(t, line, "serves boot")
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				msg, _ := os.ReadFile(errFile.Name())
				t.Errorf("imasim mount exited with %v\n%s", err, msg)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("imasim mount did not stop on SIGTERM")
		}
		if _, mounted := mountedAt(dir); mounted {
			t.Errorf("%s still mounted after imasim mount exited", dir)
			lazyUnmount(dir)
		}
		if _, err := os.Stat(ctlSocket(dir)); err == nil {
			t.Errorf("control socket %s left behind", ctlSocket(dir))
		}
	})
	return dir
}

// ctl runs `imasim ctl DIR ARGS` and returns its output.
func ctl(t testing.TB, bin, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"ctl", dir}, args...)...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("imasim ctl %v: %v: %s", args, err, ee.Stderr)
	}
	require.NoError(t, err)
	return string(out)
}

// statusField returns one field of `imasim ctl DIR status`.
func statusField(t testing.TB, bin, dir, key string) string {
	t.Helper()
	for _, line := range strings.Split(ctl(t, bin, dir, "status"), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == key {
			return v
		}
	}
	t.Fatalf("no %q in imasim ctl status", key)
	return ""
}

// TestMountShell runs testdata/mount.sh: echo, cat, dd and setpriv against
// the mount, both flavours, every errno the issue names, kexec and Q4.
func TestMountShell(t *testing.T) {
	needFUSE(t)
	needRoot(t)
	for _, tool := range []string{"bash", "setpriv", "dd", "cmp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed; .ci/run installs it", tool)
		}
	}
	bin := buildImasim(t)
	dir := startMount(t, bin, "--measure", "20")
	out, err := exec.Command("bash", "testdata/mount.sh", bin, dir).CombinedOutput()
	t.Logf("mount.sh:\n%s", out)
	require.NoError(t, err, "mount.sh failed")
}

// TestMountWithoutStaging: with --staging=false the _staged files do not
// exist (creating one is EACCES, finding (g)) and N through the original
// file still deletes (docs/SPEC.md Q1).
func TestMountWithoutStaging(t *testing.T) {
	needFUSE(t)
	bin := buildImasim(t)
	dir := startMount(t, bin, "--staging=false", "--measure", "10")
	st, err := os.Stat(ctlSocket(dir))
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket|0o600, st.Mode(), "the control socket is 0600")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NotContains(t, e.Name(), "_staged")
	}
	err = os.WriteFile(filepath.Join(dir, "binary_runtime_measurements_staged"), []byte("A\n"), 0o600)
	require.ErrorIs(t, err, syscall.EACCES)
	_, err = os.ReadFile(filepath.Join(dir, "binary_runtime_measurements_staged"))
	require.ErrorIs(t, err, syscall.ENOENT)
	count := func() int {
		n, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "runtime_measurements_count"))))
		require.NoError(t, err)
		return n
	}
	before := count()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "binary_runtime_measurements"), []byte("2\n"), 0))
	require.Equal(t, before-2, count())
}

// TestMountEvmctl has evmctl read the mounted binary_runtime_measurements
// with `imasim ctl DIR pcrs` as its --pcrs files, after violations and a
// kexec (the list since boot is still all in the kernel), and accept it at
// the last entry.
func TestMountEvmctl(t *testing.T) {
	needFUSE(t)
	path, err := evmctl.Path()
	if err != nil {
		t.Skipf("%v; .ci/run installs it", err)
	}
	bin := buildImasim(t)
	dir := startMount(t, bin, "--measure", "300", "--seed", "3")
	ctl(t, bin, dir, "violation", "/var/log/x")
	host := filepath.Join(t.TempDir(), "tool")
	require.NoError(t, os.WriteFile(host, []byte("#!/bin/sh\necho hi\n"), 0o755))
	require.Equal(t, host+": measured\n", ctl(t, bin, dir, "measure", host))
	require.Equal(t, host+": already measured (EEXIST)\n", ctl(t, bin, dir, "measure", host))
	require.Contains(t, readFile(t, filepath.Join(dir, "ascii_runtime_measurements")), " "+host+"\n")
	require.Equal(t, "1\n", readFile(t, filepath.Join(dir, "violations")))
	ctl(t, bin, dir, "kexec")
	ctl(t, bin, dir, "measure", "--content", "after kexec", "/usr/bin/after")
	ctl(t, bin, dir, "violation")

	var pcrFiles []string
	for _, bank := range []string{"sha1", "sha256"} {
		f := filepath.Join(t.TempDir(), "pcrs-"+bank)
		require.NoError(t, os.WriteFile(f, []byte(ctl(t, bin, dir, "pcrs", "--bank", bank)), 0o644))
		pcrFiles = append(pcrFiles, bank+","+f)
	}
	n, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "runtime_measurements_count"))))
	require.NoError(t, err)
	res, err := evmctl.Run(path, filepath.Join(dir, "binary_runtime_measurements"), pcrFiles, true)
	require.NoError(t, err)
	require.True(t, res.Accepts(n, false), "evmctl does not accept the mounted list of %d records: rc %d, last succeed %v\n%s",
		n, res.RC, res.LastSucceed(), tail(res.Stderr, 600))
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(data)
}

// TestMountPythonAgent runs a standard-library Python agent's prompt cycles
// through the mount while --workload measures (violations included); its
// concatenated saved log, plus the kernel's current list at the end, must
// verify strictly against the TPM with imasim verify.
func TestMountPythonAgent(t *testing.T) {
	needFUSE(t)
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	bin := buildImasim(t)
	dir := startMount(t, bin, "--measure", "50", "--workload", "rate=100,violations=9,count=300")
	logFile := filepath.Join(t.TempDir(), "saved.log")
	out, err := exec.Command(python, "testdata/agent.py", dir, logFile, bin).CombinedOutput()
	require.NoError(t, err, "agent.py: %s", out)
	t.Logf("%s", out)
	m := regexp.MustCompile(`agent: (\d+) cycles`).FindSubmatch(out)
	require.NotNil(t, m, "agent.py printed no summary: %s", out)
	cycles, _ := strconv.Atoi(string(m[1]))
	require.Greater(t, cycles, 2, "the agent should have saved records in several cycles while the workload ran")

	var args []string
	for _, bank := range []string{"sha1", "sha256"} {
		f := filepath.Join(t.TempDir(), "pcrs-"+bank)
		require.NoError(t, os.WriteFile(f, []byte(ctl(t, bin, dir, "pcrs", "--bank", bank)), 0o644))
		args = append(args, "--pcrs", bank+","+f)
	}
	require.Equal(t, "0", statusField(t, bin, dir, "records"), "the last cycle left records in the kernel")
	v := exec.Command(bin, append(append([]string{"verify"}, args...), logFile)...)
	vout, err := v.CombinedOutput()
	require.NoError(t, err, "imasim verify of the agent's saved log: %s", vout)
	saved, err := eventlog.ParseEventLog([]byte(readFile(t, logFile)), eventlog.Options{})
	require.NoError(t, err)
	require.Equal(t, statusField(t, bin, dir, "deleted"), strconv.Itoa(saved.Len()),
		"every record the kernel deleted is in the agent's log")
}

// TestMountCollectorByteIdentical runs the Go collector on the mount
// (staging.Dir) and on an in-process kernel booted and driven the same way,
// through prompt and N cycles and a kexec between A and D; the logs since
// boot must be byte-identical in every format and column.
func TestMountCollectorByteIdentical(t *testing.T) {
	needFUSE(t)
	bin := buildImasim(t)
	const seed, boot = 5, 120
	dir := startMount(t, bin, "--measure", strconv.Itoa(boot), "--seed", strconv.Itoa(seed))

	banks, err := tpmext.ParseBanks("sha1,sha256")
	require.NoError(t, err)
	w := &workload{Banks: banks, Template: "ima-ng", Seed: seed, TPMKind: "software"}
	require.NoError(t, w.boot())
	defer w.tpm.Close()
	r := rand.New(rand.NewSource(seed))
	for i := 0; i < boot; i++ {
		require.NoError(t, w.measure(r, i, false))
	}
	layout := w.kernel.Layout()
	root := staging.Root(77)
	local, err := collector.Open(filepath.Join(t.TempDir(), "local"), w.kernel.FS(root),
		collector.Options{BootID: w.kernel.BootID(), Layout: layout})
	require.NoError(t, err)
	defer local.Close()
	mounted, err := collector.Open(filepath.Join(t.TempDir(), "mounted"), staging.Dir(dir),
		collector.Options{BootID: statusField(t, bin, dir, "boot_id"), Layout: layout})
	require.NoError(t, err)
	defer mounted.Close()

	measure := func(i int) {
		path, content := "/srv/more-"+strconv.Itoa(i), "more "+strconv.Itoa(i)
		ctl(t, bin, dir, "measure", "--content", content, path)
		f := ima.NewFile(path, []byte(content))
		f.Mode = 0o100644
		require.NoError(t, w.kernel.Measure(f))
	}
	both := func(f collector.Flavour) {
		rl, errL := local.CycleFlavour(f)
		rm, errM := mounted.CycleFlavour(f)
		require.NoError(t, errL)
		require.NoError(t, errM)
		require.Equal(t, rl, rm, "%v cycle", f)
	}
	both(collector.Prompt)
	for i := 0; i < 30; i++ {
		measure(i)
	}
	both(collector.DeleteN)
	measure(100)
	both(collector.Prompt)

	// kexec between A and D: both collectors get ESTALE and find the
	// records in the next kernel.
	kexec := func(c *collector.Collector, do func()) {
		c.SetHook(func(s collector.Step) error {
			if s == collector.StepSealed {
				do()
			}
			return nil
		})
		_, err := c.CycleFlavour(collector.Prompt)
		require.ErrorIs(t, err, collector.ErrStale)
		c.SetHook(nil)
	}
	measure(101)
	var next *ima.Kernel
	kexec(local, func() {
		var err error
		next, err = w.kernel.Kexec()
		require.NoError(t, err)
	})
	w.kernel = next
	require.NoError(t, local.SwitchKernel(next.FS(root), next.BootID(), collector.Kexec))
	kexec(mounted, func() { ctl(t, bin, dir, "kexec") })
	require.NoError(t, mounted.SwitchKernel(staging.Dir(dir), statusField(t, bin, dir, "boot_id"), collector.Kexec))
	measure(102)
	both(collector.DeleteN)
	measure(103)

	for _, lf := range layout.ListFiles() {
		for _, format := range []collector.Format{collector.Binary, collector.ASCII} {
			var a, b bytes.Buffer
			na, err := local.WriteLog(&a, 0, format, lf.Slot)
			require.NoError(t, err)
			nb, err := mounted.WriteLog(&b, 0, format, lf.Slot)
			require.NoError(t, err)
			require.Equal(t, na, nb)
			require.True(t, bytes.Equal(a.Bytes(), b.Bytes()), "%s %v: logs differ", lf.Suffix, format)
		}
	}
	require.Greater(t, local.Committed(), boot)
	require.Equal(t, strconv.FormatInt(w.kernel.Queue().NumRecords(measlist.Binary), 10), statusField(t, bin, dir, "records"))
}

// runBin runs the built command and returns its exit code and output.
func runBin(t testing.TB, bin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, stdout.String(), stderr.String()
}

// TestMountBadInput: each refusal is one clear line on stderr and a
// non-zero exit, and leaves nothing mounted.
func TestMountBadInput(t *testing.T) {
	needFUSE(t)
	bin := buildImasim(t)
	oneLine := func(t *testing.T, dir, want string, args ...string) {
		t.Helper()
		code, _, stderr := runBin(t, bin, args...)
		require.NotEqual(t, 0, code, "imasim %v succeeded", args)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "want one line, got %q", stderr)
		require.Contains(t, stderr, want)
		if dir != "" {
			_, mounted := mountedAt(dir)
			require.False(t, mounted, "%s left mounted", dir)
		}
	}
	tmp := t.TempDir()
	t.Run("missing", func(t *testing.T) {
		dir := filepath.Join(tmp, "missing")
		oneLine(t, dir, "does not exist", "mount", dir)
	})
	t.Run("not a directory", func(t *testing.T) {
		file := filepath.Join(tmp, "file")
		require.NoError(t, os.WriteFile(file, nil, 0o644))
		oneLine(t, file, "is not a directory", "mount", file)
	})
	t.Run("a second mount on the same directory", func(t *testing.T) {
		dir := startMount(t, bin)
		code, _, stderr := runBin(t, bin, "mount", dir)
		require.Equal(t, 1, code)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "want one line, got %q", stderr)
		require.Contains(t, stderr, "already a mount point (fuse.imasim)")
		// The first mount still serves.
		require.Equal(t, "1\n", readFile(t, filepath.Join(dir, "runtime_measurements_count")))
	})
	t.Run("ctl without a mount", func(t *testing.T) {
		oneLine(t, "", "no live imasim mount at", "ctl", tmp, "status")
	})
	t.Run("ctl and mount on a crashed mount", func(t *testing.T) {
		needRoot(t)
		dir := filepath.Join(t.TempDir(), "ima")
		require.NoError(t, os.Mkdir(dir, 0o755))
		cmd := exec.Command(bin, "mount", dir)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		_, err = bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		require.NoError(t, cmd.Process.Kill()) // a crash: no unmount, the socket stays
		cmd.Wait()
		t.Cleanup(func() { lazyUnmount(dir) })
		oneLine(t, "", "no live imasim mount at", "ctl", dir, "status")
		code, _, stderr := runBin(t, bin, "mount", dir)
		require.Equal(t, 1, code)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "want one line, got %q", stderr)
		require.Contains(t, stderr, "is a dead FUSE mount")
		lazyUnmount(dir)
		_, mounted := mountedAt(dir)
		require.False(t, mounted, "the lazy unmount left %s mounted", dir)
	})
	t.Run("already a mount point", func(t *testing.T) {
		needRoot(t)
		dir := filepath.Join(t.TempDir(), "tmpfs")
		require.NoError(t, os.Mkdir(dir, 0o755))
		require.NoError(t, syscall.Mount("tmpfs", dir, "tmpfs", 0, ""))
		defer syscall.Unmount(dir, 0)
		code, _, stderr := runBin(t, bin, "mount", dir)
		require.Equal(t, 1, code)
		require.Equal(t, "imasim mount: "+dir+" is already a mount point (tmpfs)\n", stderr)
	})
	t.Run("no /dev/fuse", func(t *testing.T) {
		needRoot(t)
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("unshare not installed")
		}
		dir := filepath.Join(t.TempDir(), "ima")
		require.NoError(t, os.Mkdir(dir, 0o755))
		// A private mount namespace whose /dev is an empty tmpfs.
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs none /dev && exec "$0" mount "$1"`, bin, dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		require.Error(t, err)
		require.Equal(t, "imasim mount: /dev/fuse is missing: this machine cannot serve FUSE (modprobe fuse, or run the container with --device /dev/fuse)\n", stderr.String())
		_, mounted := mountedAt(dir)
		require.False(t, mounted)
	})
}

// TestMountLazyUnmount: SIGTERM while a process keeps its working directory
// in the mount: the mount process detaches the mount (lazy unmount) and
// exits 0, and DIR is no longer a mount point.
func TestMountLazyUnmount(t *testing.T) {
	needFUSE(t)
	bin := buildImasim(t)
	dir := filepath.Join(t.TempDir(), "ima")
	require.NoError(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() { lazyUnmount(dir) })
	cmd := exec.Command(bin, "mount", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	_, err = bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	busy := exec.Command("sleep", "60")
	busy.Dir = dir
	require.NoError(t, busy.Start())
	defer func() { busy.Process.Kill(); busy.Wait() }()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "imasim mount: %s", stderr.String())
	require.Contains(t, stderr.String(), "detached it (lazy unmount)")
	_, mounted := mountedAt(dir)
	require.False(t, mounted, "%s is still a mount point", dir)
	_, err = os.Stat(ctlSocket(dir))
	require.ErrorIs(t, err, os.ErrNotExist, "control socket left behind")
}

// TestMountAsUser: a mount made by an unprivileged user through
// fusermount3 takes that user as root with its bounding set's
// capabilities: it reads and stages; without CAP_SYS_ADMIN in its bounding
// set it gets EPERM; another user is kept out by FUSE.
func TestMountAsUser(t *testing.T) {
	needFUSE(t)
	needRoot(t) // to become uid 1000 with setpriv
	for _, tool := range []string{"setpriv", "fusermount3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed; .ci/run installs it", tool)
		}
	}
	bin := buildImasim(t)
	top, err := os.MkdirTemp("", "imasim-user-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(top) })
	dir := filepath.Join(top, "ima")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(top, 0o755))
	// The binary goes where uid 1000 can reach it: t.TempDir() is 0700.
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	bin = filepath.Join(top, "imasim")
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	for _, p := range []string{top, dir} {
		require.NoError(t, os.Chown(p, 1000, 1000))
	}
	as := func(uid string, extra ...string) []string {
		return append([]string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups"}, extra...)
	}
	cmd := exec.Command("setpriv", append(as("1000"), bin, "mount", "--measure", "5", dir)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		cmd.Wait()
		t.Fatalf("imasim mount as uid 1000: %v: %s", err, stderr.String())
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("imasim mount as uid 1000: %v: %s", err, stderr.String())
		}
		if _, mounted := mountedAt(dir); mounted {
			t.Errorf("%s left mounted", dir)
			lazyUnmount(dir)
		}
	})
	sh := func(uid string, extra []string, script string) (string, error) {
		out, err := exec.Command("setpriv", append(as(uid, extra...), "sh", "-c", script)...).CombinedOutput()
		return string(out), err
	}
	staged := filepath.Join(dir, "binary_runtime_measurements_staged")
	out, err := sh("1000", nil, "cat "+filepath.Join(dir, "runtime_measurements_count"))
	require.NoError(t, err, out)
	require.Equal(t, "6\n", out)
	out, err = sh("1000", nil, "echo A > "+staged+" && echo D > "+staged)
	require.NoError(t, err, out)
	out, err = sh("1000", []string{"--bounding-set=-sys_admin"}, "echo 1 > "+filepath.Join(dir, "binary_runtime_measurements"))
	require.Error(t, err)
	require.Contains(t, out, "Operation not permitted")
	out, err = sh("1001", nil, "cat "+filepath.Join(dir, "runtime_measurements_count"))
	require.Error(t, err)
	require.Contains(t, out, "Permission denied")
}
