package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// kernelList builds a list as a kernel with the given banks would, with
// records of several templates, and returns each bank's binary and ASCII
// files.
func evKernelList(t *testing.T, banks []tpmext.Algorithm, order template.Order) (bin, ascii map[tpmext.Algorithm][]byte) {
	t.Helper()
	layout, err := template.NewLayout(banks, template.HashSHA256, order)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := tpmext.PCRValues{}
	for _, b := range banks {
		pcrs[b] = make([][]byte, tpmext.NumPCRs)
		for i := range pcrs[b] {
			pcrs[b][i] = make([]byte, b.Size())
		}
	}
	var entries []*template.Entry
	add := func(e *template.Entry, err error) {
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	add(layout.NewBootAggregate(template.IMASig, 10, pcrs))
	for i, d := range template.Builtins()[1:] {
		f := &template.File{Content: []byte{byte(i)}, UID: 1000, GID: 100, Mode: 0o100755,
			EVMXattr: []byte{template.XattrPortableDigsig, 1, 2}, Xattrs: []template.Xattr{{Name: "security.evm", Value: []byte{5, 1, 2}}}}
		ev, err := template.NewFileEvent("/bin/prog-"+d.Name(), f, template.HashSHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		add(layout.NewEntry(d, uint32(8+i%3), ev))
	}
	add(layout.NewEntry(template.IMANG, 10, template.NewViolationEvent("/tmp/x", nil, "ToMToU")))
	add(layout.NewEntry(template.IMABuf, 10, layout.BufferEvent("kernel_version", []byte("7.2.0"), false)))
	bin, ascii = map[tpmext.Algorithm][]byte{}, map[tpmext.Algorithm][]byte{}
	for i := 0; i < layout.NumSlots(); i++ {
		s := layout.Slot(i)
		for _, e := range entries {
			bin[s.Bank], _ = e.AppendBinary(bin[s.Bank], i, order)
			ascii[s.Bank], _ = e.AppendASCII(ascii[s.Bank], i, order)
		}
	}
	return bin, ascii
}

// TestParseMatchesKernelFiles: the ASCII output of each bank's binary file
// is that bank's ASCII file, byte for byte; binary re-encodes.
func TestParseMatchesKernelFiles(t *testing.T) {
	dir := t.TempDir()
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512}
	for _, order := range []template.Order{template.LittleEndian, template.BigEndian} {
		bin, ascii := evKernelList(t, banks, order)
		for _, b := range banks {
			f := evWriteFile(t, dir, b.String()+order.String(), bin[b])
			args := []string{"parse", "--digest-len", string(rune('0'+b.Size()/10)) + string(rune('0'+b.Size()%10)), f}
			if order == template.BigEndian {
				args = append(args, "--big-endian")
			}
			rc, out, errs := evCmd(args...)
			if rc != 0 || out != string(ascii[b]) {
				t.Errorf("%v %v: rc %d %q\ngot:\n%s\nwant:\n%s", order, b, rc, errs, out, ascii[b])
			}
			rc, out, _ = evCmd(append(args, "--format", "binary")...)
			if rc != 0 || out != string(bin[b]) {
				t.Errorf("%v %v: binary output differs", order, b)
			}
			af := evWriteFile(t, dir, b.String()+order.String()+".txt", ascii[b])
			aargs := []string{"parse", "--ascii", "--format", "binary", af}
			if order == template.BigEndian {
				aargs = append(aargs, "--big-endian")
			}
			rc, out, errs = evCmd(aargs...)
			if rc != 0 || out != string(bin[b]) {
				t.Errorf("%v %v: ASCII to binary: rc %d %q", order, b, rc, errs)
			}
		}
	}
}

func TestParseIBMTSS(t *testing.T) {
	for _, c := range []struct {
		file  string
		flags []string
	}{{evIBMSHA1, nil}, {evIBMSHA2, []string{"--digest-len", "32"}}} {
		rc, out, _ := evCmd(append(append([]string{"parse", "--format", "binary"}, c.flags...), c.file)...)
		if rc != 0 || out != string(evReadFile(t, c.file)) {
			t.Errorf("%s: binary output differs from the input", c.file)
		}
		rc, out, errs := evCmd(append(append([]string{"parse", "--format", "json"}, c.flags...), c.file)...)
		var recs []jsonRecord
		if err := json.Unmarshal([]byte(out), &recs); rc != 0 || err != nil || len(recs) != 362 {
			t.Fatalf("%s: json: rc %d, %v, %d records (%s)", c.file, rc, err, len(recs), errs)
		}
		r := recs[0]
		if r.Template != "ima-sig" || r.PCR != 10 || len(r.Fields) != 3 || r.Fields[1] != (jsonField{"n-ng", "boot_aggregate"}) ||
			!strings.HasPrefix(r.Fields[0].Value, "sha256:8c84a951") || r.Fields[2].Value != "" || recs[1].Offset == 0 {
			t.Errorf("%s: first record %+v", c.file, r)
		}
		if want := "sha1:06685e8b1f967c606ea19e87c0d360877410bbf5"; c.flags == nil && r.TemplateDigest != want {
			t.Errorf("template digest %q, want %q", r.TemplateDigest, want)
		}
	}
	// The first ASCII line, as published for this list.
	rc, out, _ := evCmd("parse", evIBMSHA1)
	want := "10 06685e8b1f967c606ea19e87c0d360877410bbf5 ima-sig sha256:8c84a9518e30ce8b12c9c54f54d805808551efccb15728c9453343a802ef5257 boot_aggregate \n"
	if rc != 0 || !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 362 {
		t.Errorf("ASCII output starts %q", out[:min(len(out), 200)])
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	data := evReadFile(t, evIBMSHA1)
	cut := evWriteFile(t, dir, "cut", data[:len(data)-10])
	rc, out, errs := evCmd("parse", cut)
	if rc != 1 || strings.Count(out, "\n") != 361 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "record 361 at offset") {
		t.Errorf("truncated: rc %d, %d lines, %q", rc, strings.Count(out, "\n"), errs)
	}
	// JSON output stays valid: the records before the torn one.
	rc, out, errs = evCmd("parse", "--format", "json", cut)
	var recs []jsonRecord
	if err := json.Unmarshal([]byte(out), &recs); rc != 1 || err != nil || len(recs) != 361 || !strings.Contains(errs, "record 361 at offset") {
		t.Errorf("truncated, JSON: rc %d, %d records, %v, %q", rc, len(recs), err, errs)
	}
	for _, args := range [][]string{{"parse"}, {"parse", "--format", "xml", evIBMSHA1}, {"parse", "--digest-len", "7", evIBMSHA1}, {"parse", "a", "b"}, {"parse", "/nonexistent"}} {
		if rc, _, errs := evCmd(args...); rc != 2 || errs == "" {
			t.Errorf("%v: rc %d %q", args, rc, errs)
		}
	}
	if rc, out, _ := evCmd("parse", "-h"); rc != 0 || !strings.Contains(out, "usage: imasim parse") {
		t.Errorf("-h: rc %d", rc)
	}
	// Standard input.
	old := os.Stdin
	f, _ := os.Open(evIBMSHA1)
	os.Stdin = f
	rc, out, _ = evCmd("parse", "--format", "binary", "-")
	os.Stdin = old
	f.Close()
	if rc != 0 || !bytes.Equal([]byte(out), data) {
		t.Errorf("stdin: rc %d", rc)
	}
}
