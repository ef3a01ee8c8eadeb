package scenario

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
)

// fileKind says how a file's contents are printed.
type fileKind struct {
	binary bool // a binary_runtime_measurements* list file
	slot   int  // its digest slot
}

// kindOf resolves name (following the directory's symlinks) and tells
// whether it is a binary list file, and which slot's digests it shows.
// ASCII list files and counter files print as they read.
func kindOf(k *ima.Kernel, name string) fileKind {
	entries := map[string]staging.DirEntry{}
	for _, e := range k.SecurityFS().ReadDir() {
		entries[e.Name] = e
	}
	if e, ok := entries[name]; ok && e.Target != "" {
		name = e.Target
	}
	rest, ok := strings.CutPrefix(name, staging.BinaryRuntimeMeasurements+"_")
	if !ok {
		return fileKind{}
	}
	rest = strings.TrimSuffix(rest, "_staged")
	for _, lf := range k.Layout().ListFiles() {
		if lf.Suffix == rest {
			return fileKind{binary: true, slot: lf.Slot}
		}
	}
	return fileKind{}
}

// render prints data read from a file of kind fk. Text prints as it is.
// A binary list prints one line per record, "PCR TEMPLATE NAME", with
// " (violation)" when the template digest is all zeros: readable, and
// fixed by the kernel's configuration and the script alone.
func render(w io.Writer, k *ima.Kernel, fk fileKind, data []byte) {
	if !fk.binary {
		w.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			io.WriteString(w, "\n")
		}
		return
	}
	lay := k.Layout()
	d, err := template.NewDecoder(bytes.NewReader(data), template.DecodeOptions{
		Order: lay.Order(), DigestSize: lay.Slot(fk.slot).Size,
	})
	if err != nil {
		fmt.Fprintf(w, "(cannot decode: %v)\n", err)
		return
	}
	for {
		done := d.Offset()
		e, err := d.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Fprintf(w, "(%d bytes that are not a whole record: %v)\n", int64(len(data))-done, err)
			return
		}
		fmt.Fprintln(w, recordLine(e))
	}
}

// recordLine is "PCR TEMPLATE NAME" for a decoded record.
func recordLine(e *template.Entry) string {
	name := "-"
	for i, f := range e.Desc.Fields() {
		if f == template.FieldN || f == template.FieldNNG {
			n := e.Fields[i]
			if j := bytes.IndexByte(n, 0); j >= 0 {
				n = n[:j]
			}
			name = string(n)
			break
		}
	}
	line := fmt.Sprintf("%d %s %s", e.PCR, e.Desc.DisplayName(), name)
	if len(e.Digests) > 0 && allZero(e.Digests[0].Value) {
		line += " (violation)"
	}
	return line
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
