package staging

import (
	"io"
	"os"
	"path/filepath"
)

// File is an open securityfs file: the subset of *os.File that user space
// needs for the IMA list and counter files. Errors are *fs.PathError
// wrapping a syscall.Errno, so errors.Is(err, syscall.EBUSY) works for the
// simulated and the real securityfs alike.
type File interface {
	io.Reader
	io.Writer
	io.Closer
	// Name returns the name the file was opened with.
	Name() string
}

// FS opens the files of one IMA securityfs directory.
type FS interface {
	// OpenFile opens name (a file of the directory, such as
	// "binary_runtime_measurements_staged") with os.O_RDONLY, os.O_WRONLY
	// or os.O_RDWR, possibly or'ed with os.O_CREATE, os.O_TRUNC and the
	// other flags a shell redirection uses.
	OpenFile(name string, flag int) (File, error)
}

// DefaultDir is where the kernel's IMA securityfs files are.
const DefaultDir = "/sys/kernel/security/ima"

// Dir is the real securityfs directory, used through the os package. On a
// kernel with the staging series, user-space code written against FS runs
// unchanged on Dir and on the simulated SecurityFS.
//
// The kernel identifies the one writer by thread: a Go program that opens
// several list files for write, or closes them, must do so from one
// locked OS thread (runtime.LockOSThread), or the kernel will see several
// tasks (see docs/FINDINGS.md, Q4).
type Dir string

// OpenFile opens a file of the directory with os.OpenFile.
func (d Dir) OpenFile(name string, flag int) (File, error) {
	dir := string(d)
	if dir == "" {
		dir = DefaultDir
	}
	return os.OpenFile(filepath.Join(dir, name), flag, 0)
}

// ReadFile reads a whole file of fsys, as os.ReadFile does.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return data, err
}

// WriteFile writes data to name in one write() call, as `echo` does
// (open O_WRONLY|O_CREATE|O_TRUNC, write, close). It returns the write's
// error, or the close's.
func WriteFile(fsys FS, name string, data []byte) error {
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
