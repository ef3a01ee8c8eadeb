package eventlog

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imasim/imasim/ima/eventlog/evmctl"
	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// evmctlRun is one run of evmctl ima_measurement, with the judge recipe.
type evmctlRun struct{ evmctl.Result }

// runEvmctl writes list into dir and runs the judge command of
// docs/SPEC.md §6.2 on it.
func runEvmctl(t *testing.T, path, dir string, list []byte, pcrs tpmext.PCRValues, ignoreViolations bool) evmctlRun {
	t.Helper()
	logFile := filepath.Join(dir, "binary_runtime_measurements")
	if err := os.WriteFile(logFile, list, 0o644); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, b := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256} {
		f := filepath.Join(dir, "pcrs-"+b.String())
		if err := os.WriteFile(f, AppendPCRFile(nil, pcrs[b]), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, b.String()+","+f)
	}
	r, err := evmctl.Run(path, logFile, files, ignoreViolations)
	if err != nil {
		t.Fatal(err)
	}
	return evmctlRun{r}
}

func (r evmctlRun) judge(records int, padded bool) bool { return r.Accepts(records, padded) }

// TestAgreementWithEvmctl generates good and bad lists and checks that
// evmctl (judged by the recipe) and Verify accept and reject the same
// ones, except where evmctl is known to be lenient or limited, which is
// asserted explicitly.
func TestAgreementWithEvmctl(t *testing.T) {
	evmctl, err := exec.LookPath("evmctl")
	if err != nil {
		t.Skip("evmctl is not on PATH: skipping the agreement checks with evmctl ima_measurement (apt-get install ima-evm-utils; .ci/run installs it)")
	}
	two := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	type listT = struct {
		data   []byte
		pcrs   tpmext.PCRValues
		count  int
		pcr11  bool
		padded bool
	}
	build := func(cfg gen.Config) listT {
		cfg.Banks = two
		l := generate(t, cfg)
		return listT{data: binaryOf(t, l, tpmext.SHA1), pcrs: l.PCRs, count: len(l.Entries), pcr11: cfg.PCR11Every > 0, padded: cfg.Pre58}
	}
	records := func(x listT) *EventLog { return mustParse(t, x.data, Options{}) }
	mixed := func() listT {
		// "ima" records then ima-ng ones: policy rules may name
		// template=ima, so the kernel can write such a list.
		l := generate(t, gen.Config{Records: 60, Banks: two, Hash: template.HashSHA1, Templates: []*template.Descriptor{template.IMA, template.IMA, template.IMANG}})
		return listT{data: binaryOf(t, l, tpmext.SHA1), pcrs: l.PCRs, count: len(l.Entries)}
	}

	cases := []struct {
		name             string
		list             func() listT
		ignoreViolations bool
		ropts            ReplayOptions
		accept           bool // the verdict both must give
		// evmctlDiffers, when set, says how evmctl's verdict differs and
		// checks its run; the agreement check is skipped.
		evmctlDiffers func(t *testing.T, r evmctlRun, x listT)
	}{
		{name: "ima-ng", list: func() listT { return build(gen.Config{Records: 500}) }, accept: true},
		{name: "ima-sig, half signed", list: func() listT {
			return build(gen.Config{Records: 300, Templates: []*template.Descriptor{template.IMASig}})
		}, accept: true},
		{name: "ima template", list: func() listT {
			return build(gen.Config{Records: 300, Hash: template.HashSHA1, Templates: []*template.Descriptor{template.IMA}})
		}, accept: true},
		{name: "ima-ng, ima-sig, ima-buf, ima-modsig, evm-sig", list: func() listT {
			return build(gen.Config{Records: 400, Templates: []*template.Descriptor{template.IMANG, template.IMASig, template.IMABuf, template.IMAModsig, template.EVMSig}})
		}, accept: true},
		{name: "PCR 10 and 11", list: func() listT { return build(gen.Config{Records: 400, PCR11Every: 3}) }, accept: true},
		{name: "violations, --ignore-violations", list: func() listT { return build(gen.Config{Records: 400, ViolationEvery: 10}) },
			ignoreViolations: true, accept: true},
		{name: "pre-5.8 padded SHA-1", list: func() listT {
			return build(gen.Config{Records: 300, Hash: template.HashSHA1, Pre58: true, ViolationEvery: 25})
		}, ignoreViolations: true, ropts: ReplayOptions{PaddedSHA1: true}, accept: true},

		{name: "violations without --ignore-violations (evmctl extends zeros)", list: func() listT {
			return build(gen.Config{Records: 400, ViolationEvery: 10})
		}, ropts: ReplayOptions{Violations: ViolationsZero}, accept: false},
		{name: "flipped template digest", list: func() listT {
			x := build(gen.Config{Records: 400})
			x.data[records(x).Record(123).Offset+10] ^= 0x40
			return x
		}, accept: false},
		{name: "flipped data byte", list: func() listT {
			x := build(gen.Config{Records: 400})
			r := records(x).Record(200)
			x.data[r.Offset+int64(len(r.Binary()))-3] ^= 0x01 // in the path
			return x
		}, accept: false},
		{name: "wrong PCR file", list: func() listT {
			x := build(gen.Config{Records: 400})
			x.pcrs[tpmext.SHA256][10] = bytes.Clone(x.pcrs[tpmext.SHA256][10])
			x.pcrs[tpmext.SHA256][10][0] ^= 1
			return x
		}, accept: false},
		{name: "truncated", list: func() listT {
			x := build(gen.Config{Records: 400})
			x.data = x.data[:len(x.data)-9]
			return x
		}, accept: false},

		{name: "trailing record (evmctl lenient)", list: func() listT {
			x := build(gen.Config{Records: 400})
			x.data = append(x.data, records(x).Record(7).Binary()...)
			x.count++
			return x
		}, accept: false, evmctlDiffers: func(t *testing.T, r evmctlRun, x listT) {
			// evmctl stops at the first entry where the banks match:
			// rc 0 and "succeed at entry" count-1. Only the judge's
			// N == count rule catches it.
			if r.RC != 0 || !bytes.Contains([]byte(r.Stderr), []byte("Matched per TPM bank")) {
				t.Errorf("evmctl no longer passes a list with a trailing record (rc %d); update the documented difference", r.RC)
			}
			for bank, n := range r.LastSucceed() {
				if n != x.count-1 {
					t.Errorf("evmctl %s succeeds at entry %d, want %d", bank, n, x.count-1)
				}
			}
			if r.judge(x.count, false) {
				t.Error("the judge recipe accepts a trailing record")
			}
		}},
		{name: "ima mixed with ima-ng (evmctl refuses)", list: mixed, accept: true, evmctlDiffers: func(t *testing.T, r evmctlRun, x listT) {
			if r.RC == 0 || !bytes.Contains([]byte(r.Stderr), []byte("Mixed measurement list")) {
				t.Errorf("evmctl accepts a list mixing ima and ima-ng (rc %d); update the documented difference", r.RC)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := c.list()
			r := runEvmctl(t, evmctl, t.TempDir(), x.data, x.pcrs, c.ignoreViolations)
			want := Expected{}
			for _, b := range two {
				// The PCR files evmctl read, through ParsePCRFile.
				vals, err := ParsePCRFile(bytes.NewReader(AppendPCRFile(nil, x.pcrs[b])), b)
				if err != nil {
					t.Fatal(err)
				}
				want[b] = map[int][]byte{10: vals[10]}
				if x.pcr11 {
					want[b][11] = vals[11]
				}
			}
			_, err := verifyBoth(t, x.data, Options{}, want, c.ropts)
			imasim := err == nil
			if imasim != c.accept {
				t.Errorf("imasim: accept=%v (%v), want %v", imasim, err, c.accept)
			}
			if c.evmctlDiffers != nil {
				c.evmctlDiffers(t, r, x)
				return
			}
			if got := r.judge(x.count, x.padded); got != c.accept {
				t.Errorf("evmctl (judged): accept=%v, want %v; rc %d, stderr tail:\n%s", got, c.accept, r.RC, tail(r.Stderr, 14))
			}
		})
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
