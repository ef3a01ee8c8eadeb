package main

import (
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

func TestScratchReadCost(t *testing.T) {
	banks, _ := tpmext.ParseBanks("sha1,sha256")
	w := &workload{Banks: banks, Template: "ima-ng", Seed: 1, TPMKind: "software"}
	if err := w.boot(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		w.measure(r, i, false)
	}
	f, err := w.kernel.SecurityFS().Open(staging.Root(1), "binary_runtime_measurements", 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	start := time.Now()
	n, reads := 0, 0
	for {
		k, err := f.Read(buf)
		n += k
		reads++
		if err == io.EOF {
			break
		}
	}
	t.Logf("%d bytes in %d reads: %v (%v per read)", n, reads, time.Since(start), time.Since(start)/time.Duration(reads))
}
