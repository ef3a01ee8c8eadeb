package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
)

func init() {
	commands["parse"] = command{"render a measurement list as ASCII, binary or JSON", runParse}
}

const parseHelp = `usage: imasim parse [--digest-len N] [--big-endian] [--ascii] [--format ascii|binary|json] LOG

Reads LOG, an IMA measurement list (binary by default; "-" is standard
input), and writes it to standard output:

  ascii   the lines the kernel's ascii_runtime_measurements file for the
          column's bank shows, byte for byte (the default);
  binary  the binary records, re-encoded (byte-identical to a binary LOG;
          from an ASCII LOG, the rebuilt records);
  json    a JSON array, one record per line: index, byte offset, PCR,
          template digest, template, and each field as the ASCII list
          renders it.

A malformed record stops the output (JSON output is closed, so it stays
valid: the records before); the error goes to stderr with the record's
index (from 0) and byte offset, and the exit status is 1 (2 for usage
errors and unreadable input). Without --ascii, --digest-len, --column-alg
or --big-endian, the format is found from the start of LOG. A record with more than 16 MiB of template data, or an
ASCII line over 32 MiB + 1 KiB, is malformed (the cap that bounds memory;
see imasim verify -h).

Examples:
  imasim parse /sys/kernel/security/ima/binary_runtime_measurements
  imasim parse --digest-len 32 --format json binary_runtime_measurements_sha256
  imasim parse --ascii --format binary ascii_runtime_measurements > list.bin

Flags:
`

func runParse(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("parse", parseHelp, stdout)
	var lf listFlags
	lf.register(fs.FlagSet)
	format := fs.String("format", "ascii", "output: ascii, binary or json")
	posArgs, code, ok := fs.parse(args, true, stderr)
	if !ok {
		return code
	}
	usageErr := func(format string, a ...any) int { return usageErr(stderr, "parse", format, a...) }
	if len(posArgs) != 1 {
		return usageErr("want exactly one LOG, got %d arguments", len(posArgs))
	}
	switch *format {
	case "ascii", "binary", "json":
	default:
		return usageErr("--format %q: want ascii, binary or json", *format)
	}
	opts, err := lf.options()
	if err != nil {
		return usageErr("%v", err)
	}
	in, br, opts, hint, err := openListAs(posArgs[0], &lf, opts)
	if err != nil {
		return usageErr("%v", err)
	}
	defer in.Close()
	rd, err := eventlog.NewReader(br, opts)
	if err != nil {
		return usageErr("%v", err)
	}
	order := opts.Order
	w := bufio.NewWriterSize(stdout, 64<<10)
	fail := func(err error) int {
		if *format == "json" { // what was read stays valid JSON
			w.WriteString("\n]\n")
		}
		w.Flush()
		if hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		fmt.Fprintf(stderr, "imasim parse: %s: %v\n", posArgs[0], err)
		return exitFail
	}
	if *format == "json" {
		w.WriteString("[")
	}
	var buf []byte
	for n := 0; ; n++ {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		e, err := r.Entry()
		if err != nil {
			return fail(err)
		}
		buf = buf[:0]
		switch *format {
		case "ascii":
			buf, err = e.AppendASCII(buf, 0, order)
		case "binary":
			buf, err = e.AppendBinary(buf, 0, order)
		case "json":
			buf, err = appendJSON(buf, n, r, e, order)
		}
		if err != nil {
			return fail(fmt.Errorf("record %d at offset %d: %w", r.Index, r.Offset, err))
		}
		if _, err := w.Write(buf); err != nil {
			return fail(err)
		}
	}
	if *format == "json" {
		w.WriteString("\n]\n")
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	return 0
}

// jsonRecord is the JSON form of one record.
type jsonRecord struct {
	Index          int         `json:"index"`
	Offset         int64       `json:"offset"`
	PCR            uint32      `json:"pcr"`
	TemplateDigest string      `json:"template_digest"`
	Template       string      `json:"template"`
	Violation      bool        `json:"violation,omitempty"`
	Fields         []jsonField `json:"fields"`
}

type jsonField struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// appendJSON appends record n of a JSON array, one record a line: the
// separator (none before the first), a newline and the object.
func appendJSON(dst []byte, n int, r *eventlog.Record, e *template.Entry, order template.Order) ([]byte, error) {
	if n > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, '\n')
	jr := jsonRecord{
		Index:          r.Index,
		Offset:         r.Offset,
		PCR:            r.PCR,
		TemplateDigest: r.ColumnAlg().String() + ":" + hex.EncodeToString(r.Digest),
		Template:       e.Desc.DisplayName(),
		Violation:      r.Violation(),
		Fields:         []jsonField{},
	}
	for i, f := range e.Fields {
		v := template.AppendFieldASCII(nil, e.Desc.Field(i), f, order)
		jr.Fields = append(jr.Fields, jsonField{ID: e.Desc.Field(i).String(), Value: string(v)})
	}
	b, err := json.Marshal(jr)
	return append(dst, b...), err
}
