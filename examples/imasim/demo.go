package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/imasim/imasim/tpmext"
)

func init() {
	commands["demo"] = command{"boot a simulated TPM, extend PCRs, print them", runDemo}
}

// openTPM returns the TPM back end named by kind: "simulator" (needs cgo),
// "software", or "auto" (the simulator when this build has it).
func openTPM(kind string, banks []tpmext.Algorithm) (tpmext.TPM, string, error) {
	if kind == "auto" {
		kind = "software"
		if tpmext.SimulatorAvailable {
			kind = "simulator"
		}
	}
	switch kind {
	case "simulator":
		s, err := tpmext.NewSimulator(banks...)
		return s, "go-tpm-tools simulator", err
	case "software":
		s, err := tpmext.NewSoftware(banks...)
		return s, "pure-Go software banks", err
	}
	return nil, "", fmt.Errorf("unknown TPM back end %q (want auto, simulator or software)", kind)
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tpmKind := fs.String("tpm", "auto", "TPM back end: auto, simulator or software")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tpm, what, err := openTPM(*tpmKind, nil)
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return 1
	}
	defer tpm.Close()

	fmt.Fprintln(stdout, "imasim demo")
	fmt.Fprintln(stdout, "Only the TPM layer exists so far: the measurement list, staging and")
	fmt.Fprintln(stdout, "the collector come with later issues. This run boots a TPM, extends")
	fmt.Fprintln(stdout, "PCRs 0-9 as firmware would and PCR 10 as IMA would, and prints them.")
	fmt.Fprintf(stdout, "\nTPM: %s, banks %v\n", what, tpm.Banks())
	extend := func(pcr int, event string) error {
		var ds []tpmext.Digest
		for _, alg := range tpm.Banks() {
			ds = append(ds, tpmext.Digest{Alg: alg, Value: alg.Sum([]byte(event))})
		}
		return tpm.Extend(pcr, ds)
	}
	for pcr := 0; pcr < 10; pcr++ {
		if err := extend(pcr, fmt.Sprintf("firmware event for PCR %d", pcr)); err != nil {
			fmt.Fprintln(stderr, "imasim demo:", err)
			return 1
		}
	}
	for i := 0; i < 3; i++ {
		if err := extend(10, fmt.Sprintf("measurement %d", i)); err != nil {
			fmt.Fprintln(stderr, "imasim demo:", err)
			return 1
		}
	}
	pcrs, err := tpm.ReadPCRs()
	if err != nil {
		fmt.Fprintln(stderr, "imasim demo:", err)
		return 1
	}
	for _, alg := range tpm.Banks() {
		fmt.Fprintf(stdout, "\n%s bank:\n", alg)
		for pcr := 0; pcr <= 10; pcr++ {
			fmt.Fprintf(stdout, "  PCR-%02d: %x\n", pcr, pcrs[alg][pcr])
		}
	}
	return 0
}
