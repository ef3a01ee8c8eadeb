package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// benchStore writes a store of n committed records of about 110 bytes
// (synthetic: opening and serving the stored SHA-1 form do not parse
// them) in batches of 10,000, through the store's own append path.
func benchStore(tb testing.TB, dir string, n int) {
	s, err := openStore(dir, false)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.close()
	if err := s.finishRecovery(); err != nil {
		tb.Fatal(err)
	}
	if err := s.startLog("bench-boot"); err != nil {
		tb.Fatal(err)
	}
	batch := make([][]byte, 0, 10000)
	for i := 0; i < n; i++ {
		batch = append(batch, fmt.Appendf(nil, "%0110d", i))
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.writeRecords(batch, Prompt, nil); err != nil {
				tb.Fatal(err)
			}
			if err := s.resolve(true); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// openCost opens the store in dir and returns the time taken and the
// bytes the Go heap holds afterwards (live, after a collection), and the
// time to serve the last 10 records.
func openCost(tb testing.TB, dir string) (open time.Duration, heap uint64, tail time.Duration) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	s, err := openStore(dir, false)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.finishRecovery(); err != nil {
		tb.Fatal(err)
	}
	open = time.Since(start)
	defer s.close()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if after.HeapAlloc > before.HeapAlloc {
		heap = after.HeapAlloc - before.HeapAlloc
	}
	start = time.Now()
	got := 0
	if err := s.eachCommitted(s.log.committed-10, func(int, []byte) error { got++; return nil }); err != nil {
		tb.Fatal(err)
	}
	tail = time.Since(start)
	if got != 10 {
		tb.Fatalf("served %d records", got)
	}
	return open, heap, tail
}

// BenchmarkOpenScaling opens a store of 1,000 records and one of
// IMASIM_BENCH_RECORDS (default 1,000,000, about 130 MB) in the same run
// and reports the ratios of open time, of the heap held after opening and
// of the time to serve the last 10 records, large over small: 1 means
// constant cost. open-verify-large-ms is one open of the large store with
// Options.Verify (every frame read). The open-small-ms and open-large-ms metrics are the
// medians of b.N opens.
func BenchmarkOpenScaling(b *testing.B) {
	large := 1000000
	if s := os.Getenv("IMASIM_BENCH_RECORDS"); s != "" {
		var err error
		if large, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	dirs := map[int]string{}
	for _, n := range []int{1000, large} {
		dirs[n] = filepath.Join(b.TempDir(), "store")
		if keep := os.Getenv("IMASIM_BENCH_KEEP"); keep != "" && n == large {
			dirs[n] = keep // left in place, for measuring imasim collect on it
		}
		benchStore(b, dirs[n], n)
	}
	var size int64
	ents, _ := os.ReadDir(dirs[large])
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
		}
	}
	b.ResetTimer()
	var os_, ol, ts, tl []time.Duration
	var hs, hl uint64
	for i := 0; i < b.N; i++ {
		o, h, t := openCost(b, dirs[1000])
		os_, ts, hs = append(os_, o), append(ts, t), max(hs, h)
		o, h, t = openCost(b, dirs[large])
		ol, tl, hl = append(ol, o), append(tl, t), max(hl, h)
	}
	med := func(d []time.Duration) float64 {
		for i := range d {
			for j := i + 1; j < len(d); j++ {
				if d[j] < d[i] {
					d[i], d[j] = d[j], d[i]
				}
			}
		}
		return float64(d[len(d)/2])
	}
	b.StopTimer()
	start := time.Now()
	s, err := openStore(dirs[large], true)
	if err != nil {
		b.Fatal(err)
	}
	verify := time.Since(start)
	s.close()
	b.ReportMetric(float64(verify)/1e6, "open-verify-large-ms")
	b.ReportMetric(float64(size)/(1<<20), "large-store-MiB")
	b.ReportMetric(med(os_)/1e6, "open-small-ms")
	b.ReportMetric(med(ol)/1e6, "open-large-ms")
	b.ReportMetric(med(ol)/med(os_), "open-ratio")
	b.ReportMetric(float64(hl)/(1<<10), "heap-large-KiB")
	b.ReportMetric(float64(max(hl, 1))/float64(max(hs, 1)), "heap-ratio")
	b.ReportMetric(med(tl)/med(ts), "serve-last-10-ratio")
}
