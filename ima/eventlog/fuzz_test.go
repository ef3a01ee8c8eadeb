package eventlog

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// fuzzOptions picks the options a fuzz input is read with from one byte:
// bit 0 the byte order, bits 1-2 the column width.
func fuzzOptions(flags byte, ascii bool) Options {
	o := Options{ASCII: ascii, DigestSize: []int{20, 32, 48, 64}[flags>>1&3]}
	if ascii {
		o.DigestSize = 0
	}
	if flags&1 != 0 {
		o.Order = template.BigEndian
	}
	return o
}

// fuzzSeeds returns the start of the real lists, cut at a few places, and
// small generated lists of every template in both byte orders.
type fuzzSeed struct {
	data  []byte
	flags byte
}

func fuzzSeeds(t testing.TB) (binary, ascii []fuzzSeed) {
	for _, l := range ibmLists {
		data := readFile(t, l.file)
		flags := byte(0)
		if l.opts.DigestSize == 32 {
			flags = 2
		}
		log := mustParse(t, data, l.opts)
		three := data[:log.Record(3).Offset]
		binary = append(binary, fuzzSeed{three, flags}, fuzzSeed{three[:len(three)-5], flags}, fuzzSeed{data[log.Record(361).Offset:], flags})
		text := renderASCII(t, mustParse(t, three, l.opts))
		ascii = append(ascii, fuzzSeed{text, byte(0)}, fuzzSeed{text[:len(text)-1], byte(0)})
	}
	for _, order := range []template.Order{template.LittleEndian, template.BigEndian} {
		g, err := gen.Generate(gen.Config{Records: 14, Banks: allBanks, Templates: allTemplates(t), ViolationEvery: 5, Order: order, PCR11Every: 4})
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range allBanks {
			data, _ := g.Binary(b)
			text, _ := g.ASCII(b)
			binary = append(binary, fuzzSeed{data, byte(order) | byte(i)<<1})
			ascii = append(ascii, fuzzSeed{text, byte(order)})
		}
	}
	return binary, ascii
}

func renderASCII(t testing.TB, l *EventLog) []byte {
	var text []byte
	for r := range l.All() {
		e, err := r.Entry()
		if err != nil {
			t.Fatal(err)
		}
		if text, err = e.AppendASCII(text, 0, l.f.order); err != nil {
			t.Fatal(err)
		}
	}
	return text
}

// FuzzBinary: parsing never panics; it accepts exactly what
// template.DecodeAll accepts (the same records, the same error at the same
// place) except PCRs above 23; whatever parses re-encodes to the same
// bytes, the Reader agrees with ParseEventLog, and a replay does not
// panic. Both sides frame records with template.Scanner (whose
// short/malformed split template.FuzzScan checks directly), so the
// comparison checks what eventlog adds: positions, batches cut at any
// byte, carried partial records, offsets and the PCR range.
func FuzzBinary(f *testing.F) {
	bin, _ := fuzzSeeds(f)
	for _, s := range bin {
		f.Add(s.data, s.flags)
	}
	f.Fuzz(func(t *testing.T, data []byte, flags byte) {
		opts := fuzzOptions(flags, false)
		log, err := ParseEventLog(data, opts)

		// Differential check against the template package's decoder.
		fm, _ := opts.check()
		entries, terr := template.DecodeAll(data, fm.decodeOptions())
		switch {
		case errors.Is(err, ErrPCRIndex):
			var de *template.DecodeError
			errors.As(err, &de)
			if len(entries) <= de.Index {
				t.Fatalf("PCR error at record %d, but the template decoder stopped at %d: %v", de.Index, len(entries), terr)
			}
		case (err == nil) != (terr == nil) || err != nil && err.Error() != terr.Error():
			t.Fatalf("ParseEventLog: %v\ntemplate.DecodeAll: %v", err, terr)
		case err == nil && log.Len() != len(entries):
			t.Fatalf("%d records, the template decoder %d", log.Len(), len(entries))
		}

		// The stream gives the same records and error.
		rd, _ := NewReader(bytes.NewReader(data), opts)
		n := 0
		for {
			r, rerr := rd.Next()
			if rerr == io.EOF {
				if err != nil {
					t.Fatalf("Reader read all, ParseEventLog failed: %v", err)
				}
				break
			}
			if rerr != nil {
				if err == nil || rerr.Error() != err.Error() {
					t.Fatalf("Reader: %v, ParseEventLog: %v", rerr, err)
				}
				break
			}
			if err == nil && !bytes.Equal(r.Binary(), log.Record(n).Binary()) {
				t.Fatalf("record %d differs between Reader and EventLog", n)
			}
			n++
		}
		if err != nil {
			return
		}

		// Re-encoding gives the input back.
		var out []byte
		for r := range log.All() {
			e, err := r.Entry()
			if err != nil {
				t.Fatalf("record %d: %v", r.Index, err)
			}
			if out, err = e.AppendBinary(out, 0, opts.Order); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("re-encoded list differs from the input")
		}
		if _, err := log.Replay(ReplayOptions{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Workers: 1}); err != nil && !errors.Is(err, ErrTemplateDigest) {
			t.Fatalf("replay: %v", err)
		}
	})
}

// FuzzASCII: parsing never panics; whatever parses renders back to the
// same text, its rebuilt records parse as a binary list and re-encode, and
// the Reader agrees with ParseEventLog.
func FuzzASCII(f *testing.F) {
	_, asc := fuzzSeeds(f)
	for _, s := range asc {
		f.Add(s.data, s.flags)
	}
	f.Fuzz(func(t *testing.T, text []byte, flags byte) {
		opts := fuzzOptions(flags, true)
		log, err := ParseEventLog(text, opts)
		rd, _ := NewReader(bytes.NewReader(text), opts)
		var rerr error
		n := 0
		for {
			var r *Record
			if r, rerr = rd.Next(); rerr != nil {
				break
			}
			if err == nil && !bytes.Equal(r.Binary(), log.Record(n).Binary()) {
				t.Fatalf("record %d differs between Reader and EventLog", n)
			}
			n++
		}
		if (err == nil) != (rerr == io.EOF) || err != nil && err.Error() != rerr.Error() {
			t.Fatalf("Reader: %v, ParseEventLog: %v", rerr, err)
		}
		if err != nil {
			return
		}
		if got := renderASCII(t, log); !bytes.Equal(got, text) {
			t.Fatalf("rendered text differs from the input:\n%q\n%q", got, text)
		}
		bopts := log.Options()
		bopts.ASCII = false
		bl, err := ParseEventLog(log.Binary(), bopts)
		if err != nil || bl.Len() != log.Len() {
			t.Fatalf("the rebuilt records do not parse as a binary list: %v", err)
		}
		if _, err := log.Replay(ReplayOptions{Banks: []tpmext.Algorithm{tpmext.SHA1}, Workers: 1}); err != nil && !errors.Is(err, ErrTemplateDigest) {
			t.Fatalf("replay: %v", err)
		}
	})
}
