package eventlog

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// forgedIMALine returns an "ima"-template line whose d field is longer
// than 20 bytes and carries, after the 20 real digest bytes, the binary
// form of another name (u32 length, name). Its template digest is that of
// the hidden name, the name column shows shown, and the PCR value returned
// is SHA-1 PCR 10 after extending it. This is the forgery of issue 11
// item 1: rebuilt naively, the record is re-split when scanned and the
// hidden name is what gets hashed and verified.
func forgedIMALine(hidden, shown string) (line string, pcr10 []byte) {
	d := sha1.Sum([]byte("the file's content"))
	in := make([]byte, 20+template.MaxEventNameLen+1)
	copy(in, d[:])
	copy(in[20:], hidden)
	digest := sha1.Sum(in)
	field := append(d[:], binary.LittleEndian.AppendUint32(nil, uint32(len(hidden)))...)
	field = append(field, hidden...)
	pcr := sha1.Sum(append(make([]byte, 20), digest[:]...))
	return fmt.Sprintf("10 %x ima %x %s\n", digest, field, shown), pcr[:]
}

// TestASCIIForgedIMALine: the forged line must not verify; the error names
// the line and the column of the d field.
func TestASCIIForgedIMALine(t *testing.T) {
	line, pcr := forgedIMALine("/usr/bin/evil", "/usr/bin/innocent")
	want := Expected{tpmext.SHA1: {10: pcr}}
	col := strings.Index(line, " ima ") + len(" ima ")

	l, err := ParseEventLog([]byte(line), Options{ASCII: true})
	if err == nil {
		name := "?"
		if e, err := l.Record(0).Entry(); err == nil {
			name = string(e.Fields[1])
		}
		_, verr := l.Verify(want, ReplayOptions{})
		t.Fatalf("forged line parsed (name column /usr/bin/innocent, record name %q); verify: %v", name, verr)
	}
	var de *template.DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrNotRebuildable) || de.Index != 0 || de.Offset != int64(col) {
		t.Fatalf("got %v, want ErrNotRebuildable at offset %d", err, col)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("line 1, column %d", col+1)) {
		t.Errorf("error %q does not name line 1, column %d", err, col+1)
	}

	// The same from a stream, after a good line.
	good := "10 d7026dc672344d3ee372217bdbc7395947788671 ima 6f66d1d8e2fffcc12dfcb78c04b81fe5b8bbae4e /usr/bin/kmod\n"
	rd, err := NewReader(bytes.NewReader([]byte(good+line)), Options{ASCII: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); !errors.As(err, &de) || !errors.Is(err, ErrNotRebuildable) || de.Index != 1 || de.Offset != int64(len(good)+col) {
		t.Fatalf("stream: got %v, want ErrNotRebuildable in record 1 at offset %d", err, len(good)+col)
	}
}
