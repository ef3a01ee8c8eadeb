package template

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/imasim/imasim/tpmext"
)

// sampleRecords returns three little-endian SHA-1 records: ima-ng, the
// legacy ima template and a custom format.
func sampleRecords(t testing.TB) [][]byte {
	t.Helper()
	l := mustLayout(t, sha1Only, HashSHA1, LittleEndian)
	var recs [][]byte
	add := func(desc *Descriptor, ev *Event) {
		e, err := l.NewEntry(desc, 10, ev)
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.AppendBinary(nil, 0, LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, b)
	}
	ev, err := NewFileEvent("/usr/bin/dd", &File{Content: []byte("dd"), UID: 0, Mode: 0o100755}, HashSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	add(IMANG, ev)
	ev1, err := NewFileEvent("/usr/bin/kmod", &File{}, HashSHA1, HashSHA1.Sum([]byte("kmod")))
	if err != nil {
		t.Fatal(err)
	}
	add(IMA, ev1)
	custom, err := ParseFmt("d-ng|n-ng|iuid|imode")
	if err != nil {
		t.Fatal(err)
	}
	add(custom, ev)
	return recs
}

func TestDecodeRoundTripSamples(t *testing.T) {
	recs := sampleRecords(t)
	list := bytes.Join(recs, nil)
	entries, err := DecodeAll(list, DecodeOptions{DigestSize: 20, Alg: tpmext.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || entries[0].Desc != IMANG || entries[1].Desc != IMA || entries[2].Desc.Name() != "" {
		t.Fatalf("decoded %d entries: %v", len(entries), entries)
	}
	if got := string(entries[1].Fields[1]); got != "/usr/bin/kmod\x00" {
		t.Errorf("legacy n field %q, want the name with its NUL", got)
	}
	if entries[0].Digests[0].Alg != tpmext.SHA1 {
		t.Errorf("digest alg %v", entries[0].Digests[0].Alg)
	}
	for i, e := range entries {
		b, err := e.AppendBinary(nil, 0, LittleEndian)
		if err != nil || !bytes.Equal(b, recs[i]) {
			t.Errorf("record %d re-encodes to %x, want %x", i, b, recs[i])
		}
		if e.BinarySize(20) != len(recs[i]) {
			t.Errorf("record %d: BinarySize %d, want %d", i, e.BinarySize(20), len(recs[i]))
		}
		d, err := e.TemplateDigest(HashSHA1, LittleEndian)
		if err != nil || !bytes.Equal(d, e.Digests[0].Value) {
			t.Errorf("record %d: template digest %x, list %x", i, d, e.Digests[0].Value)
		}
	}
	// The decoded entries do not alias the input.
	clear(list)
	if string(entries[0].Fields[1]) != "/usr/bin/dd\x00" {
		t.Error("decoded entry shares memory with the input")
	}
}

// patch returns a copy of b with v written as a little-endian u32 at off.
func patch(b []byte, off int, v uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[off:], v)
	return b
}

func TestDecodeErrors(t *testing.T) {
	recs := sampleRecords(t)
	first := recs[0] // index 0, a valid ima-ng record in front of the bad one
	ng := recs[0]    // pcr 0, digest 4, name len 24, name 28 "ima-ng", data len 34, data 38
	const (
		nameLenAt = 24
		nameAt    = 28
		dataLenAt = 34
		dataAt    = 38
	)
	f0len := int(binary.LittleEndian.Uint32(ng[dataAt:]))
	dataLen := int(binary.LittleEndian.Uint32(ng[dataLenAt:]))
	legacy := recs[1] // pcr, digest, 03000000 "ima" at 28, d at 31, n len at 51, n at 55
	base := len(first)

	// rename returns ng with its 6-byte name replaced.
	rename := func(name string) []byte {
		b := bytes.Clone(ng)
		copy(b[nameAt:], name)
		return b
	}
	// withData returns ng with its template data replaced.
	withData := func(data []byte) []byte {
		b := bytes.Clone(ng[:dataAt])
		binary.LittleEndian.PutUint32(b[dataLenAt:], uint32(len(data)))
		return append(b, data...)
	}
	data := ng[dataAt:]
	// framed returns a record named name with ng's template data, framed
	// as a kexec restore reads every record.
	framed := func(name string) []byte {
		b := bytes.Clone(ng[:nameLenAt])
		b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
		b = append(b, name...)
		return append(b, ng[dataLenAt:]...)
	}
	tests := []struct {
		name   string
		rec    []byte
		opts   DecodeOptions
		offset int // from the start of the bad record
		is     error
		text   string
	}{
		{"truncated in the PCR", ng[:2], DecodeOptions{}, 0, ErrTruncated, "PCR needs 4 bytes, 2 remain"},
		{"truncated in the digest", ng[:10], DecodeOptions{}, 4, ErrTruncated, "template digest needs 20 bytes, 6 remain"},
		{"truncated in the name length", ng[:26], DecodeOptions{}, nameLenAt, ErrTruncated, "template name length needs 4 bytes, 2 remain"},
		{"truncated in the name", ng[:30], DecodeOptions{}, nameAt, ErrTruncated, "template name needs 6 bytes, 2 remain"},
		{"truncated in the data length", ng[:36], DecodeOptions{}, dataLenAt, ErrTruncated, "template data length needs 4 bytes, 2 remain"},
		{"truncated in the data", ng[:50], DecodeOptions{}, dataAt, ErrTruncated, "template data needs"},
		{"name longer than evmctl accepts", patch(ng, nameLenAt, 256), DecodeOptions{}, nameLenAt, ErrNameTooLong, "template name length 256 exceeds 255"},
		{"name over a caller's limit", patch(ng, nameLenAt, 7), DecodeOptions{MaxNameLen: 6}, nameLenAt, ErrNameTooLong, "template name length 7 exceeds 6"},
		{"name length 0xffffffff", patch(ng, nameLenAt, 0xffffffff), DecodeOptions{}, nameLenAt, ErrNameTooLong, "4294967295"},
		{"empty name", patch(ng, nameLenAt, 0), DecodeOptions{}, nameLenAt, ErrUnknownTemplate, "empty template name"},
		{"unknown template", rename("ima-xx"), DecodeOptions{}, nameAt, ErrUnknownTemplate, `field "ima-xx": field not found`},
		{"data length over 2 GiB", patch(ng, dataLenAt, 0xfffffff0), DecodeOptions{}, dataLenAt, ErrTemplateData, "template data length 4294967280 exceeds"},
		{"data length past the end", patch(ng, dataLenAt, 1000), DecodeOptions{}, dataAt, ErrTruncated, "template data needs 1000 bytes"},
		{"field length past the data", withData(patch(data, 0, 1000)), DecodeOptions{}, dataAt, ErrTemplateData, "field 0 (d-ng) length 1000 exceeds"},
		{"one field only", withData(data[:4+f0len]), DecodeOptions{}, dataAt + 4 + f0len, ErrTemplateData, "template data holds 1 of the 2 fields of ima-ng"},
		{"no field", withData(nil), DecodeOptions{}, dataAt, ErrTemplateData, "holds 0 of the 2 fields"},
		{"half a length", withData(append(bytes.Clone(data[:4+f0len]), 1, 0)), DecodeOptions{}, dataAt + 4 + f0len, ErrTemplateData, "holds 1 of the 2"},
		{"bytes after the fields", withData(append(bytes.Clone(data), 1, 2, 3)), DecodeOptions{}, dataAt + dataLen, ErrTemplateData, "3 bytes after the 2 fields of ima-ng"},
		{"legacy: truncated d", legacy[:40], DecodeOptions{}, 31, ErrTruncated, "ima d field needs 20 bytes, 9 remain"},
		{"legacy: n over 255", patch(legacy, 51, 256), DecodeOptions{}, 51, ErrTemplateData, "ima n field length 256 exceeds 255"},
		{"legacy: truncated n", legacy[:len(legacy)-1], DecodeOptions{}, 55, ErrTruncated, "ima n field needs"},
		{"legacy: n with NUL", func() []byte { b := bytes.Clone(legacy); b[56] = 0; return b }(), DecodeOptions{}, 55, ErrTemplateData, "contains NUL"},
		{"data length over the cap", patch(ng, dataLenAt, MaxTemplateDataLen+1), DecodeOptions{}, dataLenAt, ErrTemplateData, "exceeds the cap of 16777216 bytes"},
		{"data length over a caller's cap", patch(ng, dataLenAt, uint32(dataLen+1)), DecodeOptions{MaxDataLen: dataLen}, dataLenAt, ErrTemplateData, "exceeds the cap"},
		{"restore: ima refused", framed("ima"), DecodeOptions{Restore: true}, nameAt, ErrUnsupportedTemplate, `"ima" cannot be restored`},
		// ima_parse_buf() frames the header generically before the name
		// is looked at: the legacy layout reads d as a data length.
		{"restore: legacy layout", legacy, DecodeOptions{Restore: true}, 35, ErrTruncated, "template data needs"},
		{"restore: name of 69 bytes", framed(strings.Repeat("x", 69)), DecodeOptions{Restore: true}, nameLenAt, ErrNameTooLong, "length 69 exceeds 68"},
		{"restore: name of 69 bytes, truncated", patch(ng, nameLenAt, 69), DecodeOptions{Restore: true}, nameLenAt + 4 + 69, ErrTruncated, "template data length needs 4 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.DigestSize == 0 {
				tc.opts.DigestSize = 20
			}
			list := append(bytes.Clone(first), tc.rec...)
			entries, err := DecodeAll(list, tc.opts)
			checkDecodeErr(t, "DecodeAll", err, base+tc.offset, tc.is, tc.text)
			if len(entries) != 1 {
				t.Errorf("DecodeAll returned %d records before the error, want 1", len(entries))
			}
			dec, err := NewDecoder(iotest.OneByteReader(bytes.NewReader(list)), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dec.Next(); err != nil {
				t.Fatalf("stream: first record: %v", err)
			}
			_, err = dec.Next()
			checkDecodeErr(t, "Decoder", err, base+tc.offset, tc.is, tc.text)
			if _, again := dec.Next(); again != err {
				t.Errorf("Decoder: after an error Next returns %v, want the same error", again)
			}
		})
	}
}

// checkDecodeErr checks an error for the second record (index 1), which
// starts right after the first one.
func checkDecodeErr(t *testing.T, who string, err error, off int, is error, text string) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("%s: error %v is not a *DecodeError", who, err)
	}
	if de.Index != 1 || de.Offset != int64(off) || de.RecordOffset <= 0 || de.RecordOffset > de.Offset {
		t.Errorf("%s: error at record %d offset %d (record at %d) (%v), want record 1 offset %d", who, de.Index, de.Offset, de.RecordOffset, err, off)
	}
	if !errors.Is(err, is) {
		t.Errorf("%s: %v does not wrap %v", who, err, is)
	}
	if !strings.Contains(err.Error(), text) || !strings.HasPrefix(err.Error(), "record ") {
		t.Errorf("%s: %q does not contain %q", who, err, text)
	}
}

