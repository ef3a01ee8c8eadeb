package template

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

var fuzzWidths = [4]int{20, 32, 48, 64}

// fuzzOptions derives decode options from a selector byte: bit 0 the byte
// order, bits 1-2 the digest width, bit 3 the restore rules.
func fuzzOptions(sel byte) DecodeOptions {
	o := DecodeOptions{DigestSize: fuzzWidths[(sel>>1)&3], Restore: sel&8 != 0}
	if sel&1 != 0 {
		o.Order = BigEndian
	}
	return o
}

func fuzzSelector(o Order, width int) byte {
	s := byte(0)
	if o == BigEndian {
		s = 1
	}
	for i, w := range fuzzWidths {
		if w == width {
			s |= byte(i) << 1
		}
	}
	return s
}

// fuzzSeeds returns real records in every byte order and width: the first
// records of the IBM lists, re-rendered big-endian and with 48- and
// 64-byte columns, and the sample legacy and custom records.
type fuzzSeed struct {
	data []byte
	sel  byte
}

func fuzzSeeds(t testing.TB) []fuzzSeed {
	var seeds []fuzzSeed
	add := func(b []byte, o Order, width int) {
		seeds = append(seeds, fuzzSeed{b, fuzzSelector(o, width)})
	}
	l := mustLayout(t, tpmext.DefaultBanks(), HashSHA256, LittleEndian)
	for _, f := range []string{ibmSHA1, ibmSHA256} {
		width := 20
		if f == ibmSHA256 {
			width = 32
		}
		entries, err := DecodeAll(readFile(t, f), DecodeOptions{DigestSize: width})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range entries[:4] {
			b, _ := rec.AppendBinary(nil, 0, LittleEndian)
			add(b, LittleEndian, width)
			b, _ = rec.AppendBinary(nil, 0, BigEndian)
			add(b, BigEndian, width)
		}
		e, err := l.RestoreEntry(entries[1])
		if err != nil {
			t.Fatal(err)
		}
		for slot, width := range []int{48, 64} {
			b, _ := e.AppendBinary(nil, 2+slot, LittleEndian)
			add(b, LittleEndian, width)
		}
	}
	for _, r := range sampleRecords(t) {
		add(r, LittleEndian, 20)
	}
	add(bytes.Join(sampleRecords(t), nil), LittleEndian, 20)
	return seeds
}

// FuzzDecodeBinary: whatever decodes re-encodes to the same bytes, and the
// slice and stream decoders agree, for both byte orders and every width.
func FuzzDecodeBinary(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.data, s.sel)
	}
	f.Fuzz(func(t *testing.T, data []byte, sel byte) {
		opts := fuzzOptions(sel)
		entries, err := DecodeAll(data, opts)
		consumed := len(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			if de.Index != len(entries) || de.Offset < de.RecordOffset || de.Offset > int64(len(data)) {
				t.Fatalf("error %v (record offset %d) after %d records", err, de.RecordOffset, len(entries))
			}
			consumed = int(de.RecordOffset)
		}
		var out []byte
		for _, e := range entries {
			if out, err = e.AppendBinary(out, 0, opts.Order); err != nil {
				t.Fatal(err)
			}
			line, err := e.AppendASCII(nil, 0, opts.Order)
			if err != nil || !bytes.HasSuffix(line, []byte("\n")) {
				t.Fatalf("ASCII %q: %v", line, err)
			}
			if _, err := e.TemplateDigest(HashSHA1, opts.Order); err != nil {
				t.Fatal(err)
			}
			if e.BinarySize(opts.DigestSize) < 4+opts.DigestSize+4 {
				t.Fatal("BinarySize too small")
			}
		}
		if !opts.Restore && !bytes.Equal(out, data[:consumed]) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", out, data[:consumed])
		}

		dec, err := NewDecoder(bytes.NewReader(data), opts)
		if err != nil {
			t.Fatal(err)
		}
		var again []byte
		n := 0
		for {
			e, err := dec.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) || de.Index != len(entries) || de.RecordOffset != int64(consumed) {
					t.Fatalf("stream error %v, slice decoder stopped after %d records at %d", err, len(entries), consumed)
				}
				break
			}
			n++
			again, _ = e.AppendBinary(again, 0, opts.Order)
		}
		if n != len(entries) || !bytes.Equal(again, out) {
			t.Fatalf("stream decoded %d records, slice %d", n, len(entries))
		}
	})
}

