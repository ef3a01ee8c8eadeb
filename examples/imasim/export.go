package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/tpmext"
)

func init() {
	commands["export"] = command{"run a seeded workload with the collector and write the log since boot", runExport}
}

const exportHelp = `usage: imasim export --dir D [flags]

Runs a seeded workload on a simulated kernel with CONFIG_IMA_STAGING and
CONFIG_IMA_KEXEC, collects staged records with the user-space collector,
and writes into D:

  binary_runtime_measurements, ascii_runtime_measurements
      the whole log since boot (the collector's store, then what the
      kernel still holds), SHA-1 column: the input evmctl reads
  binary_runtime_measurements_<alg>, ascii_runtime_measurements_<alg>
      the same log with each bank's template digests
  pcrs-<alg>.txt
      PCR-00 to PCR-23 of each bank, read from the TPM at the end, in
      evmctl's --pcrs format
  quote.msg, quote.sig, quote.nonce, ak.pub, ak.pem
      a TPM2_Quote of PCR 10 (SHA-256 bank, else the first) with --nonce,
      as tpm2_quote writes it (TPMS_ATTEST, TPMT_SIGNATURE), the nonce in
      hex, and the attestation key as TPM2B_PUBLIC and PEM
  kernel/
      what the simulated kernel still holds: every securityfs file with
      its permission bits, and its symlinks
  store/
      the collector's store

The same seed and workload give the same log whatever the flavour and
staging interval, unless --flush lets duplicates back in.

Check it with evmctl:
  evmctl -v ima_measurement --ignore-violations \
      --pcrs sha1,D/pcrs-sha1.txt --pcrs sha256,D/pcrs-sha256.txt \
      D/binary_runtime_measurements
and the quote with tpm2-tools and imasim:
  tpm2_checkquote -u D/ak.pub -m D/quote.msg -s D/quote.sig -g sha256 -q $(cat D/quote.nonce)
  imasim verify --quote D/quote.msg --sig D/quote.sig --ak-pub D/ak.pub \
      --nonce $(cat D/quote.nonce) D/binary_runtime_measurements

flags:
`

func runExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("export", exportHelp, stdout)
	dir := fs.String("dir", "", "output directory (required)")
	records := fs.Int("records", 1000, "measurement events")
	flavour := fs.String("flavour", "prompt", "staging flavour: prompt, n, both (in turn) or none")
	every := fs.Int("stage-every", 100, "run a collection cycle every K events")
	banks := fs.String("banks", "sha1,sha256", "TPM banks, in the TPM's order")
	tmpl := fs.String("template", "ima-ng", "ima_template (ima needs --hash sha1 or md5, as in the kernel)")
	hash := fs.String("hash", "sha256", "ima_hash: the file-digest algorithm")
	violations := fs.Int("violations", 0, "violation events among the records")
	kexecAfter := fs.Int("kexec-after", 0, "kexec after K events (between A and D with --flavour prompt); 0: never")
	flush := fs.Bool("flush", false, "boot with ima_flush_htable")
	seed := fs.Int64("seed", 1, "workload seed")
	tpmKind := fs.String("tpm", "software", tpmFlagHelp)
	quiet := fs.Bool("q", false, "print nothing but errors")
	nonceHex := fs.String("nonce", "", "the quote's nonce in `HEX` (default: 20 random bytes)")
	pos, code, ok := fs.parse(args, false, stderr)
	if !ok {
		return code
	}
	usageErr := func(format string, a ...any) int { return usageErr(stderr, "export", format, a...) }
	switch {
	case len(pos) != 0:
		return usageErr("takes no arguments, got %q (flags come first; the output directory is --dir)", pos)
	case *dir == "":
		return usageErr("--dir is required")
	case *records < 1:
		return usageErr("--records %d: want at least 1", *records)
	case *every < 1:
		return usageErr("--stage-every %d: want at least 1", *every)
	case *violations < 0 || *violations > *records:
		return usageErr("--violations %d: want 0 to --records (%d)", *violations, *records)
	case *kexecAfter < 0 || *kexecAfter > *records:
		return usageErr("--kexec-after %d: want 0 (never) to --records (%d)", *kexecAfter, *records)
	case *tmpl == "ima" && *hash != "sha1" && *hash != "md5":
		// security/integrity/ima/ima_template.c:ima_template_setup()
		// ignores ima_template=ima unless ima_hash is sha1 or md5.
		return usageErr("--template ima needs --hash sha1 or md5 (the kernel refuses ima_template=ima with ima_hash=%s: \"template does not support hash alg\")", *hash)
	}
	switch *flavour {
	case "prompt", "none":
	case "n", "both":
		if *flush {
			// docs/SPEC.md §3.4: a number written to a list file gets
			// EINVAL while ima_flush_htable is set.
			return usageErr("--flavour %s with --flush: the kernel refuses N with EINVAL while ima_flush_htable is set (use --flavour prompt)", *flavour)
		}
	default:
		return usageErr("unknown flavour %q (want prompt, n, both or none)", *flavour)
	}
	bankList, err := tpmext.ParseBanks(*banks)
	if err != nil {
		return usageErr("--banks: %v", err)
	}
	nonce, err := hex.DecodeString(*nonceHex)
	if err != nil {
		return usageErr("--nonce %q is not hex", *nonceHex)
	}
	if *nonceHex == "" {
		nonce = make([]byte, 20)
		rand.Read(nonce)
	}
	w := &workload{
		Records: *records, Flavour: *flavour, StageEvery: *every, Banks: bankList,
		Template: *tmpl, Violations: *violations, KexecAfter: *kexecAfter, Flush: *flush,
		Seed: *seed, TPMKind: *tpmKind, StoreDir: filepath.Join(*dir, "store"), Hash: *hash,
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "imasim export:", err)
		return exitFail
	}
	if err := w.run(); err != nil {
		fmt.Fprintln(stderr, "imasim export:", err)
		return exitFail
	}
	defer w.tpm.Close()
	defer w.coll.Close()
	n, err := writeExport(*dir, w)
	if err == nil {
		_, err = writeQuote(*dir, w.tpm, nonce)
	}
	if err != nil {
		fmt.Fprintln(stderr, "imasim export:", err)
		return exitFail
	}
	if !*quiet {
		fmt.Fprintf(stdout, "imasim export: %d records in the log since boot (%d measured, %d duplicates rejected, %d violations, %d kexecs); %d saved by %d %s cycles; written to %s\n",
			n, w.stats.measured, w.stats.duplicates, w.stats.violations, w.stats.kexecs, w.stats.saved, w.stats.cycles, *flavour, *dir)
	}
	return 0
}

