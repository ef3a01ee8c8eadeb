package eventlog

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/tpmext"
)

// benchRecords is the size of the benchmark list (ima-doc: real lists run
// to 10K-100K records).
const benchRecords = 100_000

var benchList = sync.OnceValues(func() (*gen.List, error) {
	return gen.Generate(gen.Config{Records: benchRecords, Banks: allBanks, Seed: 7})
})

// benchBinary returns the benchmark list and its legacy binary form
// (SHA-1 column).
func benchBinary(b *testing.B) (*gen.List, []byte) {
	l, err := benchList()
	if err != nil {
		b.Fatal(err)
	}
	data, err := l.Binary(tpmext.SHA1)
	if err != nil {
		b.Fatal(err)
	}
	return l, data
}

// hashFloor replays the records of l into banks in one plain loop on one
// core: the template digests and extends, nothing else (no parsing, no
// checks). It is the floor BenchmarkVerify is compared with.
func hashFloor(l *EventLog, banks []tpmext.Algorithm) {
	hs := make([]*hasher, len(banks))
	vals := make([][]byte, len(banks))
	for j, b := range banks {
		hs[j] = newHasher(b)
		vals[j] = make([]byte, b.Size())
	}
	d := make([]byte, 64)
	scratch := make([]byte, 128)
	var in [imaHashInputLen]byte
	for i := range l.recs {
		data := hashInput(l.data, &l.recs[i], &in)
		for j, h := range hs {
			h.sum(d[:banks[j].Size()], data)
			h.extend(vals[j], d[:banks[j].Size()], scratch)
		}
	}
}

// BenchmarkVerify verifies a 100,000-record ima-ng list (legacy SHA-1
// column) from a stream, as imasim verify does, against PCR 10 of four
// banks and of the two evmctl knows. It reports records/s and the ratio
// to hashFloor measured in the same run ("x-floor" below 1 means the
// hashing across cores beat one core doing only the hashes).
func BenchmarkVerify(b *testing.B) {
	l, data := benchBinary(b)
	log, err := ParseEventLog(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, banks := range [][]tpmext.Algorithm{allBanks, allBanks[:2]} {
		want := Expected{}
		for _, alg := range banks {
			want[alg] = map[int][]byte{10: l.PCRs[alg][10]}
		}
		floor := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			hashFloor(log, banks)
			floor = min(floor, time.Since(start))
		}
		for _, workers := range []int{1, 0} {
			b.Run(fmt.Sprintf("banks=%d/workers=%d", len(banks), workers), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					rd, err := NewReader(bytes.NewReader(data), Options{})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := rd.Verify(want, ReplayOptions{Workers: workers}); err != nil {
						b.Fatal(err)
					}
				}
				perOp := b.Elapsed() / time.Duration(b.N)
				b.ReportMetric(float64(benchRecords)/perOp.Seconds(), "records/s")
				b.ReportMetric(float64(perOp)/float64(floor), "x-floor")
			})
		}
	}
}

// BenchmarkParseEventLog frames the 100,000-record list in memory: the
// cost of the record scanner alone (no hashing), in records/s.
func BenchmarkParseEventLog(b *testing.B) {
	_, data := benchBinary(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEventLog(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRecords)/(b.Elapsed()/time.Duration(b.N)).Seconds(), "records/s")
}
