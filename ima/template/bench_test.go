package template

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"io"
	"testing"
	"time"

	"github.com/imasim/imasim/tpmext"
)

func benchEntry(b *testing.B) (*Layout, *Entry) {
	l := mustLayout(b, tpmext.DefaultBanks(), HashSHA256, LittleEndian)
	ev, err := NewFileEvent("/usr/lib/x86_64-linux-gnu/libc.so.6", &File{Content: []byte("libc")}, HashSHA256, nil)
	if err != nil {
		b.Fatal(err)
	}
	e, err := l.NewEntry(IMANG, 10, ev)
	if err != nil {
		b.Fatal(err)
	}
	return l, e
}

// BenchmarkTemplateDigest measures the template digest of an ima-ng entry
// for four banks (sha1, sha256, sha384, sha512) and, in the same run, the
// floor: hashing the same bytes with the same four algorithms. It reports
// ns/op of the template digest and ratio = template digest / floor.
func BenchmarkTemplateDigest(b *testing.B) {
	l, e := benchEntry(b)
	data := e.appendHashInput(nil, LittleEndian)
	var sink byte
	floor := func() {
		s1 := sha1.Sum(data)
		s2 := sha256.Sum256(data)
		s3 := sha512.Sum384(data)
		s4 := sha512.Sum512(data)
		sink ^= s1[0] ^ s2[0] ^ s3[0] ^ s4[0]
	}
	b.ReportAllocs()
	b.ResetTimer()
	// Alternate chunks of both, so that load elsewhere on the machine
	// affects both sides alike.
	var ours, base time.Duration
	const chunk = 256
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := l.ComputeDigests(e); err != nil {
				b.Fatal(err)
			}
		}
		ours += time.Since(start)
		b.StopTimer()
		start = time.Now()
		for i := 0; i < n; i++ {
			floor()
		}
		base += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(ours)/float64(base), "ratio")
	_ = sink
}

// BenchmarkDecode measures DecodeAll over the IBM SHA-1 list.
func BenchmarkDecode(b *testing.B) {
	data := readFile(b, ibmSHA1)
	opts := DecodeOptions{DigestSize: 20}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeAll(data, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecoder measures the streaming decoder over the same list.
func BenchmarkDecoder(b *testing.B) {
	data := readFile(b, ibmSHA1)
	opts := DecodeOptions{DigestSize: 20}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dec, err := NewDecoder(bytes.NewReader(data), opts)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := dec.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncode measures AppendBinary and AppendASCII into a reused
// buffer (no allocation expected).
func BenchmarkEncode(b *testing.B) {
	_, e := benchEntry(b)
	buf := make([]byte, 0, 1024)
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = e.AppendBinary(buf[:0], 0, LittleEndian)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("ascii", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = e.AppendASCII(buf[:0], 1, LittleEndian)
		}
		b.SetBytes(int64(len(buf)))
	})
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	l := mustLayout(t, tpmext.DefaultBanks(), HashSHA256, LittleEndian)
	ev, _ := NewFileEvent("/x y", &File{Content: []byte("x"), UID: 3}, HashSHA256, nil)
	e, err := l.NewEntry(EVMSig, 10, ev)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	for slot := 0; slot < l.NumSlots(); slot++ {
		if n := testing.AllocsPerRun(50, func() { buf, _ = e.AppendBinary(buf[:0], slot, BigEndian) }); n != 0 {
			t.Errorf("AppendBinary allocates %.0f times", n)
		}
		if n := testing.AllocsPerRun(50, func() { buf, _ = e.AppendASCII(buf[:0], slot, BigEndian) }); n != 0 {
			t.Errorf("AppendASCII allocates %.0f times", n)
		}
	}
}
