package oracle

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// Real is the running kernel, seen from its own user space (the guest's
// init). Each task is an OS thread of its own, so that the kernel's
// one-writer rule, which compares threads, sees the tasks the script
// names.
type Real struct {
	// Dir is the IMA securityfs directory.
	Dir staging.Dir
	// PCRDir is the TPM's sysfs directory with pcr-<bank>/<n> files.
	PCRDir  string
	workers map[int]chan func()
}

// NewReal returns the machine this program runs on.
func NewReal() *Real {
	return &Real{Dir: staging.DefaultDir, PCRDir: "/sys/class/tpm/tpm0", workers: map[int]chan func(){}}
}

// Do runs fn on task t's thread with t's credentials, then restores them.
func (r *Real) Do(t Task, fn func(staging.FS) error) error {
	ch, ok := r.workers[t.TID]
	if !ok {
		ch = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread is the task
			for f := range ch {
				f()
			}
		}()
		r.workers[t.TID] = ch
	}
	done := make(chan error)
	ch <- func() { done <- withCreds(t, func() error { return fn(r.Dir) }) }
	return <-done
}

// Close closes f on task t's thread: close(2) there drops the last
// reference, so the kernel's release runs in t's context.
func (r *Real) Close(t Task, f staging.File) error {
	return r.Do(t, func(staging.FS) error { return f.Close() })
}

// Measure writes content to path, owned by PolicyOwner, and reads it: the
// policy rule measures it at open. With violation, the file is held open
// for write meanwhile, so the open for read first records an open_writers
// violation (ima_main.c:ima_rdwr_violation_check()).
func (r *Real) Measure(path string, content []byte, violation bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		return err
	}
	if err := os.Chown(path, PolicyOwner, PolicyOwner); err != nil {
		return err
	}
	if violation {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer w.Close()
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadDir lists the securityfs directory with lstat and readlink.
func (r *Real) ReadDir() ([]staging.DirEntry, error) {
	des, err := os.ReadDir(string(r.Dir))
	if err != nil {
		return nil, err
	}
	var out []staging.DirEntry
	for _, de := range des {
		p := filepath.Join(string(r.Dir), de.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		e := staging.DirEntry{Name: de.Name(), Mode: fi.Mode() & (os.ModePerm | os.ModeSymlink)}
		if fi.Mode()&os.ModeSymlink != 0 {
			if e.Target, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// ReadPCR reads /sys/class/tpm/tpm0/pcr-<bank>/<pcr>, which the kernel
// reads from the TPM (TPM2_PCR_Read) at every read.
func (r *Real) ReadPCR(pcr int, bank tpmext.Algorithm) ([]byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/pcr-%v/%d", r.PCRDir, bank, pcr))
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(strings.TrimSpace(string(b)))
}

// capSysAdmin is CAP_SYS_ADMIN's bit.
const capSysAdmin = 21

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct{ effective, permitted, inheritable uint32 }

// withCreds runs fn on the calling (locked) thread with t's credentials:
// CAP_SYS_ADMIN dropped from the effective set (capset(2) is per thread),
// or the effective and filesystem uid and gid set to t.UID (setresuid(2)
// and setresgid(2) as raw system calls, which change only this thread;
// the saved ids stay 0, so they can be set back). Linux clears the
// effective capabilities when the effective uid leaves 0 and restores
// them from the permitted set when it comes back.
func withCreds(t Task, fn func() error) error {
	switch {
	case t.NoCap:
		hdr := capHeader{version: 0x20080522} // _LINUX_CAPABILITY_VERSION_3
		var data [2]capData
		if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
			return fmt.Errorf("capget: %w", e)
		}
		saved := data
		data[0].effective &^= 1 << capSysAdmin
		if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
			return fmt.Errorf("capset: %w", e)
		}
		defer syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&saved[0])), 0)
	case t.UID != 0:
		keep := ^uintptr(0) // -1: leave the real and saved ids
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, keep, uintptr(t.UID), keep); e != 0 {
			return fmt.Errorf("setresgid: %w", e)
		}
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keep, uintptr(t.UID), keep); e != 0 {
			return fmt.Errorf("setresuid: %w", e)
		}
		defer func() {
			syscall.RawSyscall(syscall.SYS_SETRESUID, keep, 0, keep)
			syscall.RawSyscall(syscall.SYS_SETRESGID, keep, 0, keep)
		}()
	}
	return fn()
}
