// Package htable is the IMA digest hash table after the staging series: an
// RCU-published, dynamically allocated array of 1024 buckets that can be
// replaced quickly ("flushed") while measurements go on.
//
// It mirrors, in security/integrity/ima/:
//   - ima.h: IMA_HASH_BITS, IMA_MEASURE_HTABLE_SIZE, ima_hash_key();
//   - ima_queue.c: ima_lookup_digest_entry(), the hash-table half of
//     ima_add_digest_entry(), ima_alloc_replace_htable(), ima_init_htable(),
//     and the synchronize_rcu()+kfree() of the old array;
//
// as changed by "[PATCH v7 02/12] ima: Replace static htable queue with
// dynamically allocated array" and "[PATCH v7 10/12] ima: Add support for
// flushing the hash table when staging measurements" (Linux 7.2).
//
// The table knows nothing of templates: it maps (digest, pcr) keys to values
// of any type (the queue stores its list entries). The digest is the template
// digest in the ima_hash algorithm's slot; the caller chooses it.
//
// Lock order: the caller's extend-list mutex (measlist) protects InsertLocked
// and ReplaceLocked. Readers take no lock, only an RCU read-side section of
// the rcu.Domain given to New. Release must run without the mutex, as the
// kernel calls synchronize_rcu() after mutex_unlock().
//
// What lock-free readers may see: across a replacement, the old array or
// the new one, each a consistent set of chains (nodes are immutable once
// published and are published head-first). Never a released array: Release
// poisons an array only after a grace period, and a reader that reached a
// poisoned array panics, which the race tests would report.
package htable
