package main

import (
	"bufio"
	"fmt"
	"io"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
)

func init() {
	commands["log"] = command{"print the whole log since boot: the store of 'imasim collect', then the kernel's lists", runLog}
}

const logHelp = `usage: imasim log [flags]

Prints the IMA measurement log since boot as a kernel that never staged
would show it: the records 'imasim collect' saved in --store, then what
the kernel at --securityfs still holds (staged, then current). --format
binary and ascii are byte for byte binary_runtime_measurements_<bank> and
ascii_runtime_measurements_<bank> of such a kernel; json is one object a
record as 'imasim parse --format json' prints them, numbered from boot.

The store is opened as 'imasim collect' opens it (its lock, its recovery):
stop the collector first (a running one holds the store: exit 1).

Exit codes: 0 printed; 1 a failure (store locked, a batch that cannot be
decided, a write error); 2 usage, or input that cannot be used (see
'imasim collect -h').

flags:
`

func runLog(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("log", logHelp, stdout)
	var sf storeFlags
	sf.register(fs.FlagSet)
	format := fs.String("format", "binary", "binary, ascii or json")
	bank := fs.String("bank", "sha1", "template-digest column: a bank file suffix (sha1, sha256, tpm_alg_27, ...)")
	from := fs.Int("from", 0, "first record, numbered from boot")
	pos, code, ok := fs.parse(args, false, stderr)
	if !ok {
		return code
	}
	usageErr := func(err error) int { return usageErr(stderr, "log", "%v", err) }
	if len(pos) != 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", pos))
	}
	if *from < 0 {
		return usageErr(fmt.Errorf("--from %d: want a record number, 0 or more", *from))
	}
	var cf collector.Format
	switch *format {
	case "binary", "json":
		cf = collector.Binary
	case "ascii":
		cf = collector.ASCII
	default:
		return usageErr(fmt.Errorf("--format %q: want binary, ascii or json", *format))
	}
	kd, bootID, kind, err := sf.resolve()
	if err != nil {
		return usageErr(err)
	}
	slot := -1
	for _, lf := range kd.layout.ListFiles() {
		if lf.Suffix == *bank {
			slot = lf.Slot
		}
	}
	if slot < 0 {
		return usageErr(fmt.Errorf("--bank %q: %s has no binary_runtime_measurements_%s", *bank, kd.path, *bank))
	}
	c, err := collector.Open(sf.store, staging.Dir(kd.path), collector.Options{BootID: bootID, NewBoot: kind, Layout: kd.layout})
	if err != nil {
		fmt.Fprintln(stderr, "imasim log:", err)
		return openExitCode(err)
	}
	defer c.Close()

	w := bufio.NewWriterSize(stdout, 64<<10)
	if *format != "json" {
		_, err = c.WriteLog(w, *from, cf, slot)
	} else {
		sl := kd.layout.Slot(slot)
		err = writeLogJSON(w, c, *from, slot, eventlog.Options{DigestSize: sl.Size, ColumnAlg: sl.Bank, Order: kd.layout.Order()})
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintln(stderr, "imasim log:", err)
		return exitFail
	}
	return exitOK
}

// writeLogJSON writes the log from record from as a JSON array, one
// record a line, numbered from boot: the binary list of the slot, read
// back through ima/eventlog as 'imasim parse' reads a file.
func writeLogJSON(w io.Writer, c *collector.Collector, from, slot int, opts eventlog.Options) error {
	pr, pw := io.Pipe()
	go func() {
		_, err := c.WriteLog(pw, from, collector.Binary, slot)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	rd, err := eventlog.NewReader(pr, opts)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	var buf []byte
	for n := 0; ; n++ {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		e, err := r.Entry()
		if err != nil {
			return err
		}
		r.Index += from
		if buf, err = appendJSON(buf[:0], n, r, e, opts.Order); err != nil {
			return fmt.Errorf("record %d at offset %d: %w", r.Index, r.Offset, err)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	_, err = io.WriteString(w, "\n]\n")
	return err
}
