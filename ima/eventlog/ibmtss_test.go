package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// The IBM TSS sample lists (kgoldman/ibmtss utils/, BSD-3-Clause, see
// testdata/ibmtss/LICENSE at the module root): 362 ima-sig records with a
// SHA-1 (sha1.log) and a SHA-256 (sha256.log) column, and PCR 10 of four
// banks after all of them (imakvtpcr10.txt).
const (
	ibmDir   = "../../testdata/ibmtss/"
	ibmSHA1  = ibmDir + "sha1.log"
	ibmSHA2  = ibmDir + "sha256.log"
	ibmPCR10 = ibmDir + "imakvtpcr10.txt"
	ibmCount = 362
)

var allBanks = []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ibmExpected returns PCR 10 of the given banks from imakvtpcr10.txt.
func ibmExpected(t testing.TB, banks ...tpmext.Algorithm) Expected {
	t.Helper()
	want := Expected{}
	for _, b := range banks {
		vals, err := ParsePCRFile(bytes.NewReader(readFile(t, ibmPCR10)), b)
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) != 1 || vals[10] == nil {
			t.Fatalf("imakvtpcr10.txt gives %d values for %v, want PCR 10 only", len(vals), b)
		}
		want[b] = map[int][]byte{10: vals[10]}
	}
	return want
}

var ibmLists = []struct {
	file string
	opts Options
}{
	{ibmSHA1, Options{}},
	{ibmSHA2, Options{DigestSize: 32}},
}

