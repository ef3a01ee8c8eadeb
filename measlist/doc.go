// Package measlist is the kernel's measurement queue after the staging
// series: the current and staged lists, the per-type counters, append and
// extend under the extend-list mutex, staging (A), deleting the staged
// records (D), deleting the first N records (N), suspension, and the kexec
// dump and restore.
//
// It mirrors security/integrity/ima/ima_queue.c and ima_kexec.c (and the
// restore half of ima_template.c) as changed by "[PATCH v7 01/12]",
// "03/12", "04/12", "08/12", "09/12", "10/12" and "11/12" of "ima:
// Exporting and deleting IMA measurement records from kernel memory", as
// merged for Linux 7.2. docs/KERNEL-MAP.md lists every function.
//
// # Lists
//
// Both lists are singly linked chains whose head is published atomically,
// like the kernel's RCU list: appends link at the tail under the mutex
// (list_add_tail_rcu); A moves the whole chain to the staged list in O(1)
// (list_replace); N cuts a prefix in O(1) at a record found by a walk made
// without the mutex (__list_cut_position); D detaches the staged chain in
// O(1). Records leave memory only after the mutex is dropped.
//
// # Lock order
//
//	writerMutex          (the single-writer exclusion of ima_fs.c: A, D, N)
//	  extendListMutex    (ima_extend_list_mutex: appends, extends, list swaps, counters)
//	    the TPM back end's own mutex (one TPM command)
//
// Add takes only extendListMutex. Readers (Walk, the N walk, hash lookups)
// take no mutex: they run inside a read-side section of the queue's
// rcu.Domain. Releases (of detached records and of a flushed bucket array)
// wait for a grace period, outside every mutex.
//
// # What readers may see
//
// Walk sees a prefix of a list as it stood when the walk began, possibly
// with records appended since; never a torn record (records are fully built
// before they are linked) and never a released one (releases wait for a
// grace period; reaching a released record panics, which tests report).
// The counters are atomics and may be read at any time; between two reads
// another operation may run, so a counter and a walk need not agree unless
// the caller excludes writers, as the securityfs layer does.
//
// # Freeing
//
// Freed means unreachable and poisoned: D and N drop the template data of
// the records they delete (fields become nil) and mark the records, keeping
// the queue entry, the template entry and its digests reachable from the
// hash table as the kernel does; with ima_flush_htable (D only) or
// CONFIG_IMA_DISABLE_HTABLE the whole record is dropped.
package measlist
