package measlist

import (
	"sync/atomic"

	"github.com/imasim/imasim/ima/template"
)

// Kernel memory, as the kernel would hold it: a model of the slab
// allocations behind each record, so that reports can show what staging
// frees. The model follows the x86-64 struct layouts of ima.h and the
// kmalloc size classes (kmalloc-8 ... kmalloc-8k; larger requests come
// from the page allocator, rounded to pages):
//
//	struct ima_queue_entry       hnext (16) + later (16) + entry (8) = 40  -> kmalloc-64
//	struct ima_template_entry    pcr (4, padded to 8) + digests (8) + template_desc (8)
//	                             + template_data_len (4, padded to 8)
//	                             + template_data[n] (16 each: u8 *data, u32 len, padding)
//	                             = 32 + 16n                                   -> kmalloc of that
//	digests                      (NR_BANKS + ima_extra_slots) * sizeof(struct tpm_digest)
//	                             = slots * 66 (u16 alg_id + 64-byte digest)  -> kmalloc of that
//	each field's data            its stored length (ima_write_template_field_data());
//	                             nothing for an empty field                  -> kmalloc of that
//	the hash table               1024 buckets * 8 bytes = 8 KiB, one array   -> kmalloc-8k
//
// A record in a list holds all four. After D or N without ima_flush_htable
// the kernel frees only the field data: the queue entry, the template
// entry and the digests stay for the hash table. With the flush (D only) or
// CONFIG_IMA_DISABLE_HTABLE, everything is freed.

// kmallocClasses are the generic kmalloc caches of a 64-bit kernel.
var kmallocClasses = [...]int{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192}

const pageSize = DefaultPageSize

// DefaultPageSize is PAGE_SIZE on x86_64: the page size wherever a
// configuration leaves it 0 (seq_file buffers, kexec segments, slab pages).
const DefaultPageSize = 4096

// PageSizeOr returns n, or DefaultPageSize when n is 0.
func PageSizeOr[T int | uint64](n T) T {
	if n == 0 {
		return DefaultPageSize
	}
	return n
}

// KmallocSize returns what kmalloc(n) takes: the smallest size class that
// holds n bytes, whole pages beyond 8 KiB, 0 for n == 0 (ZERO_SIZE_PTR).
func KmallocSize(n int) int {
	if n <= 0 {
		return 0
	}
	for _, c := range kmallocClasses {
		if n <= c {
			return c
		}
	}
	return (n + pageSize - 1) / pageSize * pageSize
}

// Struct sizes of ima.h on x86-64.
const (
	sizeofQueueEntry    = 40
	sizeofTemplateEntry = 32 // without template_data[]
	sizeofFieldData     = 16
	sizeofTPMDigest     = 66
	// HtableBytes is one bucket array: 1024 struct hlist_head.
	HtableBytes = 1024 * 8
)

// RecordFootprint returns the modelled kernel memory of one record with
// slots digest slots: what it holds while in a list (live) and what stays
// allocated after it is deleted without a flush (retained).
func RecordFootprint(e *template.Entry, slots int) (live, retained int) {
	retained = KmallocSize(sizeofQueueEntry) +
		KmallocSize(sizeofTemplateEntry+sizeofFieldData*len(e.Fields)) +
		KmallocSize(slots*sizeofTPMDigest)
	live = retained
	for _, f := range e.Fields {
		live += KmallocSize(len(f))
	}
	return live, retained
}

// KernelMemory is the modelled kernel memory of the queue's records.
type KernelMemory struct {
	// Lists is the memory of the records in the current and staged lists.
	Lists int64
	// Retained is what deleted records still hold without a flush: the
	// queue entry, template entry and digests the hash table refers to
	// (and, for records restored by kexec, which the hash table does not
	// refer to, memory nothing refers to: see docs/FINDINGS.md).
	Retained int64
	// Lost is the memory of records detached by a D whose flush
	// allocation failed (docs/SPEC.md Q3): in no list, never freed.
	Lost int64
	// Htable is the bucket array.
	Htable int64
	// WithoutStaging is what the kernel would hold had no record been
	// deleted: every record added since boot, whole, and the bucket
	// array. It is the figure staging is measured against.
	WithoutStaging int64
}

// Total is the sum of every part.
func (m KernelMemory) Total() int64 { return m.Lists + m.Retained + m.Lost + m.Htable }

// kmemCounters track KernelMemory as records come and go; updated
// atomically, outside the mutex where possible.
type kmemCounters struct {
	lists, retained, lost, added atomic.Int64
}

// KernelMemory returns the modelled kernel memory now. No kernel
// counterpart; the kernel exposes no such figure.
func (q *Queue) KernelMemory() KernelMemory {
	return KernelMemory{
		Lists:    q.kmem.lists.Load(),
		Retained: q.kmem.retained.Load(),
		Lost:     q.kmem.lost.Load(),
		Htable:   HtableBytes,

		WithoutStaging: q.kmem.added.Load() + HtableBytes,
	}
}