func TestDecodeRestore(t *testing.T) {
	recs := sampleRecords(t)
	// A custom record whose name is a builtin's fmt: kept custom by
	// default, resolved to the builtin by a restore.
	l := mustLayout(t, sha1Only, HashSHA1, LittleEndian)
	custom, _ := TemplateFmtSetup("d-ng|n-ng")
	ev, _ := NewFileEvent("/x", &File{Content: []byte("x")}, HashSHA256, nil)
	e, err := l.NewEntry(custom, 10, ev)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := e.AppendBinary(nil, 0, LittleEndian)
	if !bytes.Contains(rec, []byte("d-ng|n-ng")) {
		t.Fatal("custom record does not carry its fmt")
	}
	plain, err := DecodeAll(rec, DecodeOptions{DigestSize: 20})
	if err != nil || plain[0].Desc.Name() != "" || plain[0].Desc.DisplayName() != "d-ng|n-ng" {
		t.Fatalf("plain decode: %v %v", plain, err)
	}
	restored, err := DecodeAll(append(rec, recs[2]...), DecodeOptions{DigestSize: 20, Restore: true})
	if err != nil || restored[0].Desc != IMANG || restored[1].Desc.Name() != "" {
		t.Fatalf("restore decode: %v %v", restored, err)
	}
	// "d|n" resolves to the legacy ima template in a restore.
	dn, _ := ParseFmt("d|n")
	ev1, _ := NewFileEvent("/k", &File{}, HashSHA1, HashSHA1.Sum(nil))
	e1, err := l.NewEntry(dn, 10, ev1)
	if err != nil {
		t.Fatal(err)
	}
	rec1, _ := e1.AppendBinary(nil, 0, LittleEndian)
	r1, err := DecodeAll(rec1, DecodeOptions{DigestSize: 20, Restore: true})
	if err != nil || r1[0].Desc != IMA {
		t.Fatalf("restore of d|n: %v %v", r1, err)
	}

	// RestoreEntry recomputes every slot, or keeps zeros for a violation.
	l4 := mustLayout(t, tpmext.DefaultBanks(), HashSHA256, LittleEndian)
	r, err := l4.RestoreEntry(restored[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Digests) != 4 || r.Violation || !bytes.Equal(r.Digests[0].Value, restored[1].Digests[0].Value) {
		t.Errorf("restored entry: %d digests, violation %v", len(r.Digests), r.Violation)
	}
	want, _ := restored[1].TemplateDigest(HashSHA512, LittleEndian)
	if !bytes.Equal(r.Digests[3].Value, want) {
		t.Error("restored sha512 slot not recomputed")
	}
	zero := &Entry{PCR: 10, Desc: IMANG, Fields: restored[0].Fields, Digests: []tpmext.Digest{{Value: make([]byte, 20)}}}
	r, err = l4.RestoreEntry(zero)
	if err != nil || !r.Violation {
		t.Fatalf("zero digest: %v, violation %v", err, r.Violation)
	}
	for _, d := range r.Digests {
		if !allZero(d.Value) {
			t.Errorf("violation slot %x", d.Value)
		}
	}
	if _, err := l4.RestoreEntry(r); err == nil {
		t.Error("RestoreEntry accepted an entry with 4 digests")
	}
}

func TestDecodeOptionsChecked(t *testing.T) {
	for _, o := range []DecodeOptions{
		{DigestSize: 0}, {DigestSize: 65}, {DigestSize: 20, Order: 3}, {DigestSize: 20, MaxNameLen: -1},
	} {
		if _, err := DecodeAll(nil, o); err == nil {
			t.Errorf("DecodeAll accepted %+v", o)
		}
		if _, err := NewDecoder(bytes.NewReader(nil), o); err == nil {
			t.Errorf("NewDecoder accepted %+v", o)
		}
	}
	if es, err := DecodeAll(nil, DecodeOptions{DigestSize: 20}); err != nil || len(es) != 0 {
		t.Errorf("empty list: %v %v", es, err)
	}
	dec, _ := NewDecoder(bytes.NewReader(nil), DecodeOptions{DigestSize: 20})
	if _, err := dec.Next(); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

// TestDecoderBoundedAllocation: a length field claiming 2 GiB is refused
// at the cap without reading on; with the cap raised past it, it costs the
// stream decoder no more than the bytes that actually arrive.
func TestDecoderBoundedAllocation(t *testing.T) {
	ng := sampleRecords(t)[0]
	rec := append(patch(ng, 34, 0x7fffff00), make([]byte, 1000)...)
	for _, tc := range []struct {
		opts DecodeOptions
		is   error
	}{
		{DecodeOptions{DigestSize: 20}, ErrTemplateData},
		{DecodeOptions{DigestSize: 20, MaxDataLen: 1 << 31}, ErrTruncated},
		{DecodeOptions{DigestSize: 20, Restore: true}, ErrTruncated},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		dec, err := NewDecoder(bytes.NewReader(rec), tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dec.Next()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, tc.is) {
			t.Fatalf("%+v: err = %v, want %v", tc.opts, err, tc.is)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("%+v: decoder allocated %d bytes for a %d-byte input", tc.opts, grew, len(rec))
		}
	}
}

// TestDecoderReaderError: a failing reader's error is kept.
func TestDecoderReaderError(t *testing.T) {
	ng := sampleRecords(t)[0]
	boom := errors.New("boom")
	dec, _ := NewDecoder(io.MultiReader(bytes.NewReader(ng[:30]), iotest.ErrReader(boom)), DecodeOptions{DigestSize: 20})
	_, err := dec.Next()
	var de *DecodeError
	if !errors.Is(err, boom) || !errors.As(err, &de) || de.Index != 0 || de.Offset != 28 {
		t.Errorf("err = %v, want boom at record 0 offset 28", err)
	}
}

// TestDecodeErrorNamesRecordStart: an error inside a record names the
// wrong item's offset and the record's start.
func TestDecodeErrorNamesRecordStart(t *testing.T) {
	e := &DecodeError{Index: 3, Offset: 250, RecordOffset: 212, Err: ErrTruncated}
	if got, want := e.Error(), "record 3 at offset 250 (the record starts at offset 212): truncated record"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e = &DecodeError{Index: 3, Offset: 212, RecordOffset: 212, Err: ErrTruncated}
	if got, want := e.Error(), "record 3 at offset 212: truncated record"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
