package eventlog

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	"github.com/imasim/imasim/ima/eventlog/internal/gen"
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
