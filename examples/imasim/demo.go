package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

func init() {
	commands["demo"] = command{"measure, stage both ways, kexec between A and D, verify against PCR 10", runDemo}
}

// tpmFlagHelp describes --tpm for every command that opens a TPM.
const tpmFlagHelp = "TPM: auto (the simulator when built with cgo, else software), software, simulator, swtpm:HOST:PORT[,ctrl=PORT] (swtpm over TCP; control port PORT+1 by default) or device:PATH (e.g. device:/dev/tpmrm0)"

// openTPM opens the TPM named by spec (tpmext.Open's spelling, or "auto":
// the simulator when this build has it, else software) with the given
// banks, and says what it is. The simulated kernel boots next, so the TPM
// is reset first (a host reboot) where the platform allows it: a swtpm
// left extended by an earlier run starts from zero again. A device keeps
// its PCRs.
func openTPM(spec string, banks []tpmext.Algorithm) (tpmext.TPM, string, error) {
	if spec == "auto" {
		spec = "software"
		if tpmext.SimulatorAvailable {
			spec = "simulator"
		}
	}
	tpm, err := tpmext.Open(spec, banks...)
	if err != nil {
		return nil, "", err
	}
	if err := tpm.Reset(); err != nil && !errors.Is(err, tpmext.ErrNoReset) {
		tpm.Close()
		return nil, "", err
	}
	what := "pure-Go software PCR banks"
	if t, ok := tpm.(*tpmext.Transport); ok {
		what = t.String()
	}
	return tpm, what, nil
}

const demoHelp = `usage: imasim demo [flags]

Boots a simulated kernel with CONFIG_IMA_STAGING and CONFIG_IMA_KEXEC,
measures a seeded workload, collects staged records with both flavours in
turn (prompt: A, read, D; and N), kexecs between A and D, and verifies the
concatenated log against PCR 10 of every bank. The output is the same for
the same seed and flags.

flags:
`

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", demoHelp, stdout)
	tpmKind := fs.String("tpm", "auto", tpmFlagHelp)
	records := fs.Int("records", 425, "measurement events")
	seed := fs.Int64("seed", 7, "workload seed")
	if pos, code, ok := fs.parse(args, false, stderr); !ok {
		return code
	} else if len(pos) != 0 {
		return usageErr(stderr, "demo", "takes no arguments, got %q", pos)
	}
	dir, err := os.MkdirTemp("", "imasim-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return exitFail
	}
	defer os.RemoveAll(dir)
	w := &workload{
		Records: *records, Flavour: "both", StageEvery: 50, Template: "ima-ng",
		Violations: *records / 60, KexecAfter: *records / 2, Seed: *seed, TPMKind: *tpmKind,
		StoreDir: filepath.Join(dir, "store"),
		// Boot ids from the seed too, so that the whole output repeats
		// (the store is new each run, so no boot id is met twice).
		BootIDRand: rand.New(rand.NewSource(*seed ^ 0xb007)),
		progress:   func(s string) { fmt.Fprintln(stdout, "  "+s) },
	}
	fmt.Fprintln(stdout, "imasim demo: a simulated Linux 7.2 IMA with CONFIG_IMA_STAGING and CONFIG_IMA_KEXEC")
	if err := w.run(); err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return exitFail
	}
	defer w.tpm.Close()
	defer w.coll.Close()
	fmt.Fprintf(stdout, "  TPM: %s, banks %v\n", w.tpmWhat, w.tpm.Banks())

	q := w.kernel.Queue()
	var log bytes.Buffer
	n, err := w.coll.WriteLog(&log, 0, collector.Binary, w.kernel.Layout().SHA1Index())
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return exitFail
	}
	s := w.stats
	fmt.Fprintf(stdout, "\nmeasured       %d files (%d re-measurements rejected as duplicates), %d violations\n", s.measured, s.duplicates, s.violations)
	fmt.Fprintf(stdout, "collected      %d cycles, prompt (A, read, D) and N in turn; %d records saved and deleted from the kernel\n", s.cycles, s.saved)
	fmt.Fprintf(stdout, "kexec          %d, between A and D: D answered ESTALE %d time(s), the staged records rode along\n", s.kexecs, s.stale)
	fmt.Fprintf(stdout, "kernel list    at most %d records (%d bytes serialized); now %d records (%d bytes)\n",
		s.peakKernelRecords, s.peakKernelBytes, q.NumRecords(measlist.Binary)+q.NumRecords(measlist.BinaryStaged), kernelListBytes(q))
	mem := q.KernelMemory()
	fmt.Fprintf(stdout, "kernel memory  modelled slab use of this kernel: %d bytes (%d listed records, %d kept for the hash table, %d hash table);\n"+
		"               %d bytes had nothing been staged: staging freed %.0f%%\n",
		mem.Total(), mem.Lists, mem.Retained, mem.Htable, mem.WithoutStaging, 100*(1-float64(mem.Total())/float64(mem.WithoutStaging)))
	fmt.Fprintf(stdout, "log since boot %d records: %d from the collector's store, %d still in the kernel\n", n, w.coll.Committed(), n-w.coll.Committed())

	el, err := eventlog.ParseEventLog(log.Bytes(), eventlog.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return exitFail
	}
	pcrs, err := w.tpm.ReadPCRs()
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return exitFail
	}
	want, err := eventlog.ExpectedFrom(pcrs)
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return exitFail
	}
	if _, err := el.Verify(want, eventlog.ReplayOptions{}); err != nil {
		fmt.Fprintf(stdout, "verification   FAILED: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "verification   the concatenated log replays to PCR 10 of every bank (%v): OK\n", w.tpm.Banks())
	return 0
}
