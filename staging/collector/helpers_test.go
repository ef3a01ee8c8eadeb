package collector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// collectorTID is the thread id the collector's opens are made as.
const collectorTID = 100

// rig runs two simulated kernels in lockstep: k, with staging, that the
// collector drains, and ref, the same kernel without staging, on a second
// software TPM. Every measurement, violation, kexec and reboot happens on
// both under mu, so both add records in the same order, whatever the
// goroutines do, and ref's list is the log the collector must serve.
type rig struct {
	t testing.TB

	mu           sync.Mutex // the add order: held across the same event on both kernels
	k, ref       *ima.Kernel
	tpm, refTPM  *tpmext.Software
	next         int            // number of the next measurement; protected by mu
	names        map[string]int // event names expected in the current log; protected by mu
	measurements int            // measurements and violations added; protected by mu
}

// rigConfig is the staged kernel's configuration; the reference gets the
// same without Staging (and without FlushHtable, which only matters for
// deletions, which it never sees).
func newRig(t testing.TB, cfg ima.Config, banks ...tpmext.Algorithm) *rig {
	t.Helper()
	if len(banks) == 0 {
		banks = []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	}
	r := &rig{t: t, names: map[string]int{"boot_aggregate": 1}}
	var err error
	r.tpm, err = tpmext.NewSoftware(banks...)
	require.NoError(t, err)
	r.refTPM, err = tpmext.NewSoftware(banks...)
	require.NoError(t, err)
	cfg.TPM, cfg.Staging, cfg.Kexec = r.tpm, true, true
	if cfg.HashAlgo == "" {
		cfg.HashAlgo = "sha256"
	}
	r.k, err = ima.New(cfg)
	require.NoError(t, err)
	refCfg := cfg
	refCfg.TPM, refCfg.Staging, refCfg.FlushHtable = r.refTPM, false, false
	r.ref, err = ima.New(refCfg)
	require.NoError(t, err)
	return r
}

// fs is the staged kernel's securityfs as the collector's task sees it.
func (r *rig) fs() staging.FS { return r.kernel().FS(staging.Root(collectorTID)) }

func (r *rig) kernel() *ima.Kernel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.k
}

// options are the collector options for the current kernel, with a PCR
// reader on the staged kernel's TPM.
func (r *rig) options(flav Flavour) Options {
	k := r.kernel()
	return Options{Flavour: flav, BootID: k.BootID(), Layout: k.Layout(), PCRs: r.pcrs}
}

// pcrs reads PCR 10 of every bank of the staged kernel's TPM.
func (r *rig) pcrs() (eventlog.Target, error) {
	want := eventlog.Expected{}
	for _, alg := range r.tpm.Banks() {
		v, err := r.tpm.ReadPCR(ima.DefaultMeasurePCR, alg)
		if err != nil {
			return eventlog.Target{}, err
		}
		want[alg] = map[int][]byte{ima.DefaultMeasurePCR: v}
	}
	return eventlog.Target{PCRs: want}, nil
}

// measure measures n new files on both kernels.
func (r *rig) measure(n int) {
	for range n {
		r.mu.Lock()
		i := r.next
		r.next++
		f := ima.File{Path: fmt.Sprintf("/usr/bin/prog-%06d", i),
			File: template.File{Content: fmt.Appendf(nil, "content %d", i), UID: uint32(i % 7)}}
		err, rerr := r.k.Measure(f), r.ref.Measure(f)
		r.names[f.Path]++
		r.measurements++
		r.mu.Unlock()
		if err != nil || rerr != nil {
			r.t.Errorf("measure %s: staged kernel %v, reference %v", f.Path, err, rerr)
			return
		}
	}
}

// violation adds a ToMToU violation on a new path to both kernels.
// (sameViolation adds one that repeats byte for byte.)
func (r *rig) violation() {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.next
	r.next++
	path := fmt.Sprintf("/var/log/tomtou-%06d", i)
	err, rerr := r.k.Violation(path, nil, ima.CauseToMToU), r.ref.Violation(path, nil, ima.CauseToMToU)
	r.names[path]++
	r.measurements++
	if err != nil || rerr != nil {
		r.t.Errorf("violation %s: staged kernel %v, reference %v", path, err, rerr)
	}
}

// kexec kexecs both kernels and returns the staged kernel's successor.
func (r *rig) kexec() *ima.Kernel {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := r.k.Kexec()
	require.NoError(r.t, err)
	refNext, err := r.ref.Kexec()
	require.NoError(r.t, err)
	r.k, r.ref = next, refNext
	r.names["boot_aggregate"]++ // the new kernel's own, after the carried records
	return next
}

