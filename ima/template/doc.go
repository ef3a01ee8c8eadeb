// Package template is the record layer of the IMA measurement list: template
// descriptors, template fields, entries, template digests, the binary and
// ASCII encodings of the securityfs lists, their decoding, and the boot
// aggregate.
//
// It mirrors, from the Linux kernel:
//   - security/integrity/ima/ima_template.c: builtin descriptors, format
//     strings, lookup_template_desc(), the record walk of
//     ima_restore_measurement_list();
//   - security/integrity/ima/ima_template_lib.c: every field's init (its
//     stored bytes) and show (its ASCII and binary rendering);
//   - security/integrity/ima/ima_crypto.c: the digest slots
//     (ima_init_crypto()), the template digest
//     (ima_calc_field_array_hash()) and the boot aggregate
//     (ima_calc_boot_aggregate());
//   - the show functions of security/integrity/ima/ima_fs.c
//     (ima_measurements_show(), ima_ascii_measurements_show()) and the
//     list-file naming of create_securityfs_measurement_lists();
//   - include/uapi/linux/hash_info.h, crypto/hash_info.c and the
//     tpm2_hash_map of drivers/char/tpm/tpm2-cmd.c (HashAlgo);
//   - the event data built by ima_main.c (process_buffer_measurement()),
//     ima_api.c (ima_store_measurement(), ima_add_violation()) and
//     ima_init.c (ima_add_boot_aggregate()).
//
// The behaviour followed is upstream as of mid-2025 to early 2026 (with the
// tpm_alg_<id> file naming of commit d7bd8cf0b348 and the per-bank template
// digests and PCR 8-9 boot aggregate of v5.8+), which the staging series
// "ima: Exporting and deleting IMA measurement records from kernel memory"
// (v7, Linux 7.2) leaves unchanged for this layer. The written reference is
// the kernel source named on each function.
//
// # Model
//
// A Layout is one booted kernel's view: the TPM banks in the TPM's order,
// ima_hash, and the byte order (Order). Layout.NewEntry builds the record
// the kernel adds for an Event (NewFileEvent, NewViolationEvent,
// Layout.BufferEvent, Layout.BootAggregateEvent), filling every field of a
// Descriptor and the template digest of every slot. Entry.AppendBinary and
// Entry.AppendASCII render a record as the list file of one slot shows it;
// Scanner frames binary records in place without allocating, telling a
// short record (read on) from a malformed one; it is the one parser of the
// binary format, under DecodeAll, Split and Decoder here, the eventlog
// package's sources and measlist's kexec restore. Template data over
// MaxTemplateDataLen is refused, so a reader's memory is bounded whatever a
// length field claims. Order is the one byte-order helper. Nothing here holds global
// state: the kernel's lists of registered templates and its counters
// belong to other packages.
//
// # Decisions where the kernel is unclear
//
//   - d with MD5: the d field stores the file digest as is when it is SHA-1
//     or MD5, so an MD5 digest gives a 16-byte d field (ima_eventdigest_init
//     copies iint->ima_hash->length bytes); no real log is known. A boot
//     aggregate with ima_hash=md5 and no TPM therefore has a 16-byte zero d.
//     Decoding the legacy "ima" layout assumes 20 bytes (IMA_DIGEST_SIZE),
//     as evmctl does, since the record does not say.
//   - tpm_alg_<id> files: the kernel shows hash_digest_size[HASH_ALGO__LAST]
//     bytes for an unmapped bank, an out-of-bounds read. This package gives
//     such a slot the TPM bank's digest size, so its file shows the padded
//     SHA-1 digest (SHA-1 then zeros) at the bank's width, which is what is
//     extended.
//   - Bytes the kernel never builds (only a decoded list can hold them): a
//     digest-with-algorithm field without ':' renders in hex, a string field
//     without NUL renders whole, and an "ima" n field longer than 256 bytes
//     is hashed by its first 256 bytes; the kernel would crash or overrun a
//     buffer. Decoding refuses an "ima" n field over 255 bytes or holding a
//     NUL, so this only concerns hand-built entries.
//   - Template names when decoding: without DecodeOptions.Restore a name is
//     a builtin only when it is exactly a builtin's name, anything else is a
//     custom format, so every record re-encodes to its own bytes. With
//     Restore, names resolve like lookup_template_desc(): a record named
//     "d-ng|n-ng" becomes ima-ng (and "d|n" becomes the legacy ima
//     template, hashed and shown the legacy way, as the kernel would).
//   - An empty template name is refused when decoding (a kernel restore
//     would match its ima_template_fmt placeholder, whose name is "").
//   - Name limits: decoding accepts template names up to MaxNameLenEvmctl
//     (255) by default, or the caller's limit; Restore uses the kernel's
//     MaxNameLenRestore (68).
//   - The n field's 255-character rule takes the text after the last '/'
//     as the dentry name when the event has a file.
//   - An empty security.ima or security.evm value is treated as absent.
//   - Extra slots have the TPM algorithm id of their algorithm when
//     tpm2_hash_map has one (the kernel leaves 0 in the extra ima_hash
//     slot; nothing reads it).
//   - The IMA_INIT_LATE_SYNC boot-aggregate rename (2026, not upstream in
//     the baseline) is not modelled.
//
// Hash algorithms: MD5, SHA-1, SHA-224, SHA-256, SHA-384, SHA-512, SM3 and
// SHA3-256/384/512 have implementations; MD4, RIPEMD-128/160/256/320,
// Whirlpool, Tiger and Streebog do not (HashAlgo.Available), so they can be
// named and sized but not used as ima_hash.
//
// # Concurrency
//
// Descriptors and Layouts are immutable. Entries are not modified after
// NewEntry or decoding returns them (ComputeDigests rewrites an entry's
// digests and must not run concurrently with readers of that entry). All
// functions are safe for concurrent use.
//
// Lock order: none; the package takes no locks (its scratch buffers come
// from a sync.Pool).
package template
