// Command imagen writes a generated measurement list and its PCR values,
// for scripts/compare-evmctl.sh:
//
//	go run ./ima/eventlog/internal/imagen -n 100000 -out DIR
//
// writes DIR/binary_runtime_measurements (the legacy SHA-1 column),
// DIR/binary_runtime_measurements_<bank> and
// DIR/ascii_runtime_measurements_<bank> for each bank, and
// DIR/pcrs-<bank> (evmctl's --pcrs format, PCR-00 to PCR-23).
//
// No kernel counterpart; it exists to feed the speed comparison.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

func main() {
	n := flag.Int("n", 100000, "number of records")
	out := flag.String("out", ".", "output directory")
	banks := flag.String("banks", "sha1,sha256", "TPM banks")
	tmpl := flag.String("template", "ima-ng", "template of the records (a builtin name)")
	viol := flag.Int("violations", 0, "make every k-th record a violation (0: none)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if err := run(*n, *out, *banks, *tmpl, *viol, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "imagen:", err)
		os.Exit(1)
	}
}

func run(n int, out, banks, tmpl string, viol int, seed uint64) error {
	bs, err := tpmext.ParseBanks(banks)
	if err != nil {
		return err
	}
	desc := template.Builtin(tmpl)
	if desc == nil {
		return fmt.Errorf("unknown template %q", tmpl)
	}
	l, err := gen.Generate(gen.Config{Records: n, Templates: []*template.Descriptor{desc}, Banks: bs, ViolationEvery: viol, Seed: seed})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	write := func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(out, name), data, 0o644)
	}
	legacy, err := l.Binary(tpmext.SHA1)
	if err != nil {
		return err
	}
	if err := write("binary_runtime_measurements", legacy); err != nil {
		return err
	}
	for _, b := range bs {
		bin, err := l.Binary(b)
		if err != nil {
			return err
		}
		ascii, err := l.ASCII(b)
		if err != nil {
			return err
		}
		if err := write("binary_runtime_measurements_"+b.String(), bin); err != nil {
			return err
		}
		if err := write("ascii_runtime_measurements_"+b.String(), ascii); err != nil {
			return err
		}
		if err := write("pcrs-"+b.String(), eventlog.AppendPCRFile(nil, l.PCRs[b])); err != nil {
			return err
		}
	}
	return nil
}
