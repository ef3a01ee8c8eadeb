package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestBoundedMemory feeds records whose length fields promise far more
// than the input holds: neither parser allocates by the length fields,
// only by the bytes that actually arrive.
func TestBoundedMemory(t *testing.T) {
	le := binary.LittleEndian
	const body = 1 << 20
	rec := le.AppendUint32(nil, 10)
	rec = append(rec, bytes.Repeat([]byte{1}, 20)...)
	rec = le.AppendUint32(rec, 6)
	rec = append(rec, "ima-ng"...)
	rec = le.AppendUint32(rec, 0x7fffffff) // template data length
	rec = append(rec, make([]byte, body)...)

	longLine := append([]byte("10 "), bytes.Repeat([]byte("a"), body)...) // no newline

	cases := []struct {
		name  string
		input []byte
		opts  Options
	}{
		{"binary", rec, Options{}},
		{"ascii", longLine, Options{ASCII: true}},
	}
	for _, c := range cases {
		// The stream: at most a few times the input.
		got := allocated(func() {
			rd, err := NewReader(bytes.NewReader(c.input), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			for {
				if _, err := rd.Next(); err != nil {
					if err == io.EOF {
						t.Errorf("%s: a truncated record parsed", c.name)
					}
					break
				}
			}
		})
		if limit := uint64(6*len(c.input) + 1<<20); got > limit {
			t.Errorf("%s: the Reader allocated %d bytes for a %d-byte input (limit %d)", c.name, got, len(c.input), limit)
		}
		// In memory: no more than a small constant, whatever the
		// length fields say.
		got = allocated(func() {
			if _, err := ParseEventLog(c.input, c.opts); err == nil {
				t.Errorf("%s: a truncated record parsed", c.name)
			}
		})
		if got > 64<<10 {
			t.Errorf("%s: ParseEventLog allocated %d bytes", c.name, got)
		}
	}
}

// TestNoPerRecordAllocations checks that a replay's allocations do not
// grow with the number of records (they are per batch and per replay).
func TestNoPerRecordAllocations(t *testing.T) {
	l := generate(t, gen5000())
	data := binaryOf(t, l, tpmext.SHA1)
	log := mustParse(t, data, Options{})
	cut := func(n int) *EventLog { return mustParse(t, data[:log.Record(n).Offset], Options{}) }
	small, large := cut(1000), cut(4999)
	want := func(e *EventLog) Expected {
		st, err := e.Replay(ReplayOptions{Banks: allBanks})
		if err != nil {
			t.Fatal(err)
		}
		return expect(st.PCRs, 10)
	}
	ws, wl := want(small), want(large)
	for _, workers := range []int{1, 2} {
		opts := ReplayOptions{Workers: workers}
		a := testing.AllocsPerRun(5, func() { small.Verify(ws, opts) })
		b := testing.AllocsPerRun(5, func() { large.Verify(wl, opts) })
		// 4,000 more records may cost a few more batches, never an
		// allocation per record.
		if b-a > 100 {
			t.Errorf("workers %d: %v allocations for 1,000 records, %v for 4,999", workers, a, b)
		}
		s := testing.AllocsPerRun(5, func() {
			rd, _ := NewReader(bytes.NewReader(data), Options{})
			rd.Verify(wl, opts)
		})
		if s > 400 {
			t.Errorf("workers %d: a streamed verify of 5,000 records made %v allocations", workers, s)
		}
	}
}

func gen5000() gen.Config {
	return gen.Config{Records: 5000, Banks: allBanks, ViolationEvery: 97, PCR11Every: 0}
}

// repeatReader yields n bytes of b repeated, without holding them.
type repeatReader struct {
	b   byte
	n   int64
	pos int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.pos >= r.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), r.n-r.pos))
	for i := range p[:k] {
		p[i] = r.b
	}
	r.pos += int64(k)
	return k, nil
}

