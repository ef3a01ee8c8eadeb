package template

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// scanResult is what one Scan call gave, in comparable form.
type scanResult struct {
	n     int    // the record's length, on success
	short bool   // a *ShortError
	err   string // a *DecodeError's text
}

func scanOnce(t testing.TB, s *Scanner, b []byte) scanResult {
	var f Frame
	err := s.Scan(b, 3, 1000, &f)
	var short *ShortError
	var de *DecodeError
	switch {
	case err == nil:
		if f.Len < 4 || f.Len > len(b) {
			t.Fatalf("Scan: record of %d bytes in %d", f.Len, len(b))
		}
		return scanResult{n: f.Len}
	case errors.As(err, &short):
		if short.Index != 3 || short.RecordOffset != 1000 || short.At < 1000 || short.At > 1000+int64(len(b)) || short.Have >= short.Need {
			t.Fatalf("short error %+v for %d bytes", short, len(b))
		}
		return scanResult{short: true}
	case errors.As(err, &de):
		if de.Index != 3 || de.RecordOffset != 1000 || de.Offset < 1000 || de.Offset > 1000+int64(len(b)) {
			t.Fatalf("decode error %v (record offset %d) for %d bytes", err, de.RecordOffset, len(b))
		}
		return scanResult{err: err.Error()}
	}
	t.Fatalf("Scan: %T %v", err, err)
	return scanResult{}
}

// checkScanPrefixes checks that "short" and "malformed" are told apart
// from the bytes seen alone: every prefix of b scans as short, or as what b
// scans to (the same record, or the same error).
func checkScanPrefixes(t testing.TB, s *Scanner, b []byte, cuts []int) scanResult {
	whole := scanOnce(t, s, b)
	for _, k := range cuts {
		if k > len(b) {
			continue
		}
		got := scanOnce(t, s, b[:k])
		switch {
		case whole.short && !got.short:
			t.Fatalf("%d of %d bytes scan as %+v, all of them as short", k, len(b), got)
		case whole.n > 0 && k < whole.n && !got.short:
			t.Fatalf("%d bytes of a %d-byte record scan as %+v, want short", k, whole.n, got)
		case !got.short && got != whole:
			t.Fatalf("%d of %d bytes scan as %+v, all of them as %+v", k, len(b), got, whole)
		}
	}
	return whole
}

func allCuts(n int) []int {
	cuts := make([]int, n+1)
	for i := range cuts {
		cuts[i] = i
	}
	return cuts
}

// TestScanShortOrMalformed: every prefix of real records, in every byte
// order and restore mode, is short; the whole record scans to its length;
// and a record followed by more bytes scans the same.
func TestScanShortOrMalformed(t *testing.T) {
	for _, seed := range fuzzSeeds(t) {
		opts := fuzzOptions(seed.sel)
		s, err := NewScanner(opts)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := Split(seed.data, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if got := checkScanPrefixes(t, s, rec, allCuts(len(rec))); got.n != len(rec) {
				t.Fatalf("record of %d bytes scans as %+v", len(rec), got)
			}
			if got := scanOnce(t, s, append(bytes.Clone(rec), 1, 2, 3)); got.n != len(rec) {
				t.Fatalf("record of %d bytes with 3 more scans as %+v", len(rec), got)
			}
		}
	}
}

// TestScanNoAlloc: framing a whole real list allocates nothing once the
// template names have been seen.
func TestScanNoAlloc(t *testing.T) {
	for _, file := range []string{ibmSHA1, ibmSHA256} {
		data := readFile(t, file)
		opts := DecodeOptions{DigestSize: 20}
		if file == ibmSHA256 {
			opts.DigestSize = 32
		}
		s, err := NewScanner(opts)
		if err != nil {
			t.Fatal(err)
		}
		var f Frame
		n := 0
		allocs := testing.AllocsPerRun(5, func() {
			n = 0
			for pos := 0; pos < len(data); pos += f.Len {
				if err := s.Scan(data[pos:], n, int64(pos), &f); err != nil {
					t.Fatal(err)
				}
				n++
			}
		})
		if allocs != 0 || n != 362 {
			t.Errorf("%s: %v allocations for a scan of %d records, want 0 for 362", file, allocs, n)
		}
		// A short record costs nothing either.
		short := data[:100]
		if allocs := testing.AllocsPerRun(5, func() {
			if _, ok := s.Scan(short, 0, 0, &f).(*ShortError); !ok {
				t.Fatal("100 bytes do not scan as short")
			}
		}); allocs != 0 {
			t.Errorf("%s: a short scan allocates %v times", file, allocs)
		}
	}
}

// TestScanHugeLengths: a length field claiming up to 4 GiB is refused (at
// the cap or as malformed) or reported short, and never costs memory.
func TestScanHugeLengths(t *testing.T) {
	recs := sampleRecords(t)
	ng, legacy := recs[0], recs[1] // see TestDecodeErrors for the offsets
	tests := []struct {
		name  string
		rec   []byte
		opts  DecodeOptions
		short bool
		is    error
	}{
		{"name length", patch(ng, 24, 0xffffffff), DecodeOptions{}, false, ErrNameTooLong},
		{"data length", patch(ng, 34, 0x80000000), DecodeOptions{}, false, ErrTemplateData},
		{"data length under a raised cap", patch(ng, 34, 0x7fffffff), DecodeOptions{MaxDataLen: 1 << 31}, true, nil},
		{"field length", patch(ng, 38, 0xffffffff), DecodeOptions{}, false, ErrTemplateData},
		{"ima n length", patch(legacy, 51, 0xffffffff), DecodeOptions{}, false, ErrTemplateData},
		{"restore: name length", patch(ng, 24, 0xffffffff), DecodeOptions{Restore: true}, true, nil},
		{"restore: data length", patch(ng, 34, 0xffffffff), DecodeOptions{Restore: true}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.DigestSize = 20
			s, err := NewScanner(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var f Frame
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = s.Scan(tc.rec, 0, 0, &f)
			runtime.ReadMemStats(&after)
			var se *ShortError
			if tc.short != errors.As(err, &se) || !tc.short && !errors.Is(err, tc.is) {
				t.Fatalf("Scan: %v, want short %v or %v", err, tc.short, tc.is)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<10 {
				t.Errorf("Scan allocated %d bytes", grew)
			}
			if _, err := DecodeAll(tc.rec, tc.opts); err == nil {
				t.Error("DecodeAll accepted it")
			}
		})
	}
}

// FuzzScan: for any bytes and options, Scan tells short from malformed
// consistently: a prefix of the input scans as short or as the whole does.
func FuzzScan(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.data, s.sel)
	}
	f.Fuzz(func(t *testing.T, data []byte, sel byte) {
		opts := fuzzOptions(sel)
		s, err := NewScanner(opts)
		if err != nil {
			t.Fatal(err)
		}
		cuts := allCuts(len(data))
		if len(data) > 512 {
			cuts = []int{0, 1, 4, len(data) / 3, len(data) / 2, len(data) - 1}
		}
		checkScanPrefixes(t, s, data, cuts)
	})
}
