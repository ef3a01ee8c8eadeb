package collector

import (
	"fmt"
	"io"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// benchKernel boots a staged kernel (SHA-1 and SHA-256 banks, ima_hash
// sha256) for benchmarks, with no reference kernel.
func benchKernel(b *testing.B) *ima.Kernel {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	if err != nil {
		b.Fatal(err)
	}
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true})
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func benchMeasure(b *testing.B, k *ima.Kernel, from, n int) {
	for i := from; i < from+n; i++ {
		f := ima.File{Path: fmt.Sprintf("/usr/lib/bench/lib%08d.so", i), File: template.File{Content: fmt.Appendf(nil, "%d", i)}}
		if err := k.Measure(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCycle times one prompt cycle of 10,000 records: open, A, read,
// parse, write the batch, fsync it (file and directory), D, and the
// commit with its fsync. The measurements are outside the timer.
func BenchmarkCycle(b *testing.B) {
	const batch = 10000
	for _, flav := range []Flavour{Prompt, DeleteN} {
		b.Run(flav.String(), func(b *testing.B) {
			k := benchKernel(b)
			c, err := Open(b.TempDir(), k.FS(staging.Root(collectorTID)), Options{Flavour: flav, BootID: k.BootID(), Layout: k.Layout()})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Cycle(); err != nil { // the boot_aggregate
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				benchMeasure(b, k, i*batch, batch)
				b.StartTimer()
				res, err := c.Cycle()
				if err != nil {
					b.Fatal(err)
				}
				if res.Saved != batch {
					b.Fatalf("saved %d records, want %d", res.Saved, batch)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkServe times serving the log since boot when the store holds
// 100,000 committed records: Records(0), and WriteLog in the SHA-1 binary
// form (the stored bytes) and in the SHA-256 binary and ASCII forms
// (digests recomputed per record).
func BenchmarkServe(b *testing.B) {
	const total = 100000
	k := benchKernel(b)
	c, err := Open(b.TempDir(), k.FS(staging.Root(collectorTID)), Options{Flavour: Prompt, BootID: k.BootID(), Layout: k.Layout()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < total; i += 10000 {
		benchMeasure(b, k, i, 10000)
		if _, err := c.Cycle(); err != nil {
			b.Fatal(err)
		}
	}
	if c.Committed() != total+1 {
		b.Fatalf("committed %d", c.Committed())
	}
	b.Run("Records", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			recs, err := c.Records(0)
			if err != nil {
				b.Fatal(err)
			}
			if len(recs) != total+1 {
				b.Fatalf("%d records", len(recs))
			}
		}
		b.ReportMetric(float64(b.N*(total+1))/b.Elapsed().Seconds(), "records/s")
	})
	sha256 := -1
	for _, lf := range k.Layout().ListFiles() {
		if lf.Suffix == "sha256" {
			sha256 = lf.Slot
		}
	}
	for _, tc := range []struct {
		name   string
		format Format
		slot   int
	}{
		{"WriteLog/binary-sha1", Binary, k.Layout().SHA1Index()},
		{"WriteLog/binary-sha256", Binary, sha256},
		{"WriteLog/ascii-sha256", ASCII, sha256},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				n, err := c.WriteLog(io.Discard, 0, tc.format, tc.slot)
				if err != nil {
					b.Fatal(err)
				}
				if n != total+1 {
					b.Fatalf("%d records", n)
				}
			}
			b.ReportMetric(float64(b.N*(total+1))/b.Elapsed().Seconds(), "records/s")
		})
	}
}
