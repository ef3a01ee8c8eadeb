package template

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func TestSplit(t *testing.T) {
	data, err := os.ReadFile("../../testdata/ibmtss/sha1.log")
	if err != nil {
		t.Fatal(err)
	}
	opts := DecodeOptions{DigestSize: 20}
	recs, err := Split(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 362 {
		t.Fatalf("got %d records, want 362", len(recs))
	}
	if !bytes.Equal(bytes.Join(recs, nil), data) {
		t.Fatal("the records do not concatenate back to the list")
	}
	es, err := DecodeAll(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		b, err := e.AppendBinary(nil, 0, LittleEndian)
		if err != nil || !bytes.Equal(b, recs[i]) {
			t.Fatalf("record %d: Split gives %d bytes, DecodeAll re-encodes %d (%v)", i, len(recs[i]), len(b), err)
		}
	}
	// A torn last record: the whole ones before it and a DecodeError.
	recs, err = Split(data[:len(data)-3], opts)
	var de *DecodeError
	if !errors.As(err, &de) || de.Index != 361 || len(recs) != 361 {
		t.Fatalf("torn list: %d records, error %v; want 361 and a DecodeError at record 361", len(recs), err)
	}
}
