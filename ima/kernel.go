package ima

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/imasim/imasim/htable/rcu"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// DefaultMeasurePCR is CONFIG_IMA_MEASURE_PCR_IDX's default.
const DefaultMeasurePCR = 10

// Config is a kernel's build configuration and boot command line, as far as
// IMA's measurement list depends on them. The zero value is the kernel's
// defaults with no TPM.
type Config struct {
	// TPM is the TPM chip; nil is TPM-bypass mode (no extends, an all-zero
	// boot aggregate). Its banks, in the TPM's order, give the digest
	// slots.
	TPM tpmext.TPM
	// HashAlgo is ima_hash= (a hash_algo_name such as "sha256"); empty is
	// CONFIG_IMA_DEFAULT_HASH, whose Kconfig default is "sha1".
	HashAlgo string
	// Template is ima_template= (a builtin name); empty is
	// CONFIG_IMA_DEFAULT_TEMPLATE, "ima-ng". TemplateFmt is
	// ima_template_fmt= (a custom format such as "d-ng|n-ng|iuid"); at
	// most one of the two may be set.
	Template    string
	TemplateFmt string
	// MeasurePCR is CONFIG_IMA_MEASURE_PCR_IDX (8 to 14); 0 means 10.
	MeasurePCR int
	// BigEndian models a big-endian kernel. CanonicalFmt is
	// ima_canonical_fmt, which makes a big-endian kernel write
	// little-endian (and has no effect on a little-endian one).
	BigEndian    bool
	CanonicalFmt bool
	// Staging is CONFIG_IMA_STAGING (default n).
	Staging bool
	// NDeleteNeedsStaging: see staging.Config; false models the v7 code.
	NDeleteNeedsStaging bool
	// FlushHtable is the ima_flush_htable boot parameter.
	FlushHtable bool
	// HtableDisabled is CONFIG_IMA_DISABLE_HTABLE.
	HtableDisabled bool
	// Locking is the model's safe default, or the kernel's exact locking
	// (measlist.Locking.KernelExact), under which threads that share the
	// writer's descriptors can corrupt the lists as the v7 code would.
	Locking measlist.Locking
	// Kexec is CONFIG_IMA_KEXEC: binary sizes are tracked and the list is
	// carried over kexec. KexecExtraMemoryKB is
	// CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB.
	Kexec              bool
	KexecExtraMemoryKB int
	// CriticalData says the policy measures critical data (a "measure
	// func=CRITICAL_DATA" rule): the kernel_version record at the end of
	// boot and, with Kexec, the kexec_load and kexec_execute records.
	CriticalData bool
	// KernelVersion is UTS_RELEASE, the kernel_version record's buffer;
	// empty means "7.2.0".
	KernelVersion string
	// Firmware, if set, runs at every cold boot and reboot, after the TPM
	// reset and before IMA initialises: it extends PCRs 0-9 as firmware
	// and boot loader would. It does not run at kexec.
	Firmware func(tpmext.TPM) error
	// PageSize is PAGE_SIZE (seq_file buffers, kexec segments); 0 is 4096.
	PageSize int
	// BootIDRand, if set, is where boot ids come from (16 bytes read at
	// each boot, kexec included, made a version-4 UUID); nil is
	// crypto/rand, random as the kernel's. A seeded source makes a run's
	// boot ids repeatable. It is read only while a kernel boots.
	BootIDRand io.Reader
}

// Kernel is one booted kernel's IMA. After Reboot or Kexec it stays
// suspended: its files still answer, with the errors of a kernel that is
// going down.
type Kernel struct {
	cfg    Config
	layout *template.Layout
	desc   *template.Descriptor // ima_template_desc_current()
	buf    *template.Descriptor // ima_template_desc_buf()
	queue  *measlist.Queue
	fs     *staging.SecurityFS
	pcr    uint32
	bootID string

	mu sync.Mutex
	// kexecSegmentSize is kexec_segment_size, set at KexecLoad;
	// protected by mu.
	kexecSegmentSize uint64
	kexecLoaded      bool // a segment is allocated; protected by mu
	gone             bool // rebooted or kexec'd; protected by mu
	// Restore reports how the kexec restore went at boot.
	restore *measlist.RestoreResult
	// restoreErr is what ima_load_kexec_buffer() would log.
	restoreErr error
}

// New boots a kernel on cfg.TPM (running cfg.Firmware first).
//
// Mirrors security/integrity/ima/ima_init.c:ima_init() and its callers'
// order: crypto slots (ima_init_crypto), the kexec restore
// (ima_load_kexec_buffer), the hash table (ima_init_htable), the boot
// aggregate (ima_add_boot_aggregate), the securityfs files (ima_fs_init),
// and the kernel_version critical data (ima_init_critical_data).
func New(cfg Config) (*Kernel, error) {
	if cfg.Firmware != nil && cfg.TPM != nil {
		if err := cfg.Firmware(cfg.TPM); err != nil {
			return nil, fmt.Errorf("ima: firmware: %w", err)
		}
	}
	return boot(cfg, nil)
}