// reboot cold-boots both kernels (TPM reset): a new log starts.
func (r *rig) reboot() *ima.Kernel {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := r.k.Reboot()
	require.NoError(r.t, err)
	refNext, err := r.ref.Reboot()
	require.NoError(r.t, err)
	r.k, r.ref = next, refNext
	r.names = map[string]int{"boot_aggregate": 1}
	return next
}

// want is the reference kernel's list: the log since boot without staging.
func (r *rig) want() []byte {
	r.mu.Lock()
	ref := r.ref
	r.mu.Unlock()
	b, err := staging.ReadFile(ref.FS(staging.Root(1)), staging.BinaryRuntimeMeasurements)
	require.NoError(r.t, err)
	return b
}

// check asserts that the collector serves exactly the reference log.
func (r *rig) check(c *Collector, msgAndArgs ...any) {
	r.t.Helper()
	recs, err := c.Records(0)
	require.NoError(r.t, err, msgAndArgs...)
	got := bytes.Join(recs, nil)
	want := r.want()
	if !bytes.Equal(got, want) {
		r.t.Fatalf("%s: served log differs from the unstaged log: %d records served, reference %d records; first difference at byte %d of %d/%d\n%s",
			fmt.Sprint(msgAndArgs...), len(recs), len(decode(r.t, r.layout(), want)), firstDiff(got, want), len(got), len(want), describeNames(r.t, r.layout(), got, want))
	}
}

func (r *rig) layout() *template.Layout { return r.kernel().Layout() }

// quiesce runs fn with no measurement in flight on either kernel.
func (r *rig) quiesce(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn()
}

