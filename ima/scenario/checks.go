package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// pcr prints PCR n (CONFIG_IMA_MEASURE_PCR_IDX when n < 0) of bank, or of
// every bank as "BANK HEX" lines when bank is 0.
func (x *execCtx) pcr(n int, bank tpmext.Algorithm) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	if x.m.tpm == nil {
		return errors.New("pcr: the machine has no TPM (boot banks=none)")
	}
	if n < 0 {
		n = k.MeasurePCR()
	}
	if bank != 0 {
		v, err := x.m.tpm.ReadPCR(n, bank)
		if err != nil {
			return err
		}
		fmt.Fprintf(&x.out, "%x\n", v)
		return nil
	}
	for _, b := range x.m.tpm.Banks() {
		v, err := x.m.tpm.ReadPCR(n, b)
		if err != nil {
			return err
		}
		fmt.Fprintf(&x.out, "%v %x\n", b, v)
	}
	return nil
}

// doCounters prints the kernel's ima_num_records[] (which securityfs shows
// only in part: runtime_measurements_count is BINARY) and the number of
// digests in the hash table. No kernel counterpart as a file.
func doCounters(x *execCtx) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	q := k.Queue()
	fmt.Fprintf(&x.out, "BINARY=%d BINARY_STAGED=%d BINARY_FULL=%d htable=%d\n",
		q.NumRecords(measlist.Binary), q.NumRecords(measlist.BinaryStaged),
		q.NumRecords(measlist.BinaryFull), q.HtableLen())
	return nil
}

// doFailAlloc makes the kernel's next hash-table allocation fail: the
// kcalloc() of ima_alloc_replace_htable() that a D under ima_flush_htable
// makes, so that scripts reach docs/SPEC.md Q3. No kernel counterpart; fault
// injection, like failslab.
func doFailAlloc(x *execCtx) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	armed := true
	k.Queue().SetFailAlloc(func() bool {
		fail := armed
		armed = false
		return fail
	})
	return nil
}

// save is the user-space step of the documentation's Management of Staged
// Measurements section: the staged records are saved (with n < 0: every
// bank's binary_runtime_measurements_<bank>_staged, read to EOF), or, for
// the N flavour, the first n records of every bank's
// binary_runtime_measurements_<bank>. The files are opened as an agent
// would: O_RDONLY, or O_RDWR by the task that holds the writer lock (it
// may open more files, and an O_RDONLY open would be EBUSY).
func (x *execCtx) save(n int) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	flag := os.O_RDONLY
	if st := k.SecurityFS().MeasureState(); st.HasWriter && st.Writer == x.task.TID {
		flag = os.O_RDWR
	}
	lay := k.Layout()
	got := map[string][]byte{}
	for _, lf := range lay.ListFiles() {
		name := staging.BinaryRuntimeMeasurements + "_" + lf.Suffix
		if n < 0 {
			name += "_staged"
		}
		f, err := k.SecurityFS().Open(x.task, name, flag)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if n >= 0 {
			if data, err = firstRecords(data, n, lay.Order(), lay.Slot(lf.Slot).Size); err != nil {
				return fmt.Errorf("save %d: %s: %v", n, name, err)
			}
		}
		got[lf.Suffix] = data
	}
	x.m.lastSave = map[string]int{}
	for s, data := range got {
		x.m.lastSave[s] = len(x.m.saved[s])
		x.m.saved[s] = append(x.m.saved[s], data...)
	}
	return nil
}

// firstRecords returns the bytes of the first n records of a binary list.
func firstRecords(data []byte, n int, o template.Order, digestSize int) ([]byte, error) {
	d, err := template.NewDecoder(bytes.NewReader(data), template.DecodeOptions{Order: o, DigestSize: digestSize})
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		if _, err := d.Next(); err == io.EOF {
			return nil, fmt.Errorf("the list has only %s", records(i))
		} else if err != nil {
			return nil, err
		}
	}
	return data[:d.Offset()], nil
}

// doDiscard drops what the last save appended: an agent whose D failed with
// ESTALE must not keep the records, which the next kernel carries
// (Documentation/security/IMA-export-delete.rst, Kexec).
func doDiscard(x *execCtx) error {
	if x.m.lastSave == nil {
		return errors.New("discard: nothing saved since the last discard")
	}
	for s, n := range x.m.lastSave {
		x.m.saved[s] = x.m.saved[s][:n]
	}
	x.m.lastSave = nil
	return nil
}

