package ima

import (
	"fmt"

	"github.com/imasim/imasim/ima/template"
)

// File is a file measurement, as a "measure" policy rule would make it.
// NewFile makes the common one, a path and its content; the embedded
// template.File's fields (Content, UID, GID, Mode, the xattrs) are set on
// it directly:
//
//	f := ima.NewFile("/usr/bin/true", data)
//	f.UID, f.Mode = 1000, 0o100755
//	err := k.Measure(f)
type File struct {
	// Path is the pathname recorded in the n / n-ng field.
	Path string
	// File holds the content (or only what the fields read when Digest is
	// given), uid, gid, mode and extended attributes.
	template.File
	// Digest, if set, is the file digest in HashAlgo, as IMA would have
	// computed it; otherwise Content is hashed with ima_hash.
	Digest   []byte
	HashAlgo template.HashAlgo
	// Modsig is an appended signature, for templates with modsig fields.
	Modsig *template.Modsig
	// PCR is the policy rule's pcr=; the zero value (no pcr=) means
	// CONFIG_IMA_MEASURE_PCR_IDX.
	PCR RulePCR
	// Template is the policy rule's template=; empty means the boot
	// template.
	Template string
}

// NewFile returns the measurement of the file at path with the given
// content (uid, gid and mode 0, no xattrs), for the boot template and
// the measure PCR. No kernel counterpart.
func NewFile(path string, content []byte) File {
	return File{Path: path, File: template.File{Content: content}}
}

// RulePCR is a policy rule's pcr= option. The zero value is a rule without
// it, which measures into CONFIG_IMA_MEASURE_PCR_IDX; PCR(n) is a rule with
// pcr=n, including pcr=0.
//
// Mirrors security/integrity/ima/ima_policy.c: Opt_pcr sets entry->pcr and
// the IMA_PCR flag, and ima_match_policy() overrides the measure PCR only
// when the flag is set.
type RulePCR struct {
	set bool
	n   uint32
}

// PCR is a policy rule's pcr=n.
func PCR(n uint32) RulePCR { return RulePCR{set: true, n: n} }

// or is the PCR a measurement under the rule extends, def without pcr=.
func (p RulePCR) or(def uint32) uint32 {
	if p.set {
		return p.n
	}
	return def
}

// Measure records a file measurement and extends the TPM.
//
// Mirrors security/integrity/ima/ima_api.c:ima_store_measurement() (with
// ima_collect_measurement() reduced to hashing Content with ima_hash).
//
// It returns the queue's answer: nil, syscall.EEXIST for a duplicate (the
// kernel treats it like success and marks the inode measured) or
// syscall.ENODEV when measurement is suspended. The kernel never reports
// these to the process that opened the file; the model returns them so that
// tests can see them.
//
// Differences from Linux: no policy evaluation and no inode cache; every
// call is a measurement the policy asked for.
func (k *Kernel) Measure(f File) error {
	algo := f.HashAlgo
	if f.Digest == nil {
		algo = k.layout.HashAlgo()
	}
	ev, err := template.NewFileEvent(f.Path, &f.File, algo, f.Digest)
	if err != nil {
		return err
	}
	ev.Modsig = f.Modsig
	desc := k.desc
	if f.Template != "" {
		if desc, err = template.LookupOrParse(f.Template); err != nil {
			return err
		}
	}
	return k.store(desc, f.PCR.or(k.pcr), ev)
}

// store builds the entry for ev and adds it.
//
// Mirrors security/integrity/ima/ima_api.c:ima_alloc_init_template() and
// ima_store_template().
func (k *Kernel) store(desc *template.Descriptor, pcr uint32, ev *template.Event) error {
	e, err := k.layout.NewEntry(desc, pcr, ev)
	if err != nil {
		return err
	}
	return k.queue.Add(e)
}

// BufferOptions are the arguments of a buffer measurement besides its name
// and data.
type BufferOptions struct {
	// HashBuffer measures the hash of the buffer instead of the buffer
	// (buf_hash: the buf field holds H(buf)).
	HashBuffer bool
	// PCR is the policy rule's pcr=; the zero value (no pcr=) means
	// CONFIG_IMA_MEASURE_PCR_IDX.
	PCR RulePCR
	// Template is the policy rule's template=; empty means ima-buf.
	Template string
}

// MeasureBuffer records a buffer measurement (critical data, keys,
// kexec-cmdline), named name.
//
// Mirrors security/integrity/ima/ima_main.c:process_buffer_measurement().
func (k *Kernel) MeasureBuffer(name string, buf []byte, opts BufferOptions) error {
	desc := k.buf
	if opts.Template != "" {
		var err error
		if desc, err = template.LookupOrParse(opts.Template); err != nil {
			return err
		}
	}
	return k.store(desc, opts.PCR.or(k.pcr), k.layout.BufferEvent(name, buf, opts.HashBuffer))
}

// Violation causes, the audit causes of ima_rdwr_violation_check().
const (
	CauseOpenWriters = "open_writers"
	CauseToMToU      = "ToMToU"
)

// Violation records a measurement violation on the file at path (f may be
// nil): the violations counter moves first, then a record with zero
// digests is added to the boot template's list in CONFIG_IMA_MEASURE_PCR_IDX
// and the TPM is extended with 0xFF.
//
// Mirrors security/integrity/ima/ima_api.c:ima_add_violation() ([PATCH v7
// 01/12] for the counter).
func (k *Kernel) Violation(path string, f *template.File, cause string) error {
	if cause == "" {
		return fmt.Errorf("ima: violation without a cause")
	}
	k.queue.AddViolation()
	return k.store(k.desc, k.pcr, template.NewViolationEvent(path, f, cause))
}