// boot brings IMA up on a TPM that is already running, restoring carried,
// a kexec dump (nil after a cold boot).
func boot(cfg Config, carried []byte) (*Kernel, error) {
	k := &Kernel{cfg: cfg, pcr: DefaultMeasurePCR, bootID: newBootID(cfg.BootIDRand)}
	if cfg.MeasurePCR != 0 {
		if cfg.MeasurePCR < 8 || cfg.MeasurePCR > 14 {
			return nil, fmt.Errorf("ima: CONFIG_IMA_MEASURE_PCR_IDX %d out of range 8..14", cfg.MeasurePCR)
		}
		k.pcr = uint32(cfg.MeasurePCR)
	}
	var err error
	switch {
	case cfg.Template != "" && cfg.TemplateFmt != "":
		return nil, errors.New("ima: set ima_template= or ima_template_fmt=, not both")
	case cfg.TemplateFmt != "":
		k.desc, err = template.TemplateFmtSetup(cfg.TemplateFmt)
	default:
		name := cfg.Template
		if name == "" {
			name = "ima-ng"
		}
		k.desc = template.Builtin(name)
		if k.desc == nil {
			err = fmt.Errorf("ima: unknown template %q", name)
		}
	}
	if err != nil {
		return nil, err
	}
	hashName := cfg.HashAlgo
	if hashName == "" {
		hashName = "sha1"
	}
	algo, err := template.HashSetup(hashName, k.desc)
	if err != nil {
		return nil, fmt.Errorf("ima: ima_hash=%s: %w", hashName, err)
	}
	if cfg.Template != "" {
		// ima_template_setup() refuses "ima" with a hash it cannot use.
		if k.desc, err = template.TemplateSetup(cfg.Template, algo); err != nil {
			return nil, err
		}
	}
	k.buf = template.Builtin("ima-buf")
	order := template.LittleEndian
	if cfg.BigEndian && !cfg.CanonicalFmt {
		order = template.BigEndian
	}
	var banks []tpmext.Algorithm
	if cfg.TPM != nil {
		banks = cfg.TPM.Banks()
	}
	if k.layout, err = template.NewLayout(banks, algo, order); err != nil {
		return nil, err
	}
	k.queue, err = measlist.New(measlist.Config{
		Layout: k.layout, TPM: cfg.TPM, HtableDisabled: cfg.HtableDisabled,
		FlushHtable: cfg.FlushHtable, Kexec: cfg.Kexec, RCU: new(rcu.Domain),
		Locking: cfg.Locking,
	})
	if err != nil {
		return nil, err
	}
	if carried != nil {
		res, err := k.queue.RestoreKexec(carried)
		k.restore, k.restoreErr = &res, err
	}
	if err := k.addBootAggregate(); err != nil {
		return nil, err
	}
	if k.fs, err = staging.New(staging.Config{Queue: k.queue, Staging: cfg.Staging,
		NDeleteNeedsStaging: cfg.NDeleteNeedsStaging, PageSize: cfg.PageSize}); err != nil {
		return nil, err
	}
	if cfg.CriticalData {
		v := cfg.KernelVersion
		if v == "" {
			v = "7.2.0"
		}
		// ima_init_critical_data(): label "kernel_info".
		if err := k.MeasureBuffer("kernel_version", []byte(v), BufferOptions{}); err != nil {
			return nil, fmt.Errorf("ima: kernel_version: %w", err)
		}
	}
	return k, nil
}

// addBootAggregate records boot_aggregate from the TPM's PCRs 0-9.
//
// Mirrors security/integrity/ima/ima_init.c:ima_add_boot_aggregate().
func (k *Kernel) addBootAggregate() error {
	var pcrs tpmext.PCRValues
	if k.cfg.TPM != nil {
		var err error
		if pcrs, err = k.cfg.TPM.ReadPCRs(); err != nil {
			return fmt.Errorf("ima: reading PCRs for boot_aggregate: %w", err)
		}
	}
	e, err := k.layout.NewBootAggregate(k.desc, k.pcr, pcrs)
	if err != nil {
		return err
	}
	return k.queue.Add(e)
}

// Layout returns the record layout (slots, byte order).
func (k *Kernel) Layout() *template.Layout { return k.layout }

// Template returns the boot template (ima_template_desc_current()).
func (k *Kernel) Template() *template.Descriptor { return k.desc }

// Queue returns the measurement queue.
func (k *Kernel) Queue() *measlist.Queue { return k.queue }

// SecurityFS returns the securityfs directory.
func (k *Kernel) SecurityFS() *staging.SecurityFS { return k.fs }

// FS returns the securityfs directory as task t sees it.
func (k *Kernel) FS(t staging.Task) staging.FS { return k.fs.As(t) }

// TPM returns the TPM chip, nil in TPM-bypass mode.
func (k *Kernel) TPM() tpmext.TPM { return k.cfg.TPM }

// Config returns the configuration the kernel booted with.
func (k *Kernel) Config() Config { return k.cfg }

// MeasurePCR returns CONFIG_IMA_MEASURE_PCR_IDX.
func (k *Kernel) MeasurePCR() int { return int(k.pcr) }

// Restored returns what the kexec restore at boot did (nil after a cold
// boot) and the error the kernel would have logged.
func (k *Kernel) Restored() (*measlist.RestoreResult, error) { return k.restore, k.restoreErr }

// BootID identifies this kernel instance, as /proc/sys/kernel/random/boot_id
// does: a random UUID, new at every boot, kexec included.
func (k *Kernel) BootID() string { return k.bootID }

// newBootID returns a random version-4 UUID read from src (nil:
// crypto/rand).
//
// Mirrors drivers/char/random.c:proc_do_uuid() for boot_id.
// Differences from Linux: the bytes come from src when it is set; a
// source that runs dry falls back to crypto/rand.
func newBootID(src io.Reader) string {
	var b [16]byte
	if src == nil {
		src = rand.Reader
	}
	if _, err := io.ReadFull(src, b[:]); err != nil {
		rand.Read(b[:]) // a short seeded source: fall back to random
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