// doReplay checks the documentation's promise that remote attestation sees
// "the same log as if staging had never happened": for every TPM bank, the
// saved records, then the staged list, then the current list (each with
// that bank's template digests) are replayed and must give the TPM's value
// of every PCR they extend. After "collect", the log is the collector's
// (its store, then the kernel's lists, read through the files). It prints
// one line per bank.
func doReplay(x *execCtx) error {
	k, err := x.kernel()
	if err != nil {
		return err
	}
	if x.m.tpm == nil {
		return errors.New("replay: the machine has no TPM (boot banks=none)")
	}
	lay := k.Layout()
	q := k.Queue()
	if x.m.coll != nil {
		for _, l := range x.m.saved {
			if len(l) > 0 {
				return errors.New("replay: the script both saved records and ran the collector: which came first is unknown")
			}
		}
	}
	for _, lf := range lay.ListFiles() {
		slot := lay.Slot(lf.Slot)
		if !slot.IsBank {
			continue
		}
		var log []byte
		if x.m.coll != nil {
			if log, err = x.m.collectedLog(lf.Slot); err != nil {
				return err
			}
		} else {
			log = bytes.Clone(x.m.saved[lf.Suffix])
			for _, h := range []measlist.Head{measlist.Staged, measlist.Current} {
				for _, e := range q.Entries(h) {
					if log, err = e.AppendBinary(log, lf.Slot, lay.Order()); err != nil {
						return err
					}
				}
			}
		}
		fmt.Fprintf(&x.out, "%v: %s\n", slot.Bank, replayBank(x.m.tpm, slot.Bank, log, lay, k.MeasurePCR()))
	}
	return nil
}

// replayBank verifies one bank's log against the TPM and says how it went.
func replayBank(tpm tpmext.TPM, bank tpmext.Algorithm, log []byte, lay *template.Layout, measurePCR int) string {
	el, err := eventlog.ParseEventLog(log, eventlog.Options{Order: lay.Order(), ColumnAlg: bank})
	if err != nil {
		return "does not parse: " + err.Error()
	}
	pcrs := map[int]bool{measurePCR: true}
	for r := range el.All() {
		pcrs[int(r.PCR)] = true
	}
	want := map[int][]byte{}
	var list []int
	for p := range pcrs {
		if p >= tpmext.NumPCRs {
			return fmt.Sprintf("a record extends PCR %d, which the TPM does not have", p)
		}
		v, err := tpm.ReadPCR(p, bank)
		if err != nil {
			return "cannot read the TPM: " + err.Error()
		}
		want[p] = v
		list = append(list, p)
	}
	sort.Ints(list)
	_, err = el.Verify(eventlog.Expected{bank: want}, eventlog.ReplayOptions{Banks: []tpmext.Algorithm{bank}, Workers: 1})
	var re *eventlog.ReplayError
	switch {
	case err == nil:
		what := fmt.Sprintf("PCR %d", list[0])
		if len(list) > 1 {
			s := make([]string, len(list))
			for i, p := range list {
				s[i] = fmt.Sprint(p)
			}
			what = "PCRs " + strings.Join(s, ",")
		}
		if el.Len() == 1 {
			return "1 record replays to " + what
		}
		return records(el.Len()) + " replay to " + what
	case errors.As(err, &re) && errors.Is(err, eventlog.ErrPCRMismatch) && re.MatchedAt >= 0:
		return fmt.Sprintf("does not replay: PCR %d matches after %d of %s", re.PCR, re.MatchedAt, records(re.Records))
	case errors.As(err, &re) && errors.Is(err, eventlog.ErrPCRMismatch):
		return fmt.Sprintf("does not replay: PCR %d differs at the end (%s)", re.PCR, records(re.Records))
	case errors.As(err, &re) && errors.Is(err, eventlog.ErrTemplateDigest):
		return fmt.Sprintf("does not replay: record %d: template digest does not match its data", re.Index)
	}
	return "does not replay: " + err.Error()
}

func records(n int) string {
	if n == 1 {
		return "1 record"
	}
	return fmt.Sprintf("%d records", n)
}
