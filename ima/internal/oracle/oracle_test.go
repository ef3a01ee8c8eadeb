package oracle

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestOracle boots the patched kernel once per script, under QEMU with
// swtpm as its TPM, and compares the guest's transcript with the model's.
// It skips only when qemu-system-x86_64, swtpm or the kernel that
// scripts/kernel/build.sh builds is absent (.ci/run builds it first).
func TestOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the guest is linux/amd64")
	}
	for _, tool := range []string{"qemu-system-x86_64", "swtpm", "swtpm_setup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	kernel := kernelPath(t)
	scripts, err := Scripts()
	if err != nil {
		t.Fatal(err)
	}
	initrd := buildInitramfs(t)
	outDir := os.Getenv("IMASIM_ORACLE_OUT") // keep the transcripts there
	for _, s := range scripts {
		t.Run(s.Name, func(t *testing.T) {
			start := time.Now()
			guest := bootGuest(t, kernel, initrd, s)
			t.Logf("boot and run: %v", time.Since(start).Round(time.Millisecond))
			m, err := NewModel(s)
			if err != nil {
				t.Fatal(err)
			}
			var model bytes.Buffer
			Run(s, m, &model)
			model.WriteString("# oracle: end\n")
			if outDir != "" {
				os.WriteFile(filepath.Join(outDir, s.Name+".guest"), []byte(guest), 0o644)
				os.WriteFile(filepath.Join(outDir, s.Name+".model"), model.Bytes(), 0o644)
			}
			if strings.Contains(guest, "\n!! ") || strings.Contains(model.String(), "\n!! ") {
				t.Errorf("a step could not run:\n%s", guest)
			}
			if d := diffLines(Normalize(guest), Normalize(model.String())); d != "" {
				t.Errorf("the kernel (-) and the model (+) differ:\n%s", d)
			}
		})
	}
}

// kernelPath asks scripts/kernel/build.sh where its cached bzImage is.
func kernelPath(t *testing.T) string {
	if k := os.Getenv("IMASIM_KERNEL"); k != "" {
		return k
	}
	out, err := exec.Command("bash", "../../../scripts/kernel/build.sh", "--path").Output()
	if err != nil {
		t.Fatalf("build.sh --path: %v", err)
	}
	k := strings.TrimSpace(string(out))
	if _, err := os.Stat(k); err != nil {
		t.Skipf("no kernel at %s: run scripts/kernel/build.sh", k)
	}
	return k
}

// buildInitramfs builds guestinit (static, CGO_ENABLED=0) and packs it as
// /init, with /dev/console, into a newc cpio archive.
func buildInitramfs(t *testing.T) string {
	dir := t.TempDir()
	bin := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", bin, "./guestinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build guestinit: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var c cpioWriter
	c.add("dev", 0o040755, 0, nil)
	c.add("dev/console", 0o020600, 5<<8|1, nil)
	c.add("init", 0o100755, 0, prog)
	c.add("TRAILER!!!", 0, 0, nil)
	path := filepath.Join(dir, "initramfs.cpio")
	if err := os.WriteFile(path, c.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cpioWriter writes the "newc" format the kernel unpacks
// (Documentation/driver-api/early-userspace/buffer-format.rst).
type cpioWriter struct {
	bytes.Buffer
	ino int
}

func (c *cpioWriter) add(name string, mode uint32, rdev int, data []byte) {
	c.ino++
	fmt.Fprintf(c, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev>>8, rdev&0xff, len(name)+1, 0)
	c.WriteString(name + "\x00")
	c.pad()
	c.Write(data)
	c.pad()
}

func (c *cpioWriter) pad() {
	for c.Len()%4 != 0 {
		c.WriteByte(0)
	}
}

// bootGuest starts swtpm, boots the kernel with the script's command line
// and returns what the guest wrote on its second serial port.
func bootGuest(t *testing.T, kernel, initrd string, s *Script) string {
	dir := t.TempDir()
	state, sock := filepath.Join(dir, "tpm"), filepath.Join(dir, "swtpm.sock")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state,
		"--pcr-banks", "sha1,sha256").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tpm := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,path="+sock, "--flags", "startup-clear", "--terminate")
	var tpmLog bytes.Buffer
	tpm.Stdout, tpm.Stderr = &tpmLog, &tpmLog
	if err := tpm.Start(); err != nil {
		t.Fatal(err)
	}
	defer tpm.Wait()
	defer tpm.Process.Kill()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 200 {
			t.Fatalf("swtpm did not create %s: %s", sock, tpmLog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	console, transcript := filepath.Join(dir, "console.log"), filepath.Join(dir, "transcript.txt")
	args := []string{"-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet " + s.CmdLine(),
		"-serial", "file:" + console, "-serial", "file:" + transcript,
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"}
	if _, err := os.Stat("/dev/kvm"); err == nil {
		args = append(args, "-accel", "kvm")
	}
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", args...).CombinedOutput()
	log, _ := os.ReadFile(console)
	raw, _ := os.ReadFile(transcript)
	got := strings.ReplaceAll(string(raw), "\r\n", "\n") // the tty's ONLCR
	if err != nil || !strings.HasSuffix(got, "# oracle: end\n") {
		t.Fatalf("the guest did not finish (qemu: %v %s)\nconsole:\n%s\ntranscript:\n%s", err, out, log, got)
	}
	return got
}

// diffLines returns the lines that only a has ("-") or only b has ("+"),
// from a longest-common-subsequence alignment, or "" when a and b are
// equal. Each line carries a line number of a: its own for "-", the one it
// comes before for "+".
func diffLines(a, b string) string {
	if a == b {
		return ""
	}
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// lcs[i][j] is the length of the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var d strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			fmt.Fprintf(&d, "%4d - %s\n", i+1, x[i])
			i++
		default:
			fmt.Fprintf(&d, "%4d + %s\n", i+1, y[j])
			j++
		}
	}
	return d.String()
}
