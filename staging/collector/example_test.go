package collector_test

import (
	"bytes"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

// Collect what a kernel with CONFIG_IMA_STAGING stages into a durable
// store, keep measuring, then serve the log since boot (the store, then
// what the kernel still holds) and verify it against the TPM: the main
// job of the user-space half of the staging series.
func Example() {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	if err != nil {
		log.Fatal(err)
	}
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true})
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "collector-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The collector drives the securityfs as a root task; on a real
	// machine, staging.Dir("/sys/kernel/security/ima") instead.
	c, err := collector.Open(filepath.Join(dir, "store"), k.FS(staging.Root(1)),
		collector.Options{Flavour: collector.Prompt, BootID: k.BootID(), Layout: k.Layout()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	measure := func(from, to int) {
		for i := from; i < to; i++ {
			path := fmt.Sprintf("/usr/bin/tool-%d", i)
			if err := k.Measure(ima.NewFile(path, []byte(path))); err != nil {
				log.Fatal(err)
			}
		}
	}
	measure(0, 5)
	res, err := c.Cycle() // A, read, save durably, D
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cycle: read %d, saved and deleted %d\n", res.Read, res.Saved)
	measure(5, 8)

	var buf bytes.Buffer
	n, err := c.WriteLog(&buf, 0, collector.Binary, k.Layout().SHA1Index())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("log since boot: %d records, %d from the store\n", n, c.Committed())

	el, err := eventlog.ParseEventLog(buf.Bytes(), eventlog.Options{})
	if err != nil {
		log.Fatal(err)
	}
	pcrs, err := tpm.ReadPCRs()
	if err != nil {
		log.Fatal(err)
	}
	want, err := eventlog.ExpectedFrom(pcrs)
	if err != nil {
		log.Fatal(err)
	}
	_, err = el.Verify(want, eventlog.ReplayOptions{})
	fmt.Println("replays to PCR 10 of every bank:", err == nil)
	// Output:
	// cycle: read 6, saved and deleted 6
	// log since boot: 9 records, 6 from the store
	// replays to PCR 10 of every bank: true
}