// TestHugeLengthRefused: issue 11 item 6. A record claiming 2 GiB of
// template data, with 8 MiB that do follow, fails at its length field
// with an error naming the cap, without allocating by the claim or by the
// bytes that follow.
func TestHugeLengthRefused(t *testing.T) {
	le := binary.LittleEndian
	head := le.AppendUint32(nil, 10)
	head = append(head, bytes.Repeat([]byte{1}, 20)...)
	head = le.AppendUint32(head, 6)
	head = append(head, "ima-ng"...)
	head = le.AppendUint32(head, 0x7fffff00) // template data length
	const body = 8 << 20
	check := func(what string, err error) {
		t.Helper()
		var de *template.DecodeError
		if !errors.Is(err, template.ErrTemplateData) || !errors.As(err, &de) || de.Index != 0 || de.Offset != 34 ||
			!strings.Contains(err.Error(), "exceeds the cap") {
			t.Errorf("%s: %v, want the template data cap at record 0 offset 34", what, err)
		}
	}
	got := allocated(func() {
		rd, err := NewReader(io.MultiReader(bytes.NewReader(head), &repeatReader{b: 0, n: body}), Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = rd.Verify(Expected{tpmext.SHA1: {10: make([]byte, 20)}}, ReplayOptions{})
		check("Reader.Verify", err)
	})
	if got > 256<<10 {
		t.Errorf("Reader.Verify allocated %d bytes", got)
	}
	input := append(bytes.Clone(head), make([]byte, body)...)
	got = allocated(func() {
		_, err := ParseEventLog(input, Options{})
		check("ParseEventLog", err)
	})
	if got > 64<<10 {
		t.Errorf("ParseEventLog allocated %d bytes", got)
	}
}

// TestLongASCIILine: issue 11 item 6. An ASCII line over MaxLineLen fails
// with its line number, and reading it holds no more than the cap, however
// long the line runs.
func TestLongASCIILine(t *testing.T) {
	good := "10 d7026dc672344d3ee372217bdbc7395947788671 ima 6f66d1d8e2fffcc12dfcb78c04b81fe5b8bbae4e /usr/bin/kmod\n"
	opts := Options{ASCII: true, MaxDataLen: 4096}
	limit := MaxLineLen(opts.MaxDataLen)
	check := func(what string, err error) {
		t.Helper()
		var de *template.DecodeError
		if !errors.Is(err, ErrASCII) || !errors.As(err, &de) || de.Index != 1 || de.RecordOffset != int64(len(good)) ||
			!strings.Contains(err.Error(), fmt.Sprintf("line 2 is longer than %d bytes", limit)) {
			t.Errorf("%s: %v, want line 2 (record 1 at %d) over %d bytes", what, err, len(good), limit)
		}
	}
	const long = 64 << 20 // no newline
	got := allocated(func() {
		rd, err := NewReader(io.MultiReader(bytes.NewReader([]byte(good)), &repeatReader{b: 'a', n: long}), opts)
		if err != nil {
			t.Fatal(err)
		}
		_, err = rd.Replay(ReplayOptions{})
		check("Reader", err)
	})
	if got > 1<<20 {
		t.Errorf("Reader allocated %d bytes for a line cut at %d", got, limit)
	}
	text := append([]byte(good), bytes.Repeat([]byte("a"), limit+1)...)
	_, err := ParseEventLog(text, opts)
	check("ParseEventLog", err)
	// A line of exactly the cap is read (and refused for what it is).
	text = append(append([]byte(good), bytes.Repeat([]byte("a"), limit)...), '\n')
	if _, err := ParseEventLog(text, opts); err == nil || strings.Contains(err.Error(), "longer than") {
		t.Errorf("a line of %d bytes: %v, want an ordinary ASCII error", limit, err)
	}
}

// TestWorkersClamped: issue 11 item 6. A huge Workers is clamped to the
// CPUs: a small streamed list costs what it costs with one worker per CPU.
func TestWorkersClamped(t *testing.T) {
	if got := clampWorkers(1 << 40); got != runtime.NumCPU() {
		t.Errorf("clampWorkers(1<<40) = %d, want NumCPU %d", got, runtime.NumCPU())
	}
	l := generate(t, gen.Config{Records: 20, Banks: allBanks})
	data := binaryOf(t, l, tpmext.SHA1)
	want := expect(l.PCRs, 10)
	got := allocated(func() {
		rd, _ := NewReader(bytes.NewReader(data), Options{})
		if _, err := rd.Verify(want, ReplayOptions{Workers: 200_000}); err != nil {
			t.Fatal(err)
		}
	})
	if got > 8<<20 {
		t.Errorf("a 20-record verify with 200,000 workers allocated %d bytes", got)
	}
}