// FuzzASCII: rendering any field bytes under any valid format never panics
// and keeps the line's shape; the binary record of such an entry decodes
// back to it.
func FuzzASCII(f *testing.F) {
	f.Add("d-ng|n-ng", []byte("\x0esha256:\x00abcd\x03/x\x00"), uint32(10), false)
	f.Add("d-ng|n-ng|sig|d-modsig|modsig", []byte("\x05sha1:\x02\x00\x00\x00\x00"), uint32(8), true)
	f.Add("evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode", []byte("\x00\x02a\x00\x04\x01\x02\x03\x04\x01z\x04\xff\xff\xff\xff\x02\xa4\x81"), uint32(0xffffffff), false)
	f.Add("d|n", []byte("\x14aaaaaaaaaaaaaaaaaaaa\x05/bin\x00"), uint32(10), false)
	f.Add("d-ngv2|n-ng", []byte("\x0bverity:sm3:\x01:"), uint32(11), true)
	f.Fuzz(func(t *testing.T, format string, data []byte, pcr uint32, bigEndian bool) {
		desc, err := ParseFmt(format)
		if err != nil {
			return
		}
		if format == "d|n" && pcr%2 == 0 {
			desc = IMA // exercise the legacy layout too
		}
		o := LittleEndian
		if bigEndian {
			o = BigEndian
		}
		// Split data into the fields: a length byte, then that many bytes.
		e := &Entry{PCR: pcr, Desc: desc, Digests: []tpmext.Digest{{Value: HashSHA1.Sum(data)}}}
		for i := 0; i < desc.NumFields(); i++ {
			var fl []byte
			if len(data) > 0 {
				n := min(int(data[0]), len(data)-1)
				fl, data = data[1:1+n], data[1+n:]
			}
			e.Fields = append(e.Fields, fl)
		}
		line, err := e.AppendASCII(nil, 0, o)
		if err != nil {
			t.Fatal(err)
		}
		prefix := strconv.FormatInt(int64(int32(pcr)), 10)
		if !strings.HasPrefix(strings.TrimLeft(string(line), " "), prefix+" ") || line[len(line)-1] != '\n' {
			t.Fatalf("line %q", line)
		}
		if got := strings.Count(string(line), " "); got < 2+desc.NumFields() {
			t.Fatalf("line %q has %d spaces for %d fields", line, got, desc.NumFields())
		}
		if _, err := e.TemplateDigest(HashSHA256, o); err != nil {
			t.Fatal(err)
		}

		rec, err := e.AppendBinary(nil, 0, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec) != e.BinarySize(20) {
			t.Fatalf("record of %d bytes, BinarySize %d", len(rec), e.BinarySize(20))
		}
		back, err := DecodeAll(rec, DecodeOptions{Order: o, DigestSize: 20})
		if desc.IsIMA() && (len(e.Fields[0]) != 20 || len(e.Fields[1]) > 255 || bytes.IndexByte(e.Fields[1], 0) >= 0) {
			return // the legacy layout cannot carry these; decoding refuses or differs
		}
		if err != nil || len(back) != 1 {
			t.Fatalf("decode of %x: %v", rec, err)
		}
		wantFields := e.Fields
		if desc.IsIMA() {
			wantFields = [][]byte{e.Fields[0], append(bytes.Clone(e.Fields[1]), 0)}
		}
		for i := range wantFields {
			if !bytes.Equal(back[0].Fields[i], wantFields[i]) {
				t.Fatalf("field %d: decoded %x, want %x", i, back[0].Fields[i], wantFields[i])
			}
		}
	})
}
