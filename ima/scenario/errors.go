package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// Error is why a script failed: a syntax error, a command that could not
// run, or a command that did not do what the script expects. It names the
// file and line of the command.
type Error struct {
	File    string
	Line    int
	Command string
	// Msg describes a syntax error or a command that could not run; empty
	// for a mismatch.
	Msg string
	// For a mismatch: the expected and actual output lines and errnos (0:
	// success), and the actual error's text.
	Want, Got       []string
	WantErr, GotErr syscall.Errno
	GotErrText      string
	// Err is the underlying error of a command that could not run.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: %s: ", e.File, e.Line, e.Command)
	if e.Msg != "" {
		b.WriteString(e.Msg)
		return b.String()
	}
	sep := ""
	if e.WantErr != e.GotErr {
		fmt.Fprintf(&b, "want %s, got %s", outcome(e.WantErr), outcome(e.GotErr))
		if e.GotErrText != "" {
			fmt.Fprintf(&b, " (%s)", e.GotErrText)
		}
		sep = "; "
	}
	if !equalLines(e.Want, e.Got) {
		b.WriteString(sep + "output differs\n\twant:\n")
		writeLines(&b, e.Want)
		b.WriteString("\tgot:\n")
		writeLines(&b, e.Got)
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *Error) Unwrap() error { return e.Err }

func outcome(e syscall.Errno) string {
	if e == 0 {
		return "success"
	}
	return errnoName(e)
}

func writeLines(b *strings.Builder, lines []string) {
	if len(lines) == 0 {
		b.WriteString("\t(nothing)\n")
	}
	for _, l := range lines {
		b.WriteString("\t" + expectLine(l) + "\n")
	}
}

// expectLine renders an output line as a script writes it.
func expectLine(l string) string {
	if l == "" {
		return ">"
	}
	return "> " + l
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// errnoOf returns the errno an error carries, as a shell would report it:
// the syscall.Errno inside a *fs.PathError (or anywhere in the chain), and
// EBADF for a closed file.
func errnoOf(err error) (syscall.Errno, bool) {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e, true
	}
	if errors.Is(err, os.ErrClosed) || errors.Is(err, fs.ErrClosed) {
		return syscall.EBADF, true
	}
	return 0, false
}

// errnoNames are the Linux errno names scripts may use.
var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH",
	syscall.EINTR: "EINTR", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO",
	syscall.E2BIG: "E2BIG", syscall.EBADF: "EBADF", syscall.EAGAIN: "EAGAIN",
	syscall.ENOMEM: "ENOMEM", syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT",
	syscall.EBUSY: "EBUSY", syscall.EEXIST: "EEXIST", syscall.EXDEV: "EXDEV",
	syscall.ENODEV: "ENODEV", syscall.ENOTDIR: "ENOTDIR", syscall.EISDIR: "EISDIR",
	syscall.EINVAL: "EINVAL", syscall.ENFILE: "ENFILE", syscall.EMFILE: "EMFILE",
	syscall.ENOTTY: "ENOTTY", syscall.EFBIG: "EFBIG", syscall.ENOSPC: "ENOSPC",
	syscall.ESPIPE: "ESPIPE", syscall.EROFS: "EROFS", syscall.EPIPE: "EPIPE",
	syscall.EDOM: "EDOM", syscall.ERANGE: "ERANGE", syscall.ENOSYS: "ENOSYS",
	syscall.EOVERFLOW: "EOVERFLOW", syscall.EOPNOTSUPP: "EOPNOTSUPP",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.ESTALE: "ESTALE", syscall.ECANCELED: "ECANCELED",
	syscall.ENODATA: "ENODATA", syscall.EILSEQ: "EILSEQ",
}

var errnoByNames = func() map[string]syscall.Errno {
	m := make(map[string]syscall.Errno, len(errnoNames))
	for e, n := range errnoNames {
		m[n] = e
	}
	return m
}()

func errnoName(e syscall.Errno) string {
	if n, ok := errnoNames[e]; ok {
		return n
	}
	return fmt.Sprintf("errno(%d)", int(e))
}

func errnoByName(s string) (syscall.Errno, bool) {
	e, ok := errnoByNames[s]
	return e, ok
}