// checkOnce asserts that log holds each event name the rig produced
// exactly as many times as it was produced (once, except boot_aggregate
// once per kernel of the log), and nothing else.
func (r *rig) checkOnce(log []byte) {
	r.t.Helper()
	got := eventNames(r.t, r.layout(), log)
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, n := range r.names {
		if got[name] != n {
			r.t.Errorf("event %q appears %d times in the log, want %d", name, got[name], n)
		}
	}
	for name, n := range got {
		if _, ok := r.names[name]; !ok {
			r.t.Errorf("event %q appears %d times in the log, never measured", name, n)
		}
	}
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func decode(t testing.TB, l *template.Layout, data []byte) []*template.Entry {
	t.Helper()
	es, err := template.DecodeAll(data, template.DecodeOptions{Order: l.Order(), DigestSize: 20})
	require.NoError(t, err)
	return es
}

func eventNames(t testing.TB, l *template.Layout, data []byte) map[string]int {
	names := map[string]int{}
	for _, e := range decode(t, l, data) {
		names[eventName(e)]++
	}
	return names
}

// describeNames lists the names only one side has, to make a failure
// readable: lost records are in want only, duplicates in got.
func describeNames(t testing.TB, l *template.Layout, got, want []byte) string {
	g, w := eventNames(t, l, got), eventNames(t, l, want)
	var b bytes.Buffer
	for n, c := range w {
		if g[n] < c {
			fmt.Fprintf(&b, "lost: %q (%d served, %d measured)\n", n, g[n], c)
		}
	}
	for n, c := range g {
		if w[n] < c {
			fmt.Fprintf(&b, "extra: %q (%d served, %d measured)\n", n, c, w[n])
		}
	}
	return b.String()
}

// verifyPCR10 replays records, independently of the kernel's own code
// paths (template digests recomputed per bank with TemplateDigest, 0xFF
// for violations), and compares the result with PCR 10 of every bank of
// tpm. It also checks each record's SHA-1 column.
func verifyPCR10(t testing.TB, l *template.Layout, tpm tpmext.TPM, records [][]byte) {
	t.Helper()
	entries := decode(t, l, bytes.Join(records, nil))
	require.Len(t, entries, len(records))
	for _, alg := range tpm.Banks() {
		pcr := make([]byte, alg.Size())
		for i, e := range entries {
			require.EqualValues(t, ima.DefaultMeasurePCR, e.PCR, "record %d", i)
			var d []byte
			if bytes.Equal(e.Digests[0].Value, make([]byte, 20)) {
				d = bytes.Repeat([]byte{0xff}, alg.Size())
			} else {
				var err error
				d, err = e.TemplateDigest(template.HashAlgoFromTPM(alg), l.Order())
				require.NoError(t, err)
				if alg == tpmext.SHA1 {
					require.Equal(t, e.Digests[0].Value, d, "record %d: SHA-1 column", i)
				}
			}
			pcr = tpmext.ExtendValue(alg, pcr, d)
		}
		have, err := tpm.ReadPCR(ima.DefaultMeasurePCR, alg)
		require.NoError(t, err)
		require.Equal(t, have, pcr, "PCR 10 of bank %v does not match the replay of %d records", alg, len(records))
	}
}

// ---- reading a store independently of store.go, for the damage tests ----

// frameAt is one frame of a segment as the test reads it.
type frameAt struct {
	seg     string
	off     int64
	typ     byte
	length  int
	payload []byte
	// record is the record's number in its log when typ is frameRecord
	// and its batch was committed (-1 otherwise).
	record int
}

// readFrames lists the frames of every segment of dir, in order, and
// numbers the records of committed batches from the start of their log.
func readFrames(t testing.TB, dir string) []frameAt {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	require.NoError(t, err)
	var out []frameAt
	var batch []int // indexes in out of the records since the last resolution
	next := 0
	for _, path := range names {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		for off := 0; off < len(data); {
			// Plain checks: require per frame is slow.
			if len(data)-off < frameHeader {
				t.Fatalf("%s offset %d: short header", path, off)
			}
			length := int(binary.LittleEndian.Uint32(data[off:]))
			sum := binary.LittleEndian.Uint32(data[off+4:])
			typ := data[off+8]
			if off+frameHeader+length > len(data) {
				t.Fatalf("%s offset %d: frame of %d bytes runs past the end", path, off, length)
			}
			payload := data[off+frameHeader : off+frameHeader+length]
			if sum != crc32.Update(crc32.Checksum([]byte{typ}, castagnoli), castagnoli, payload) {
				t.Fatalf("%s offset %d: checksum mismatch", path, off)
			}
			out = append(out, frameAt{seg: filepath.Base(path), off: int64(off), typ: typ, length: length, payload: payload, record: -1})
			switch typ {
			case frameLog:
				next, batch = 0, nil
			case frameRecord:
				batch = append(batch, len(out)-1)
			case frameCommit:
				for _, i := range batch {
					out[i].record = next
					next++
				}
				batch = nil
			case frameAbort:
				batch = nil
			}
			off += frameHeader + length
		}
	}
	return out
}

// logRecords returns the committed records of each log in the store,
// oldest log first, as readFrames numbers them.
func logRecords(t testing.TB, dir string) [][][]byte {
	t.Helper()
	var logs [][][]byte
	for _, f := range readFrames(t, dir) {
		switch {
		case f.typ == frameLog:
			logs = append(logs, nil)
		case f.record >= 0:
			if f.record != len(logs[len(logs)-1]) {
				t.Fatalf("%s offset %d: record %d out of order", f.seg, f.off, f.record)
			}
			logs[len(logs)-1] = append(logs[len(logs)-1], f.payload)
		}
	}
	return logs
}

// segmentPath returns the path of a segment of dir by name.
func segmentPath(dir, name string) string { return filepath.Join(dir, name) }

// requireCorrupt asserts err is a *CorruptError naming seg, off and record.
func requireCorrupt(t testing.TB, err error, seg string, off int64, record int) *CorruptError {
	t.Helper()
	require.Error(t, err)
	var ce *CorruptError
	require.True(t, errors.As(err, &ce), "error %v is not a *CorruptError", err)
	require.Equal(t, seg, ce.Segment, "segment: %v", err)
	require.Equal(t, off, ce.Offset, "offset: %v", err)
	require.Equal(t, record, ce.Record, "record: %v", err)
	return ce
}

// tearManifest destroys the newest slot of dir's manifest, as a crash in
// the middle of its write would: the store's durable end goes back to the
// previous durable point.
func tearManifest(t testing.TB, dir string) {
	t.Helper()
	path := filepath.Join(dir, manifestName)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	newest, seq := -1, uint64(0)
	for i := 0; (i+1)*manifestSlot <= len(b); i++ {
		if m, ok, _ := decodeManifestSlot(b[i*manifestSlot:]); ok && (newest < 0 || m.seq > seq) {
			newest, seq = i, m.seq
		}
	}
	require.GreaterOrEqual(t, newest, 0, "no whole manifest slot")
	b[newest*manifestSlot+20] ^= 0xff // inside the sequence number: the checksum fails
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// sameViolation adds the same open-writers violation to both kernels:
// every call adds a record byte-identical to the last.
func (r *rig) sameViolation() {
	r.mu.Lock()
	defer r.mu.Unlock()
	const path = "/var/log/same"
	err, rerr := r.k.Violation(path, nil, ima.CauseOpenWriters), r.ref.Violation(path, nil, ima.CauseOpenWriters)
	r.names[path]++
	r.measurements++
	if err != nil || rerr != nil {
		r.t.Errorf("violation %s: staged kernel %v, reference %v", path, err, rerr)
	}
}