// writeExport writes the files of an export and returns the number of
// records in the log since boot.
func writeExport(dir string, w *workload) (int, error) {
	layout := w.kernel.Layout()
	var n int
	for _, lf := range layout.ListFiles() {
		for _, format := range []collector.Format{collector.Binary, collector.ASCII} {
			name := "binary_runtime_measurements_" + lf.Suffix
			if format == collector.ASCII {
				name = "ascii_runtime_measurements_" + lf.Suffix
			}
			f, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				return 0, err
			}
			n, err = w.coll.WriteLog(f, 0, format, lf.Slot)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return 0, err
			}
			if lf.Slot == layout.SHA1Index() {
				legacy := strings.TrimSuffix(name, "_"+lf.Suffix)
				if err := copyFile(filepath.Join(dir, name), filepath.Join(dir, legacy)); err != nil {
					return 0, err
				}
			}
		}
	}
	pcrs, err := w.tpm.ReadPCRs()
	if err != nil {
		return 0, err
	}
	for _, alg := range w.tpm.Banks() {
		data := eventlog.AppendPCRFile(nil, pcrs[alg])
		if err := os.WriteFile(filepath.Join(dir, "pcrs-"+alg.String()+".txt"), data, 0o644); err != nil {
			return 0, err
		}
	}
	kdir := filepath.Join(dir, "kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return 0, err
	}
	if err := mirrorSecurityFS(kdir, w.kernel.SecurityFS(), w.kernel.FS(staging.Root(1))); err != nil {
		return 0, err
	}
	return n, nil
}

// mirrorSecurityFS writes into dir what the kernel's securityfs directory
// holds: each file's content (read as root) with its permission bits, and
// each symlink with its target. No kernel counterpart.
func mirrorSecurityFS(dir string, sfs *staging.SecurityFS, fsys staging.FS) error {
	for _, e := range sfs.ReadDir() {
		path := filepath.Join(dir, e.Name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if e.Target != "" {
			if err := os.Symlink(e.Target, path); err != nil {
				return err
			}
			continue
		}
		data, err := staging.ReadFile(fsys, e.Name)
		if err != nil {
			return fmt.Errorf("reading the kernel's %s: %w", e.Name, err)
		}
		if err := os.WriteFile(path, data, e.Mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(path, e.Mode.Perm()); err != nil { // whatever the umask
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}
