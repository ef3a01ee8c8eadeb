package eventlog

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/tpmext"
)

// benchRecords is the size of the benchmark list (ima-doc: real lists run
// to 10K-100K records).
const benchRecords = 100_000

var benchList = sync.OnceValues(func() (*gen.List, error) {
	return gen.Generate(gen.Config{Records: benchRecords, Banks: allBanks, Seed: 7})
})

func benchSetup(b *testing.B) ([]byte, Expected) {
	b.Helper()
	l, err := benchList()
	if err != nil {
		b.Fatal(err)
	}
	data, err := l.Binary(tpmext.SHA1)
	if err != nil {
		b.Fatal(err)
	}
	want := Expected{}
	for _, alg := range allBanks {
		want[alg] = map[int][]byte{10: l.PCRs[alg][10]}
	}
	return data, want
}

// BenchmarkVerify verifies a 100,000-record ima-ng list (legacy SHA-1
// column) against PCR 10 of four banks, from a stream as imasim verify
// does, and reports records/s. The floor it is compared with is
// BenchmarkHashFloor: the same template hashes and extends, in a plain
// loop on one core.
func BenchmarkVerify(b *testing.B) {
	data, want := benchSetup(b)
	for _, workers := range []int{1, 0} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
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
			b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
