package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

func init() {
	commands["verify"] = command{"check a measurement list against PCR values (evmctl ima_measurement, strictly)", runVerify}
}

const verifyHelp = `usage: imasim verify --pcrs ALG,FILE [--pcrs ALG,FILE]... [flags] LOG

Replays LOG, an IMA measurement list, into the PCR banks named with --pcrs
and checks that the whole list ends exactly at the values in the files:

  - every record's template digest matches its template data (checked in
    the column's algorithm: SHA-1 for the 20-byte column);
  - every record extends a PCR that --pcr checks;
  - after the last record, each checked PCR of each bank equals the file's
    value. A list with records appended after the point where the values
    match fails (evmctl ima_measurement passes it).

A record may hold at most 16 MiB of template data and an ASCII line at
most 32 MiB + 1 KiB (template.MaxTemplateDataLen, eventlog.MaxLineLen):
larger ones are refused at their length field, so memory stays bounded
whatever LOG claims.

Exit status: 0 when LOG verifies; 1 when it does not, with one line on
stderr naming the first problem and its record index (from 0) and byte
offset; 2 for usage errors, an unreadable LOG, unreadable or malformed PCR
files, and a --resume state that does not fit LOG.

PCR files, one per bank (evmctl's --pcrs), in either style:
  PCR-10: 9be6bac02bf18d09d17e726c2df00bca4e8831ea     (evmctl, TPM 1.2 sysfs)
   PCR 10: 9b e6 ba c0 2b f1 8d 09 d1 7e ...          (IBM TSS imakvtpcr10.txt)
A file may hold the values of several banks for one PCR; the value with
the bank's digest size is used.

Examples:
  imasim verify --pcrs sha1,pcrs-sha1 --pcrs sha256,pcrs-sha256 \
      /sys/kernel/security/ima/binary_runtime_measurements
  imasim verify --digest-len 32 --pcrs sha256,imakvtpcr10.txt sha256.log
  imasim verify --ascii --pcrs sha384,pcr10.txt ascii_runtime_measurements_sha384
  imasim verify --prefix --pcrs sha256,quoted.txt LOG   # how many records a quote covers

Flags:
`

// pcrsFlag collects --pcrs ALG,FILE values.
type pcrsFlag []struct {
	alg  tpmext.Algorithm
	file string
}

func (p *pcrsFlag) String() string { return "" }

func (p *pcrsFlag) Set(s string) error {
	algName, file, ok := strings.Cut(s, ",")
	if !ok { // evmctl: no algorithm means sha1
		algName, file = "sha1", s
	}
	alg, err := tpmext.ParseAlgorithm(algName)
	if err != nil {
		return err
	}
	if file == "" {
		return errors.New("no file")
	}
	for _, q := range *p {
		if q.alg == alg {
			return fmt.Errorf("bank %v given twice", alg)
		}
	}
	*p = append(*p, struct {
		alg  tpmext.Algorithm
		file string
	}{alg, file})
	return nil
}

// listFlags are the flags that say how to read a list, shared by verify
// and parse.
type listFlags struct {
	digestLen int
	columnAlg string
	bigEndian bool
	ascii     bool
}

func (lf *listFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&lf.digestLen, "digest-len", 0, "template-digest column width of a binary list: 20 (binary_runtime_measurements), 32, 48 or 64 (binary_runtime_measurements_<alg>); an ASCII list's width is read from its first line. Without this flag, --ascii, --column-alg and --big-endian, the format is found from the start of LOG")
	fs.StringVar(&lf.columnAlg, "column-alg", "", "algorithm of the column (default: sha1 for 20 bytes, sha256 for 32, sha384 for 48, sha512 for 64; say sm3_256 for a *_sm3 list)")
	fs.BoolVar(&lf.bigEndian, "big-endian", false, "the list comes from a big-endian kernel booted without ima_canonical_fmt")
	fs.BoolVar(&lf.ascii, "ascii", false, "LOG is an ascii_runtime_measurements file (its template data is rebuilt from the fields); found without the flag when no format flag is given")
}

// given reports whether a flag names the list's format.
func (lf *listFlags) given() bool {
	return lf.digestLen != 0 || lf.columnAlg != "" || lf.bigEndian || lf.ascii
}

func (lf *listFlags) options() (eventlog.Options, error) {
	o := eventlog.Options{ASCII: lf.ascii, DigestSize: lf.digestLen}
	if lf.bigEndian {
		o.Order = template.BigEndian
	}
	if lf.columnAlg != "" {
		a, err := tpmext.ParseAlgorithm(lf.columnAlg)
		if err != nil {
			return o, err
		}
		o.ColumnAlg = a
	}
	switch lf.digestLen {
	case 0, 20, 32, 48, 64:
	default:
		if o.ColumnAlg == 0 {
			return o, fmt.Errorf("--digest-len %d: want 20, 32, 48 or 64 (or name --column-alg)", lf.digestLen)
		}
	}
	return o, nil
}

func runVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("verify", verifyHelp, stdout)
	var pcrs pcrsFlag
	var lf listFlags
	fs.Var(&pcrs, "pcrs", "expected PCR values of bank `ALG,FILE`: ALG is sha1, sha256, sha384, sha512, sm3_256, ...; repeat for each bank (at least one); FILE alone means sha1, as with evmctl")
	pcrList := fs.String("pcr", "10", "comma-separated PCRs to check; every record must extend one of them (add the PCRs of policy pcr= rules)")
	lf.register(fs.FlagSet)
	violations := fs.String("violations", "ff", "what a violation (all-zero template digest) extends: ff as the kernel does, or zero as evmctl does without --ignore-violations")
	padded := fs.Bool("padded-sha1", false, "replay as kernels before 5.8 extended: the SHA-1 template digest zero-padded into every bank")
	prefix := fs.Bool("prefix", false, "succeed when some prefix of LOG reaches the values (a quote lags the list) and print N, the records it covers; the rest is not read")
	resume := fs.String("resume", "", "start from the state saved in `FILE` by --save-state (LOG holds the whole list, or starts at the state's record with --first-record)")
	first := fs.Int("first-record", 0, "LOG starts at this record of the list (a tail sent by an agent); needs --resume")
	save := fs.String("save-state", "", "write the state reached (records replayed, every PCR of every bank) to `FILE` as JSON (banks by name, values in hex), for --resume")
	workers := fs.Int("workers", 0, "hashing goroutines (0: one per CPU; more than the number of CPUs is clamped to it)")
	var quote quoteFlags
	quote.register(fs.FlagSet)
	posArgs, code, ok := fs.parse(args, true, stderr)
	if !ok {
		return code
	}
	usageErr := func(format string, a ...any) int { return usageErr(stderr, "verify", format, a...) }
	if len(posArgs) != 1 {
		return usageErr("want exactly one LOG, got %d arguments", len(posArgs))
	}
	if len(pcrs) == 0 && !quote.given() {
		return usageErr("no --pcrs ALG,FILE given")
	}
	opts, err := lf.options()
	if err != nil {
		return usageErr("%v", err)
	}
	var ropts eventlog.ReplayOptions
	switch *violations {
	case "ff":
	case "zero":
		ropts.Violations = eventlog.ViolationsZero
	default:
		return usageErr("--violations %q: want ff or zero", *violations)
	}
	ropts.PaddedSHA1 = *padded
	ropts.Workers = *workers
	var check []int
	for _, s := range strings.Split(*pcrList, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p < 0 || p >= tpmext.NumPCRs {
			return usageErr("--pcr %q: want PCR numbers 0-%d", *pcrList, tpmext.NumPCRs-1)
		}
		check = append(check, p)
	}
	slices.Sort(check)
	check = slices.Compact(check)
	want := eventlog.Expected{}
	for _, p := range pcrs {
		f, err := os.Open(p.file)
		if err != nil {
			return usageErr("%v", err)
		}
		vals, err := eventlog.ParsePCRFile(f, p.alg)
		f.Close()
		if err != nil {
			return usageErr("%s: %v", p.file, err)
		}
		want[p.alg] = map[int][]byte{}
		for _, i := range check {
			v, ok := vals[i]
			if !ok {
				return usageErr("%s: no value for PCR %d of bank %v", p.file, i, p.alg)
			}
			want[p.alg][i] = v
		}
	}
	if *first != 0 && *resume == "" {
		return usageErr("--first-record needs --resume")
	}
	if *resume != "" {
		b, err := os.ReadFile(*resume)
		if err != nil {
			return usageErr("%v", err)
		}
		var st eventlog.State
		if err := json.Unmarshal(b, &st); err != nil {
			return usageErr("%s: %v", *resume, err)
		}
		ropts.From = &st
		opts.FirstIndex = *first
		if *first != 0 {
			opts.FirstOffset = st.Offset
		}
	}

	var quoted []eventlog.QuoteDigest
	var quoteSel tpmext.Selection
	if quote.given() {
		if quoted, quoteSel, err = quote.target(check); err != nil {
			if errors.Is(err, errQuoteRejected) {
				fmt.Fprintf(stderr, "imasim verify: %v\n", err)
				return 1
			}
			return usageErr("%v", err)
		}
	}

	name := posArgs[0]
	in, br, opts, hint, err := openListAs(name, &lf, opts)
	if err != nil {
		return usageErr("%v", err)
	}
	defer in.Close()
	rd, err := eventlog.NewReader(br, opts)
	if err != nil {
		return usageErr("%v", err)
	}
	var st *eventlog.State
	if *prefix || quote.given() {
		_, st, err = rd.ReplayUntil(eventlog.Target{PCRs: want, Quotes: quoted}, ropts)
	} else {
		st, err = rd.Verify(want, ropts)
	}
	if err != nil {
		if hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		fmt.Fprintf(stderr, "imasim verify: %s: %v\n", name, err)
		if errors.Is(err, eventlog.ErrState) || errors.Is(err, eventlog.ErrOptions) {
			return exitUsage
		}
		return exitFail
	}
	if *save != "" {
		b, err := json.MarshalIndent(st, "", "  ")
		if err == nil {
			err = os.WriteFile(*save, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "imasim verify: saving the state: %v\n", err)
			return 2
		}
	}
	var banks []string
	for _, p := range pcrs {
		banks = append(banks, p.alg.String())
	}
	what := fmt.Sprintf("%s PCR %s", strings.Join(banks, ", "), strings.Trim(strings.Join(strings.Fields(fmt.Sprint(check)), ","), "[]"))
	if quote.given() {
		fmt.Fprintf(stdout, "%s: the quote of %v PCR %s (signature and nonce checked) covers N = %d records\n", name, quoteSel.Alg, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(check)), ","), "[]"), st.Records)
	} else if *prefix {
		fmt.Fprintf(stdout, "%s: the values are reached after N = %d records (%s)\n", name, st.Records, what)
	} else {
		fmt.Fprintf(stdout, "%s: verified %d records (%s)\n", name, st.Records, what)
	}
	return 0
}
