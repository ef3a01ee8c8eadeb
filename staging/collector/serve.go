package collector

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/imasim/imasim/ima/template"
)

// Committed returns the number of records the store holds for the current
// log: the records deleted from the kernel since boot.
func (c *Collector) Committed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil {
		return 0
	}
	return c.st.log.committed
}

// Records returns the log since boot from record number from (0 is the
// first record after the cold boot): the store's records, then what the
// kernel still holds, staged first, then current, as binary records with
// the SHA-1 column. It is the list the kernel would show had nothing been
// staged or deleted.
func (c *Collector) Records(from int) ([][]byte, error) {
	var all [][]byte
	err := c.eachRecord(from, func(_ int, rec []byte) error {
		all = append(all, append([]byte(nil), rec...))
		return nil
	})
	return all, err
}

// eachRecord calls fn with each record of the log since boot from record
// from, numbered from boot, as Records returns them; fn must not keep rec.
// The store's records are read from disk one at a time.
func (c *Collector) eachRecord(from int, fn func(i int, rec []byte) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil {
		return os.ErrClosed
	}
	if c.stuck != nil {
		return c.stuck
	}
	if from < 0 {
		return fmt.Errorf("collector: negative record number %d", from)
	}
	if err := c.resolvePending(false); err != nil {
		return err
	}
	kernel, err := c.kernelRecords(-1)
	if err != nil {
		return err
	}
	if err := c.st.eachCommitted(from, fn); err != nil {
		return err
	}
	saved := c.st.log.committed
	for i := max(from, saved); i < saved+len(kernel); i++ {
		if err := fn(i, kernel[i-saved]); err != nil {
			return err
		}
	}
	return nil
}

// Format is an output format of WriteLog.
type Format int

const (
	// Binary is binary_runtime_measurements_<alg>.
	Binary Format = iota
	// ASCII is ascii_runtime_measurements_<alg>.
	ASCII
)

// WriteLog writes the log since boot from record from to w as the kernel's
// list file of the layout's slot would show it had nothing been staged:
// Binary or ASCII, with that slot's template digests (recomputed from the
// template data for slots other than SHA-1; zero for violations). It
// returns the number of records written.
func (c *Collector) WriteLog(w io.Writer, from int, format Format, slot int) (int, error) {
	if err := c.checkSlot(slot); err != nil {
		return 0, err
	}
	var out []byte
	n := 0
	err := c.eachRecord(from, func(i int, rec []byte) error {
		var err error
		if out, err = c.appendRecord(out, i, rec, format, slot); err != nil {
			return err
		}
		n++
		if len(out) >= 1<<20 {
			if _, err := w.Write(out); err != nil {
				return err
			}
			out = out[:0]
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// errEnough stops eachRecord early.
var errEnough = errors.New("enough")

// AppendLog appends to dst the log since boot from record from, in the
// form WriteLog writes, stopping after the record that brings dst to
// limit bytes or more, or at the end of the log. It returns dst and the
// number of records appended. No kernel counterpart; it serves reads of a
// whole-log view a buffer at a time.
func (c *Collector) AppendLog(dst []byte, from, limit int, format Format, slot int) ([]byte, int, error) {
	if err := c.checkSlot(slot); err != nil {
		return dst, 0, err
	}
	n := 0
	err := c.eachRecord(from, func(i int, rec []byte) error {
		var err error
		if dst, err = c.appendRecord(dst, i, rec, format, slot); err != nil {
			return err
		}
		n++
		if len(dst) >= limit {
			return errEnough
		}
		return nil
	})
	if err == errEnough {
		err = nil
	}
	return dst, n, err
}

// Layout returns the record layout the collector serves.
func (c *Collector) Layout() *template.Layout { return c.layout }

// Len returns the number of records of the log since boot: the store's,
// then the kernel's.
func (c *Collector) Len() (int, error) {
	committed := c.Committed()
	n := committed
	err := c.eachRecord(committed, func(int, []byte) error { n++; return nil })
	return n, err
}

func (c *Collector) checkSlot(slot int) error {
	if slot < 0 || slot >= c.layout.NumSlots() {
		return fmt.Errorf("collector: slot %d out of range 0..%d", slot, c.layout.NumSlots()-1)
	}
	return nil
}

// appendRecord appends record i, rec, to out as the list file of slot in
// format shows it.
func (c *Collector) appendRecord(out []byte, i int, rec []byte, format Format, slot int) ([]byte, error) {
	if format == Binary && slot == c.layout.SHA1Index() {
		return append(out, rec...), nil
	}
	e, err := c.entry(rec)
	if err != nil {
		return out, fmt.Errorf("collector: record %d: %w", i, err)
	}
	if format == ASCII {
		out, err = e.AppendASCII(out, slot, c.layout.Order())
	} else {
		out, err = e.AppendBinary(out, slot, c.layout.Order())
	}
	if err != nil {
		return out, fmt.Errorf("collector: record %d: %w", i, err)
	}
	return out, nil
}

// entry decodes a stored record and recomputes its digests for every slot
// of the layout, as a kexec restore does.
//
// DecodeAll, not a Decoder: a Decoder's 64 KiB read buffer per record made
// serving a column other than the stored SHA-1 one allocate 64 KiB per
// record (BenchmarkServe/WriteLog/*-sha256).
func (c *Collector) entry(rec []byte) (*template.Entry, error) {
	es, err := template.DecodeAll(rec, template.DecodeOptions{Order: c.layout.Order(), DigestSize: 20})
	if err != nil {
		return nil, err
	}
	if len(es) != 1 {
		return nil, fmt.Errorf("stored record holds %d records", len(es))
	}
	return c.layout.RestoreEntry(es[0])
}
