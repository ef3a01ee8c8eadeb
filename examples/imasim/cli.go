package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
)

// Exit codes, the same for every command (no kernel counterpart).
const (
	// exitOK: the command did what was asked; the log verified, the
	// scenario matched.
	exitOK = 0
	// exitFail: the command ran and the answer is no (a log that does
	// not verify, a scenario that does not match, a quote that is
	// rejected) or the simulated machine failed (an errno from ctl, a
	// workload that stopped, output that could not be written).
	exitFail = 1
	// exitUsage: the command could not start as asked: a usage error,
	// or input that cannot be read (a missing file, a directory, a
	// malformed PCR file or state, a script that does not parse).
	exitUsage = 2
)

// exitCodesHelp is the paragraph on exit codes in imasim -h and in the
// README.
const exitCodesHelp = `Exit status, the same for every command:
  0  success (-h included)
  1  a verification or scenario mismatch, or a failure of the simulated
     machine (an errno from ctl, a workload that stopped)
  2  a usage error, or input that cannot be read: a missing file, a
     directory, a malformed PCR file, a script that does not parse
`

// flagSet is the flag set of one command.
type flagSet struct {
	*flag.FlagSet
	help   string
	stdout io.Writer
}

// newFlagSet returns the flag set of command name, whose -h prints help
// (then the flags) to stdout.
func newFlagSet(name, help string, stdout io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse prints errors, one line each
	fs.Usage = func() {}
	return &flagSet{fs, help, stdout}
}

// printHelp prints the help and the flags to standard output.
func (fs *flagSet) printHelp() {
	fmt.Fprint(fs.stdout, fs.help)
	fs.SetOutput(fs.stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses args, flags before or after the positional arguments when
// interspersed is set, and returns the positional arguments. When ok is
// false the command must return code: exitOK after -h (the help is
// printed), exitUsage after a bad flag (one line on stderr).
func (fs *flagSet) parse(args []string, interspersed bool, stderr io.Writer) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printHelp()
				return nil, exitOK, false
			}
			return nil, usageErr(stderr, fs.Name(), "%v", err), false
		}
		if !interspersed || fs.NArg() == 0 {
			return append(pos, fs.Args()...), 0, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// usageErr prints one line, "imasim CMD: MESSAGE (see 'imasim CMD -h')",
// and returns exitUsage.
func usageErr(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "imasim %s: %s (see 'imasim %s -h')\n", cmd, fmt.Sprintf(format, a...), cmd)
	return exitUsage
}

// openList opens LOG ("-" is standard input); a directory is refused
// here, with EISDIR, rather than at the first read.
func openList(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, &os.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	return f, nil
}

// detectWindow is how much of a list detectFormat looks at.
const detectWindow = 1 << 20

// detectFormat returns the format of the list that br starts with (read
// with Peek, so nothing is consumed): ASCII, or binary in one of the byte
// orders with one of the column widths 20, 32, 48, 64, tried in
// eventlog.DetectFormat's order. A format fits when every record of the
// first MiB parses (the last may be cut at the window's end, if at least
// one before it is whole). ok is false when none fits. No kernel
// counterpart.
func detectFormat(br *bufio.Reader) (eventlog.Options, bool) {
	data, err := br.Peek(detectWindow)
	complete := err != nil // a short Peek: the whole list is in data
	if len(data) == 0 {
		return eventlog.Options{}, false
	}
	fits := func(o eventlog.Options, data []byte) bool {
		rd, err := eventlog.NewReader(bytes.NewReader(data), o)
		if err != nil {
			return false
		}
		for n := 0; ; n++ {
			r, err := rd.Next()
			if err == io.EOF {
				return n > 0
			}
			if err == nil {
				_, err = r.Entry()
			}
			if err != nil {
				return n > 0 && errors.Is(err, template.ErrTruncated) // cut at the window, or a torn list
			}
		}
	}
	if c := data[0]; c == ' ' || c >= '0' && c <= '9' {
		lines := data
		if !complete {
			lines = data[:bytes.LastIndexByte(data, '\n')+1]
		}
		if len(lines) > 0 && fits(eventlog.Options{ASCII: true}, lines) {
			return eventlog.Options{ASCII: true}, true
		}
	}
	for _, order := range []template.Order{template.LittleEndian, template.BigEndian} {
		for _, ds := range []int{20, 32, 48, 64} {
			o := eventlog.Options{Order: order, DigestSize: ds}
			if fits(o, data) {
				return o, true
			}
		}
	}
	return eventlog.Options{}, false
}

// formatFlags names the flags that read a list in format o.
func formatFlags(o eventlog.Options) string {
	if o.ASCII {
		return "--ascii"
	}
	s := fmt.Sprintf("--digest-len %d", o.DigestSize)
	if o.Order == template.BigEndian {
		s += " --big-endian"
	}
	return s
}

// openListAs opens LOG for reading in the format the list flags name, or,
// when lf names none, in the format detectFormat finds. hint is what to
// add to an error at the first record: the flags that would read the
// list, or that no format fits.
func openListAs(name string, lf *listFlags, opts eventlog.Options) (in io.ReadCloser, br *bufio.Reader, _ eventlog.Options, hint string, err error) {
	in, err = openList(name)
	if err != nil {
		return nil, nil, opts, "", err
	}
	br = bufio.NewReaderSize(in, detectWindow)
	d, ok := detectFormat(br)
	switch {
	case !ok:
		hint = "no list format fits the start of " + name + " (binary with a 20-, 32-, 48- or 64-byte column in either byte order, or ASCII)"
	case lf.given():
		if d.ASCII != opts.ASCII || (!d.ASCII && (d.Order != opts.Order || (opts.DigestSize != 0 && d.DigestSize != opts.DigestSize))) {
			hint = name + " reads as a list with " + formatFlags(d)
		}
	default:
		opts.ASCII, opts.Order, opts.DigestSize = d.ASCII, d.Order, d.DigestSize
	}
	return in, br, opts, hint, nil
}
