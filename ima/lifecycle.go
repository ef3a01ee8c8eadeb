package ima

import (
	"errors"
	"fmt"

	"github.com/imasim/imasim/measlist"
)

// ErrGone is returned by Reboot, KexecLoad and Kexec on a kernel that has
// already rebooted or kexec'd.
var ErrGone = errors.New("ima: this kernel has already rebooted or kexec'd")

func (k *Kernel) kexecOptions() measlist.KexecOptions {
	return measlist.KexecOptions{ExtraMemoryKB: k.cfg.KexecExtraMemoryKB, PageSize: uint64(k.cfg.PageSize)}
}

// KexecLoad models kexec_file_load of a new kernel: the segment that will
// carry the list is sized now, from the current and staged lists plus the
// extra memory, and the kexec_load critical data is recorded (with
// CriticalData). Records added after the load must fit in the extra memory
// or they are not carried. It returns the segment size.
//
// Mirrors security/integrity/ima/ima_kexec.c:ima_add_kexec_buffer() and
// ima_alloc_kexec_file_buf() ([PATCH v7 09/12]).
//
// Errors: measlist.ErrKexecTooLarge ("Binary measurement list too large.",
// always so without CONFIG_IMA_KEXEC, where nothing is carried).
func (k *Kernel) KexecLoad() (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone {
		return 0, ErrGone
	}
	return k.kexecLoadLocked()
}

// kexecLoadLocked is KexecLoad for a kernel that is not gone.
//
// Preconditions: k.mu is held; k.gone is false.
func (k *Kernel) kexecLoadLocked() (uint64, error) {
	if !k.cfg.Kexec {
		return 0, fmt.Errorf("ima: CONFIG_IMA_KEXEC is off: %w", measlist.ErrKexecTooLarge)
	}
	seg, err := k.queue.KexecSegmentSize(k.kexecOptions())
	k.kexecSegmentSize = seg
	if err != nil {
		return 0, err
	}
	k.kexecLoaded = true
	if k.cfg.CriticalData {
		k.measureKexecEventLocked("kexec_load")
	}
	return seg, nil
}

// measureKexecEventLocked records an ima_kexec critical-data record.
//
// Mirrors security/integrity/ima/ima_kexec.c:ima_measure_kexec_event()
// ([PATCH v7 09/12]: BINARY_FULL figures).
//
// Preconditions: k.mu is held.
func (k *Kernel) measureKexecEventLocked(name string) {
	size, count := k.queue.KexecEventCounts()
	buf := fmt.Sprintf("kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;",
		k.kexecSegmentSize, size, count)
	// Like the kernel, a failure to record it is only logged.
	_ = k.MeasureBuffer(name, []byte(buf), BufferOptions{})
}

// Reboot shuts this kernel down (measurement is suspended by the reboot
// notifier), resets the TPM as a host reboot does, runs the firmware again,
// and boots a fresh kernel with the same configuration and an empty list.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_reboot_notifier() for a
// plain restart, followed by a cold boot.
func (k *Kernel) Reboot() (*Kernel, error) {
	k.mu.Lock()
	if k.gone {
		k.mu.Unlock()
		return nil, ErrGone
	}
	k.gone = true
	k.mu.Unlock()
	k.queue.Suspend()
	if k.cfg.TPM != nil {
		if err := k.cfg.TPM.Reset(); err != nil {
			return nil, fmt.Errorf("ima: TPM reset: %w", err)
		}
	}
	return New(k.cfg)
}

// Kexec executes a kexec into a new kernel with the same configuration (a
// different one can be given with KexecInto). The TPM is not reset.
func (k *Kernel) Kexec() (*Kernel, error) { return k.KexecInto(k.cfg) }

// KexecInto executes a kexec into a kernel configured by cfg, on the same
// TPM (cfg.TPM is replaced by this kernel's). If no segment was loaded,
// KexecLoad runs first.
//
// The order is the kernel's: the reboot notifier records kexec_execute
// (with CONFIG_IMA_KEXEC and CriticalData) and suspends measurement, so
// that from then on A fails with EACCES, D and N with ESTALE and
// measurements with ENODEV on this kernel; then the dump writes the staged
// records and then the current ones into the segment; the new kernel
// restores them into its current list (not into its hash table, without
// extending the TPM) before its own boot_aggregate.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_reboot_notifier() and
// ima_kexec.c:ima_update_kexec_buffer() ([PATCH v7 09/12]), then
// ima_init.c:ima_init() with ima_load_kexec_buffer().
//
// Without CONFIG_IMA_KEXEC nothing is carried: the new kernel starts with
// only its boot_aggregate, extended onto the PCRs the old kernel left.
func (k *Kernel) KexecInto(cfg Config) (*Kernel, error) {
	// One critical section from the check to gone = true, as in Reboot:
	// of concurrent callers exactly one brings up a successor.
	k.mu.Lock()
	if k.gone {
		k.mu.Unlock()
		return nil, ErrGone
	}
	if k.cfg.Kexec && !k.kexecLoaded {
		// kexec -l before kexec -e; a list too large to carry is
		// not carried, as in the kernel.
		_, _ = k.kexecLoadLocked()
	}
	k.gone = true
	if k.cfg.Kexec && k.cfg.CriticalData {
		k.measureKexecEventLocked("kexec_execute")
	}
	loaded, seg := k.kexecLoaded, k.kexecSegmentSize
	k.mu.Unlock()
	k.queue.Suspend()
	var carried []byte
	if loaded {
		// A dump that fills the segment is carried as far as it got.
		carried, _ = k.queue.DumpKexec(seg)
	}
	cfg.TPM = k.cfg.TPM
	return boot(cfg, carried)
}