func mustParse(t testing.TB, data []byte, opts Options) *EventLog {
	t.Helper()
	l, err := ParseEventLog(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// verifyBoth verifies data with an EventLog and with a Reader and checks
// that both give the same result, which it returns.
func verifyBoth(t testing.TB, data []byte, opts Options, want Expected, ropts ReplayOptions) (*State, error) {
	t.Helper()
	var st1 *State
	l, err1 := ParseEventLog(data, opts)
	if err1 == nil {
		st1, err1 = l.Verify(want, ropts)
	}
	rd, err := NewReader(bytes.NewReader(data), opts)
	if err != nil {
		t.Fatal(err)
	}
	st2, err2 := rd.Verify(want, ropts)
	if fmt.Sprint(err1) != fmt.Sprint(err2) {
		// A malformed record after a bad digest: the in-memory parse
		// fails first, the stream reports the earlier digest.
		var de *template.DecodeError
		if !errors.As(err1, &de) {
			t.Fatalf("EventLog and Reader disagree:\n  %v\n  %v", err1, err2)
		}
		return st2, err2
	}
	if err1 == nil && !st1.PCRs.Equal(st2.PCRs) {
		t.Fatalf("EventLog and Reader end in different states")
	}
	return st2, err2
}

func TestIBMTSSVerify(t *testing.T) {
	want := ibmExpected(t, allBanks...)
	for _, l := range ibmLists {
		data := readFile(t, l.file)
		log := mustParse(t, data, l.opts)
		if log.Len() != ibmCount {
			t.Fatalf("%s: %d records, want %d", l.file, log.Len(), ibmCount)
		}
		if !bytes.Equal(log.Binary(), data) {
			t.Fatalf("%s: Binary() differs from the input", l.file)
		}
		for _, workers := range []int{1, 2, 4} {
			st, err := log.Verify(want, ReplayOptions{Workers: workers})
			if err != nil {
				t.Fatalf("%s workers %d: %v", l.file, workers, err)
			}
			if st.Records != ibmCount || st.Offset != int64(len(data)) {
				t.Errorf("%s: state after %d records at offset %d, want %d at %d", l.file, st.Records, st.Offset, ibmCount, len(data))
			}
			rd, err := NewReader(bytes.NewReader(data), l.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rd.Verify(want, ReplayOptions{Workers: workers}); err != nil {
				t.Fatalf("%s reader workers %d: %v", l.file, workers, err)
			}
		}
		// Each bank alone, and the state holds every bank's PCR 10.
		for _, b := range allBanks {
			st, err := log.Verify(Expected{b: want[b]}, ReplayOptions{Banks: allBanks})
			if err != nil {
				t.Fatalf("%s bank %v: %v", l.file, b, err)
			}
			for _, o := range allBanks {
				if got := st.PCRs[o][10]; !bytes.Equal(got, want[o][10]) {
					t.Errorf("%s: state's %v PCR 10 = %x, want %x", l.file, o, got, want[o][10])
				}
			}
		}
	}
}

// recordOffsets returns the offset of every record of a list, and its
// length at the end.
func recordOffsets(t testing.TB, l *EventLog) []int64 {
	var offs []int64
	for r := range l.All() {
		offs = append(offs, r.Offset)
	}
	return append(offs, int64(len(l.Binary())))
}

// TestIBMTSSOneByteChanged changes one byte at several places of one record
// and checks that verification fails naming that record, with the right
// kind of error.
func TestIBMTSSOneByteChanged(t *testing.T) {
	want := ibmExpected(t, allBanks...)
	for _, l := range ibmLists {
		orig := readFile(t, l.file)
		offs := recordOffsets(t, mustParse(t, orig, l.opts))
		ds := 20
		if l.opts.DigestSize != 0 {
			ds = l.opts.DigestSize
		}
		name := 4 + ds + 4 // the template name, "ima-sig"
		data := name + 7 + 4
		cases := []struct {
			what   string
			rec    int
			at     int // offset in the record
			change func(byte) byte
			kind   error // the error it must wrap
			errAt  int   // DecodeError: offset of the bad item in the record
		}{
			{"template digest", 100, 4 + 3, flip, ErrTemplateDigest, 0},
			{"first record's digest", 0, 4, flip, ErrTemplateDigest, 0},
			{"file digest in d-ng", 100, data + 4 + 8 + 5, flip, ErrTemplateDigest, 0},
			{"path in n-ng", 100, data + 4 + 40 + 4 + 3, flip, ErrTemplateDigest, 0},
			{"last record's NUL", ibmCount - 1, -5, func(byte) byte { return 'x' }, ErrTemplateDigest, 0},
			{"PCR 10 to 11", 200, 0, func(byte) byte { return 11 }, ErrUncheckedPCR, 0},
			{"PCR high byte", 200, 3, func(byte) byte { return 1 }, ErrPCRIndex, 0},
			{"template name length", 100, name - 4, func(b byte) byte { return b + 1 }, template.ErrUnknownTemplate, name},
			{"template name", 100, name + 5, func(byte) byte { return 'o' }, template.ErrUnknownTemplate, name},
			{"template data length", 100, data - 4, func(b byte) byte { return b + 1 }, template.ErrTemplateData, -1},
			{"d-ng field length", 100, data, func(b byte) byte { return b + 1 }, template.ErrTemplateData, -1},
			{"n-ng field length", 100, data + 4 + 40, func(b byte) byte { return b - 1 }, template.ErrTemplateData, -1},
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", l.file[len(ibmDir):], c.what), func(t *testing.T) {
				data := bytes.Clone(orig)
				at := offs[c.rec] + int64(c.at)
				if c.at < 0 {
					at = offs[c.rec+1] + int64(c.at)
				}
				data[at] = c.change(data[at])
				_, err := verifyBoth(t, data, l.opts, want, ReplayOptions{})
				if !errors.Is(err, c.kind) {
					t.Fatalf("got %v, want an error wrapping %q", err, c.kind)
				}
				var re *ReplayError
				var de *template.DecodeError
				switch {
				case errors.As(err, &re):
					if re.Index != c.rec || re.Offset != offs[c.rec] {
						t.Errorf("error names record %d at offset %d, want record %d at %d (%v)", re.Index, re.Offset, c.rec, offs[c.rec], err)
					}
				case errors.As(err, &de):
					if de.Index != c.rec || de.RecordOffset != offs[c.rec] {
						t.Errorf("error names record %d at offset %d, want record %d at %d (%v)", de.Index, de.RecordOffset, c.rec, offs[c.rec], err)
					}
					if c.errAt > 0 && de.Offset != offs[c.rec]+int64(c.errAt) {
						t.Errorf("error at offset %d, want %d (%v)", de.Offset, offs[c.rec]+int64(c.errAt), err)
					}
					if de.Offset < offs[c.rec] || de.Offset >= offs[c.rec+1]+4 {
						t.Errorf("error at offset %d, outside record %d (%d-%d)", de.Offset, c.rec, offs[c.rec], offs[c.rec+1])
					}
				default:
					t.Fatalf("got %T %v, want a *ReplayError or *template.DecodeError", err, err)
				}
			})
		}
	}
}

func flip(b byte) byte { return b ^ 0x01 }

// TestIBMTSSAppended appends a record (a copy of record 5, as if the list
// had grown after the PCRs were read): evmctl passes such a list, Verify
// must not; ReplayUntil finds the 362 records the values cover.
func TestIBMTSSAppended(t *testing.T) {
	want := ibmExpected(t, allBanks...)
	for _, l := range ibmLists {
		orig := readFile(t, l.file)
		log := mustParse(t, orig, l.opts)
		r5 := log.Record(5)
		data := append(bytes.Clone(orig), r5.Binary()...)
		_, err := verifyBoth(t, data, l.opts, want, ReplayOptions{})
		var re *ReplayError
		if !errors.As(err, &re) || !errors.Is(err, ErrPCRMismatch) {
			t.Fatalf("%s: got %v, want a PCR mismatch", l.file, err)
		}
		if re.MatchedAt != ibmCount || re.Index != ibmCount || re.Offset != int64(len(orig)) || re.Records != ibmCount+1 {
			t.Errorf("%s: MatchedAt %d Index %d Offset %d Records %d, want %d %d %d %d (%v)", l.file,
				re.MatchedAt, re.Index, re.Offset, re.Records, ibmCount, ibmCount, len(orig), ibmCount+1, err)
		}
		n, st, err := mustParse(t, data, l.opts).ReplayUntil(Target{PCRs: want}, ReplayOptions{})
		if err != nil || n != ibmCount || st.Offset != int64(len(orig)) {
			t.Errorf("%s: ReplayUntil = %d at offset %v, %v; want %d at %d", l.file, n, st, err, ibmCount, len(orig))
		}
	}
}

// TestIBMTSSTruncated cuts the list inside a record, and at a record
// boundary.
func TestIBMTSSTruncated(t *testing.T) {
	want := ibmExpected(t, allBanks...)
	for _, l := range ibmLists {
		orig := readFile(t, l.file)
		offs := recordOffsets(t, mustParse(t, orig, l.opts))
		ds := 4 + 20
		if l.opts.DigestSize == 32 {
			ds = 4 + 32
		}
		cases := []struct {
			rec, cut, itemAt int // cut at rec+cut; the truncated item starts at rec+itemAt
		}{
			{100, 2, 0},               // inside the PCR
			{100, 10, 4},              // inside the template digest
			{100, ds + 2, ds},         // inside the name length
			{100, ds + 4 + 3, ds + 4}, // inside the name
			{100, ds + 4 + 7 + 4 + 30, ds + 4 + 7 + 4},          // inside the template data
			{ibmCount - 1, ds + 4 + 7 + 4 + 71, ds + 4 + 7 + 4}, // the last byte missing
		}
		for _, c := range cases {
			data := orig[:offs[c.rec]+int64(c.cut)]
			_, err := verifyBoth(t, data, l.opts, want, ReplayOptions{})
			var de *template.DecodeError
			if !errors.As(err, &de) || !errors.Is(err, template.ErrTruncated) {
				t.Fatalf("%s cut at %d: got %v, want a truncation", l.file, len(data), err)
			}
			if de.Index != c.rec || de.RecordOffset != offs[c.rec] || de.Offset != offs[c.rec]+int64(c.itemAt) {
				t.Errorf("%s cut at %d: record %d at %d, item at %d; want %d at %d, item at %d (%v)", l.file, len(data),
					de.Index, de.RecordOffset, de.Offset, c.rec, offs[c.rec], offs[c.rec]+int64(c.itemAt), err)
			}
		}
		// A whole record missing: the list parses but does not reach the
		// values.
		_, err := verifyBoth(t, orig[:offs[ibmCount-1]], l.opts, want, ReplayOptions{})
		var re *ReplayError
		if !errors.As(err, &re) || !errors.Is(err, ErrPCRMismatch) || re.MatchedAt != -1 || re.Index != -1 || re.Records != ibmCount-1 {
			t.Errorf("%s without its last record: got %v", l.file, err)
		}
	}
}

// TestIBMTSSASCII renders the lists as the kernel's ASCII files, parses the
// lines back (rebuilding the template data) and verifies them.
func TestIBMTSSASCII(t *testing.T) {
	want := ibmExpected(t, allBanks...)
	for _, l := range ibmLists {
		orig := readFile(t, l.file)
		log := mustParse(t, orig, l.opts)
		var text []byte
		for r := range log.All() {
			e, err := r.Entry()
			if err != nil {
				t.Fatal(err)
			}
			if text, err = e.AppendASCII(text, 0, template.LittleEndian); err != nil {
				t.Fatal(err)
			}
		}
		al := mustParse(t, text, Options{ASCII: true})
		if !bytes.Equal(al.Binary(), orig) {
			t.Fatalf("%s: the records rebuilt from ASCII differ from the binary list", l.file)
		}
		if got := al.Options().DigestSize; got != log.Options().DigestSize {
			t.Errorf("%s: ASCII column width %d, want %d", l.file, got, log.Options().DigestSize)
		}
		if _, err := verifyBoth(t, text, Options{ASCII: true}, want, ReplayOptions{}); err != nil {
			t.Fatalf("%s as ASCII: %v", l.file, err)
		}
		// A changed path names the line and its offset.
		r100 := al.Record(100)
		bad := bytes.Clone(text)
		i := int(r100.Offset) + bytes.Index(text[r100.Offset:], []byte(" /")) + 3
		bad[i] ^= 1
		_, err := verifyBoth(t, bad, Options{ASCII: true}, want, ReplayOptions{})
		var re *ReplayError
		if !errors.As(err, &re) || !errors.Is(err, ErrTemplateDigest) || re.Index != 100 || re.Offset != r100.Offset {
			t.Errorf("%s as ASCII, line 100 changed: got %v", l.file, err)
		}
	}
}

// TestRecordAccessors checks a record's parts against the template
// package's decoding.
func TestRecordAccessors(t *testing.T) {
	data := readFile(t, ibmSHA2)
	log := mustParse(t, data, Options{DigestSize: 32})
	entries, err := template.DecodeAll(data, template.DecodeOptions{DigestSize: 32, Alg: tpmext.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	for r := range log.All() {
		e := entries[r.Index]
		if r.PCR != e.PCR || r.Template != e.Desc || !bytes.Equal(r.Digest, e.Digests[0].Value) || r.ColumnAlg() != tpmext.SHA256 {
			t.Fatalf("record %d differs from the template package's entry", r.Index)
		}
		got, err := r.TemplateDigest(tpmext.SHA256)
		if err != nil || !bytes.Equal(got, r.Digest) {
			t.Fatalf("record %d: TemplateDigest = %x, %v; want %x", r.Index, got, err, r.Digest)
		}
		sha1, _ := e.TemplateDigest(template.HashSHA1, template.LittleEndian)
		if got, _ := r.TemplateDigest(tpmext.SHA1); !bytes.Equal(got, sha1) {
			t.Fatalf("record %d: SHA-1 template digest %x, want %x", r.Index, got, sha1)
		}
		// An unmapped bank holds the padded SHA-1 digest.
		if got, _ := r.TemplateDigest(tpmext.SHA3_256); !bytes.Equal(got, append(bytes.Clone(sha1), make([]byte, 12)...)) {
			t.Fatalf("record %d: SHA3-256 slot %x is not the padded SHA-1 digest", r.Index, got)
		}
		entry, err := r.Entry()
		if err != nil {
			t.Fatal(err)
		}
		bin, _ := entry.AppendBinary(nil, 0, template.LittleEndian)
		if !bytes.Equal(bin, r.Binary()) {
			t.Fatalf("record %d: Entry re-encodes differently", r.Index)
		}
		if r.Violation() {
			t.Fatalf("record %d: a violation in a list without any", r.Index)
		}
	}
	var lens []int
	rd, _ := NewReader(bytes.NewReader(data), Options{DigestSize: 32})
	for {
		r, err := rd.Next()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatal(err)
			}
			break
		}
		if !bytes.Equal(r.Binary(), log.Record(r.Index).Binary()) || r.Offset != log.Record(r.Index).Offset {
			t.Fatalf("Reader record %d differs from EventLog's", r.Index)
		}
		lens = append(lens, len(r.Binary()))
	}
	if len(lens) != ibmCount {
		t.Fatalf("Reader returned %d records, want %d", len(lens), ibmCount)
	}
	_ = binary.LittleEndian
}
