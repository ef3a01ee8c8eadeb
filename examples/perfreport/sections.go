package main

import (
	"errors"
	"fmt"
	"image/color"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var lockOps = []struct{ name, letter, what string }{
	{"stage", "A", "A (stage the current list)"},
	{"deletestaged", "D", "D (delete the staged list)"},
	{"deletepartial", "N", "N (delete the first half)"},
}

// lockHolds returns, per op, the list sizes and median holds measured.
func lockHolds(lock *benchRun) (sizes []int, hold map[string]map[int]result) {
	hold = map[string]map[int]result{}
	if lock == nil {
		return nil, hold
	}
	re := regexp.MustCompile(`^BenchmarkLockHold/op=(\w+)/records=(\d+)$`)
	for _, r := range lock.Results {
		m := re.FindStringSubmatch(r.Name)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if hold[m[1]] == nil {
			hold[m[1]] = map[int]result{}
		}
		hold[m[1]][n] = r
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	return sizes, hold
}

func na(err error) string {
	if err != nil {
		return fmt.Sprintf("not measured: %v", firstLine(err.Error()))
	}
	return "not measured"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func summary(r *report, add, lock, rel, mem, tdig *benchRun, evm *evmResult, fps []footprintRow) {
	for _, q := range []string{"fresh", "100000"} {
		if x, ok := add.get("BenchmarkAdd/queue=" + q); ok {
			r.f("| add path, queue=%s | %.0f ns/op | hashing floor %.0f ns/op | **%.2f** | <= 1.3 |\n", q, x.Metrics["ns/op"], x.Metrics["floor-ns/op"], x.Metrics["ratio"])
		}
	}
	sizes, hold := lockHolds(lock)
	if len(sizes) > 1 {
		lo, hi := sizes[0], sizes[len(sizes)-1]
		for _, op := range lockOps {
			a, okA := hold[op.name][lo]
			b, okB := hold[op.name][hi]
			if okA && okB {
				r.f("| lock hold of %s, %s records | %.0f ns | %s records: %.0f ns | **%.2f** | <= 2 (1e6/1e3) |\n", op.letter, fmtCount(float64(hi)), b.Metrics["hold-ns/op"], fmtCount(float64(lo)), a.Metrics["hold-ns/op"], b.Metrics["hold-ns/op"]/a.Metrics["hold-ns/op"])
			}
		}
	}
	if rel != nil {
		for _, x := range rel.Results {
			sub := strings.TrimPrefix(x.Name, "BenchmarkAddDuringRelease/")
			r.f("| adder during release, %s | %.0f adds/s | alone %.0f adds/s | **%.2f** (vs a read-only neighbour: %.2f) | >= 0.8 |\n", sub, x.Metrics["adds/s-release"], x.Metrics["adds/s-alone"], x.Metrics["ratio"], x.Metrics["ratio-vs-busy"])
		}
	}
	for _, fl := range []string{"false", "true"} {
		if x, ok := mem.get("BenchmarkMemory/flush=" + fl); ok {
			r.f("| Go heap per live ima-ng record (flush=%s run) | %.0f B | kernel %.0f B | **%.2f** | |\n", fl, x.Metrics["B/live-record"], x.Metrics["kernel-B/live-record"], x.Metrics["B/live-record"]/x.Metrics["kernel-B/live-record"])
		}
	}
	for _, f := range fps {
		if f.Template == "ima-ng" && len(f.Banks) == 2 {
			r.f("| kernel memory freed by D without flush (ima-ng, sha1+sha256) | %d B of a record | live record %d B | **%.2f** | |\n", f.Live-f.Retained, f.Live, float64(f.Live-f.Retained)/float64(f.Live))
		}
	}
	if x, ok := tdig.get("BenchmarkTemplateDigest"); ok {
		r.f("| template digest, 4 banks | %.0f ns/op | hashing floor %.0f ns/op | **%.2f** | |\n", x.Metrics["ns/op"], x.Metrics["floor-ns/op"], x.Metrics["ratio"])
	}
	if evm != nil {
		r.f("| imasim verify, %d records | best %.3f s | evmctl best %.3f s | **%.2f** (evmctl/imasim) | |\n", evm.Records, evm.ImasimBest, evm.EvmctlBest, evm.Faster)
	} else {
		r.f("| imasim verify against evmctl | not measured | | | |\n")
	}
}

func secAdd(r *report, add *benchRun, err error) {
	r.f("measlist `BenchmarkAdd`: ComputeDigests + Queue.Add of a new ima-ng record (software TPM, SHA-1 and SHA-256 banks), what `ima_store_template()` does, against the floor of the same template digests and extends alone, measured in the same loop in alternating batches. Default benchtime.\n\n")
	if add == nil || err != nil {
		r.f("%s\n", na(err))
		return
	}
	r.f("| queue | add path ns/op | floor ns/op | ratio add/floor | allocs/op | iterations |\n|---|---|---|---|---|---|\n")
	for _, x := range add.Results {
		r.f("| %s | %.0f | %.0f | **%.2f** | %.0f | %d |\n", strings.TrimPrefix(x.Name, "BenchmarkAdd/queue="), x.Metrics["ns/op"], x.Metrics["floor-ns/op"], x.Metrics["ratio"], x.Metrics["allocs/op"], x.N)
	}
	r.f("\nTarget: ratio <= 1.3. queue=100000 adds to a queue already holding 100,000 records, whose duplicate lookup walks hash chains of about 100 records (1024 buckets, as the kernel's IMA_HASH_BITS), which the kernel pays as well. That queue is not renewed during the run: by its end it holds 100,000 plus the iterations column of records, and its chains are that much longer.\n")
}

func secLock(r *report, lock *benchRun, err error, png string) {
	r.f("measlist `BenchmarkLockHold`: how long each operation holds the extend-list mutex (`Queue.LastHold`), the median of the samples (9 per iteration, 5 iterations), on a queue of each size. The ratio is to the hold at 1,000 records: a hold independent of the list size stays near 1.\n\n")
	sizes, hold := lockHolds(lock)
	if len(sizes) == 0 {
		r.f("%s\n", na(err))
		return
	}
	r.f("| records |")
	for _, op := range lockOps {
		r.f(" %s ns | ratio to 1k |", op.letter)
	}
	r.f("\n|---|")
	for range lockOps {
		r.f("---|---|")
	}
	r.f("\n")
	for _, n := range sizes {
		r.f("| %s |", fmtCount(float64(n)))
		for _, op := range lockOps {
			x, ok := hold[op.name][n]
			base, okb := hold[op.name][sizes[0]]
			if !ok || !okb {
				r.f(" - | - |")
				continue
			}
			r.f(" %.0f (max %.0f) | %.2f |", x.Metrics["hold-ns/op"], x.Metrics["hold-max-ns"], x.Metrics["hold-ns/op"]/base.Metrics["hold-ns/op"])
		}
		r.f("\n")
	}
	r.f("\nA is %s; D is %s; N is %s. Target: ratio 1e6/1e3 <= 2.\n\n![lock hold against list size](%s)\n", lockOps[0].what, lockOps[1].what, lockOps[2].what, png)
}

func secRelease(r *report, rel *benchRun, err error) {
	r.f("measlist `BenchmarkAddDuringRelease`: one adder's throughput while the main goroutine releases 1,000,000 records (D, or N of all of them), against the same adder on the same queue for 30 ms just before (\"ratio\", target >= 0.8). In the same run, the floor of this machine: the adder's throughput while the main goroutine merely reads the same million records, touching nothing of the queue (\"read-only neighbour\"); \"vs neighbour\" is the release's throughput over that one, the part of the slowdown that comes from the release itself. \"CPU ratio\" divides by the adder thread's own CPU time, which removes the time the scheduler gave to others. Medians of 3 samples per iteration, 5 iterations.\n\n")
	if rel == nil || err != nil {
		r.f("%s\n", na(err))
		return
	}
	r.f("| tpm / op | adds/s alone | adds/s during release | ratio | CPU ratio | with read-only neighbour / alone | release / neighbour | release ms |\n|---|---|---|---|---|---|---|---|\n")
	for _, x := range rel.Results {
		m := x.Metrics
		r.f("| %s | %.0f | %.0f | **%.2f** | %.2f | %.2f | %.2f | %.1f |\n", strings.TrimPrefix(x.Name, "BenchmarkAddDuringRelease/"), m["adds/s-alone"], m["adds/s-release"], m["ratio"], m["ratio-cpu"], m["ratio-busy"], m["ratio-vs-busy"], m["release-ms"])
	}
	r.f("\nOn a 2-CPU machine two CPU-bound threads share the cores with everything else; where the read-only neighbour alone already costs the adder more than 20%%, the 0.8 target cannot be met by any release, and \"release / neighbour\" is the figure that isolates the release.\n")
}

func secMemory(r *report, mem *benchRun, err error) {
	r.f("measlist `BenchmarkMemory`: Go heap bytes (runtime.MemStats after a collection) per ima-ng record of 100,000 (SHA-1 and SHA-256 banks, ima_hash=sha256, a 46-byte path) while in a list, and per record after A and D deleted them, with and without ima_flush_htable; next to each, the kernel's footprint of the same record (measlist.RecordFootprint, the kmalloc size-class model of measlist/kmem.go).\n\n")
	if mem == nil || err != nil {
		r.f("%s\n", na(err))
		return
	}
	r.f("| ima_flush_htable | Go B/live record | kernel B/live record | ratio Go/kernel | Go B/deleted record | kernel B/deleted record |\n|---|---|---|---|---|---|\n")
	for _, x := range mem.Results {
		m := x.Metrics
		r.f("| %s | %.1f | %.0f | **%.2f** | %.1f | %.0f |\n", strings.TrimPrefix(x.Name, "BenchmarkMemory/flush="), m["B/live-record"], m["kernel-B/live-record"], m["B/live-record"]/m["kernel-B/live-record"], m["B/deleted-record"], m["kernel-B/deleted-record"])
	}
	r.f("\nWithout the flush the deleted records keep what the hash table refers to (queue entry, template entry, digests), in the kernel as in the simulator.\n")
}

func secFootprints(r *report, fps []footprintRow) {
	r.f("The kernel's slab memory per record, from measlist.RecordFootprint: struct ima_queue_entry (kmalloc-64), struct ima_template_entry with its template_data[] array, the digests array (one struct tpm_digest of 66 bytes per slot: the TPM's banks, plus one for ima_hash when no bank has it), and each field's data, each rounded up to its kmalloc size class. Records built with ima/template (ima_hash=sha256, a 46-byte path; ima-sig with a %d-byte security.ima RSA-2048 signature, signature_v2_hdr + 256 bytes). With the sha256 bank alone there are still two slots: the kernel always keeps a SHA-1 slot (ima_sha1_idx, an extra slot when no bank is SHA-1) for the legacy list. The hash table's bucket array is a fixed 8 KiB, not per record.\n\n", len(rsaSig()))
	r.f("After **D without ima_flush_htable**, and after **N** (which never flushes), the kernel frees only the field data: the queue entry, template entry and digests stay, referred to by the hash table, which keeps detecting duplicates. After **D with ima_flush_htable** everything is freed.\n\n")
	r.f("| template | banks | slots | field data (B) | live B/record | after D (no flush) or N | after D with flush | freed without flush | freed with flush | freed per 100k records, no flush / flush |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range fps {
		var fl []string
		for _, n := range f.Fields {
			fl = append(fl, strconv.Itoa(n))
		}
		freed := f.Live - f.Retained
		r.f("| %s | %s | %d | %s | %d | %d | 0 | **%.0f%%** | **100%%** | %.1f MiB / %.1f MiB |\n", f.Template, f.banks(), f.Slots, strings.Join(fl, " + "), f.Live, f.Retained,
			100*float64(freed)/float64(f.Live), float64(freed)*1e5/(1<<20), float64(f.Live)*1e5/(1<<20))
	}
	r.f("\nRead: staging without ima_flush_htable frees only the fraction in the \"freed without flush\" column; the rest of every deleted record stays in kernel memory until reboot. The more banks, the larger the digests array that stays, and the smaller the fraction freed; a signature (ima-sig) is field data, so it is freed.\n")
}

func secMemOverTime(r *report, runs []*memRun, n, k int, png string) {
	r.f("A kernel booted through the public API (ima.New: software TPM with SHA-1 and SHA-256 banks, ima_hash=sha256, ima-ng, CONFIG_IMA_STAGING, CONFIG_IMA_KEXEC) measures %d distinct files; the staged runs write `A` and then `D` to binary_runtime_measurements_staged after every %d measurements. The figure is Queue.KernelMemory().Total(): records in the lists, what deleted records retain, and the 8 KiB bucket array.\n\n", n, k)
	r.f("| run | kernel memory at the end | of which retained by deleted records | against no staging |\n|---|---|---|---|\n")
	var base float64
	for _, m := range runs {
		if m.Name == "no staging" {
			base = float64(m.Final.Total())
		}
	}
	for _, m := range runs {
		r.f("| %s | %.1f KiB | %.1f KiB | **%.2f** |\n", m.Name, float64(m.Final.Total())/1024, float64(m.Final.Retained)/1024, float64(m.Final.Total())/base)
	}
	r.f("\n![modelled kernel memory over time](%s)\n", png)
}

func secTemplate(r *report, tdig *benchRun, err error) {
	r.f("ima/template `BenchmarkTemplateDigest`: the template digest of an ima-ng entry for four banks (sha1, sha256, sha384, sha512) against hashing the same bytes with the same four algorithms, in alternating chunks. `BenchmarkDecode` / `BenchmarkDecoder`: DecodeAll and the streaming decoder over the IBM SHA-1 list. Default benchtime.\n\n")
	if tdig == nil || err != nil {
		r.f("%s\n", na(err))
		return
	}
	r.f("| benchmark | ns/op | floor ns/op | ratio | MB/s | allocs/op |\n|---|---|---|---|---|---|\n")
	for _, x := range tdig.Results {
		m := x.Metrics
		floor, ratio, mbs := "", "", ""
		if v, ok := m["floor-ns/op"]; ok {
			floor, ratio = fmt.Sprintf("%.0f", v), fmt.Sprintf("**%.2f**", m["ratio"])
		}
		if v, ok := m["MB/s"]; ok {
			mbs = fmt.Sprintf("%.1f", v)
		}
		r.f("| %s | %.0f | %s | %s | %s | %.0f |\n", strings.TrimPrefix(x.Name, "Benchmark"), m["ns/op"], floor, ratio, mbs, m["allocs/op"])
	}
}

// evmResult is what scripts/compare-evmctl.sh printed.
type evmResult struct {
	Records, Rounds                  int
	Bytes                            int64
	EvmctlBest, EvmctlMed, EvmctlCPU float64
	ImasimBest, ImasimMed, ImasimCPU float64
	Faster, FasterMed, FasterCPU     float64 // evmctl time / imasim time
	Output                           string
}

var errNoEvmctl = errors.New("evmctl not installed")

func compareEvmctl(root, records, rounds string) (*evmResult, error) {
	if _, err := exec.LookPath("evmctl"); err != nil {
		return nil, errNoEvmctl
	}
	logf("scripts/compare-evmctl.sh %s %s", records, rounds)
	cmd := exec.Command("bash", "scripts/compare-evmctl.sh", records, rounds)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("scripts/compare-evmctl.sh: %v: %s", err, strings.TrimSpace(string(out)))
	}
	e := &evmResult{Output: string(out)}
	s := string(out)
	if m := regexp.MustCompile(`list: (\d+) ima-ng records, (\d+) bytes`).FindStringSubmatch(s); m != nil {
		e.Records, _ = strconv.Atoi(m[1])
		e.Bytes, _ = strconv.ParseInt(m[2], 10, 64)
	}
	row := func(name string) (a, b, c float64) {
		m := regexp.MustCompile(regexp.QuoteMeta(name) + `\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)`).FindStringSubmatch(s)
		if m != nil {
			a, _ = strconv.ParseFloat(m[1], 64)
			b, _ = strconv.ParseFloat(m[2], 64)
			c, _ = strconv.ParseFloat(m[3], 64)
		}
		return
	}
	e.EvmctlBest, e.EvmctlMed, e.EvmctlCPU = row("evmctl ima_measurement")
	e.ImasimBest, e.ImasimMed, e.ImasimCPU = row("imasim verify")
	if e.ImasimBest == 0 || e.EvmctlBest == 0 {
		return nil, fmt.Errorf("scripts/compare-evmctl.sh: no timings in its output:\n%s", s)
	}
	e.Rounds, _ = strconv.Atoi(rounds)
	e.Faster, e.FasterMed = e.EvmctlBest/e.ImasimBest, e.EvmctlMed/e.ImasimMed
	if e.ImasimCPU > 0 {
		e.FasterCPU = e.EvmctlCPU / e.ImasimCPU
	}
	return e, nil
}

func secVerify(r *report, evm *evmResult, evmErr error, ver *benchRun, verErr error) {
	r.f("`scripts/compare-evmctl.sh` builds a legacy binary_runtime_measurements of ima-ng records (SHA-1 column) and the PCRs of a software TPM (SHA-1 and SHA-256 banks), checks that both tools accept it, and times `evmctl ima_measurement` and `imasim verify` on it in alternating rounds (wall-clock time of the whole process).\n\n")
	switch {
	case errors.Is(evmErr, errNoEvmctl):
		r.f("not measured: evmctl not installed\n")
	case evm == nil:
		r.f("%s\n", na(evmErr))
	default:
		r.f("List: %d records, %d bytes; %d rounds.\n\n| tool | best s | median s | median CPU s |\n|---|---|---|---|\n", evm.Records, evm.Bytes, evm.Rounds)
		r.f("| evmctl ima_measurement | %.3f | %.3f | %.3f |\n| imasim verify | %.3f | %.3f | %.3f |\n", evm.EvmctlBest, evm.EvmctlMed, evm.EvmctlCPU, evm.ImasimBest, evm.ImasimMed, evm.ImasimCPU)
		r.f("| **ratio evmctl / imasim** | **%.2f** | %.2f | %.2f |\n", evm.Faster, evm.FasterMed, evm.FasterCPU)
		r.f("\n<details><summary>script output</summary>\n\n```\n%s```\n</details>\n", evm.Output)
	}
	r.f("\nima/eventlog `BenchmarkVerify`: a 100,000-record ima-ng list verified from a stream, as `imasim verify` does, against PCR 10 of four banks and of the two evmctl knows, on one worker and on all cores; \"x-floor\" is the time over one core doing only the template digests and extends (below 1: the cores beat the single-core floor).\n\n")
	if ver == nil || verErr != nil {
		r.f("%s\n", na(verErr))
		return
	}
	r.f("| banks / workers | ms/op | records/s | MB/s | ratio to hashing floor |\n|---|---|---|---|---|\n")
	for _, x := range ver.Results {
		m := x.Metrics
		r.f("| %s | %.1f | %.0f | %.1f | **%.2f** |\n", strings.TrimPrefix(x.Name, "BenchmarkVerify/"), m["ns/op"]/1e6, m["records/s"], m["MB/s"], m["x-floor"])
	}
}

func lockChart(lock *benchRun) *chart {
	c := &chart{Title: "Lock hold of A, D and N against list size (median)", XLabel: "records in the list", YLabel: "hold (ns)",
		LogX: true, LogY: true, XFmt: fmtCount, YFmt: fmtCount, W: 760, H: 460}
	sizes, hold := lockHolds(lock)
	for i, op := range lockOps {
		s := series{Name: op.what, Color: []color.RGBA{red, blue, green}[i]}
		for _, n := range sizes {
			if x, ok := hold[op.name][n]; ok {
				s.Xs = append(s.Xs, float64(n))
				s.Ys = append(s.Ys, x.Metrics["hold-ns/op"])
			}
		}
		if len(s.Xs) > 0 {
			c.Series = append(c.Series, s)
		}
	}
	if len(c.Series) == 0 {
		c.Series = []series{{Name: "not measured", Color: black, Xs: []float64{1000, 1e6}, Ys: []float64{1, 1}}}
	}
	return c
}

func memChart(runs []*memRun, n, k int) *chart {
	c := &chart{Title: fmt.Sprintf("Modelled kernel memory, %d measurements, A+D every %d", n, k), XLabel: "measurements",
		YLabel: "kernel memory (KiB)", XFmt: fmtCount, YFmt: fmtPlain, W: 760, H: 460}
	cols := []color.RGBA{black, red, blue, brown}
	for i, m := range runs {
		s := series{Name: m.Name, Color: cols[i%len(cols)]}
		for _, p := range m.Samples {
			s.Xs = append(s.Xs, float64(p.Measured))
			s.Ys = append(s.Ys, float64(p.Total)/1024)
		}
		c.Series = append(c.Series, s)
	}
	return c
}
