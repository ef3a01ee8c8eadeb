//go:build linux

// Command guestinit is the /init of the oracle's initramfs: it mounts
// proc, sysfs, devtmpfs and securityfs, loads the IMA policy
// oracle.Policy, runs the script named by oracle.script= on the kernel
// command line against the real /sys/kernel/security/ima, writes the
// transcript to the second serial port (/dev/ttyS1; the first is the
// console) and powers the machine off. Build it with CGO_ENABLED=0.
//
// No kernel counterpart: it is the user space of the oracle's guest.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/imasim/imasim/ima/internal/oracle"
)

func main() {
	err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestinit: %v\n", err)
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// Without ACPI power-off, a restart ends QEMU (-no-reboot).
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}

func run() error {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(m.src, m.dir, m.typ, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	out, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	err = runScript(w)
	if err != nil {
		fmt.Fprintf(w, "# oracle: error: %v\n", err)
	}
	fmt.Fprintln(w, "# oracle: end")
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	// tcdrain(): wait until the UART has sent everything, before the
	// power-off.
	const tcsbrk = 0x5409 // TCSBRK; an argument of 1 is tcdrain()
	syscall.Syscall(syscall.SYS_IOCTL, out.Fd(), tcsbrk, 1)
	return err
}

func runScript(w io.Writer) error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	var name string
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "oracle.script="); ok {
			name = v
		}
	}
	scripts, err := oracle.Scripts()
	if err != nil {
		return err
	}
	for _, s := range scripts {
		if s.Name != name {
			continue
		}
		if err := os.WriteFile("/sys/kernel/security/ima/policy", []byte(oracle.Policy), 0); err != nil {
			return fmt.Errorf("loading the policy: %w", err)
		}
		oracle.Run(s, oracle.NewReal(), w)
		return nil
	}
	return fmt.Errorf("no script %q (oracle.script= on the command line)", name)
}
