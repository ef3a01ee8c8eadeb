// Package eventlog is the verifier's side of an IMA measurement list: parse
// a list (binary with any template-digest column and byte order, or ASCII),
// replay it into PCR banks, verify it against PCR values or a quote, find
// the N records a quote covers (the N the staging documentation tells
// agents to compute), resume from a saved state, and concatenate saved
// chunks.
//
// It has no kernel counterpart as a whole: it reads what
// security/integrity/ima/ima_fs.c writes (ima_measurements_show(),
// ima_ascii_measurements_show()) and redoes what the kernel did when it
// added each record: the template digest of
// ima_crypto.c:ima_calc_field_array_hash(), the per-bank extend of
// ima_queue.c:ima_add_template_entry() and ima_pcr_extend(), and the
// violation digests of ima_queue.c:ima_init_digests(). It follows the
// kernel as of the v7 staging series ("ima: Exporting and deleting IMA
// measurement records from kernel memory", Linux 7.2), which leaves these
// unchanged; docs/SPEC.md §3.2 and §6 of the project say what it relies on. Its API is shaped like
// go-attestation's TCG log verifier (attest.ParseEventLog,
// attest.EventLog.Verify returning a typed attest.ReplayError).
//
// # Reading lists
//
// ParseEventLog parses a list held in memory; NewReader reads one from an
// io.Reader a batch at a time (64 KiB), so a list of any length costs
// constant memory. Options name the byte order (the kernel's, or
// little-endian with ima_canonical_fmt) and the column: 20 bytes for
// binary_runtime_measurements and *_sha1, 32 for *_sha256 and *_sm3, 48,
// 64. Records are checked as template.DecodeAll checks them (the same
// errors at the same offsets), and PCRs above 23 are refused as evmctl
// refuses them. Errors are *template.DecodeError values naming the record
// and the byte offset of the bad item. No length field makes either
// reader allocate more than the bytes that actually arrive.
//
// ASCII lines (ascii_runtime_measurements) carry no template data; each
// line's is rebuilt from its rendered fields, field kind by field kind
// (d-ng "sha256:<hex>" becomes "sha256:" NUL and the bytes, n-ng the name
// and a NUL, iuid a u32 in the list's order, and so on), and the rebuilt
// record must render back to the line byte for byte. That covers every
// template the kernel has: ima, ima-ng, ima-ngv2, ima-sig, ima-sigv2,
// ima-buf, ima-modsig, evm-sig and custom formats of their fields. Lines
// that cannot be rebuilt exactly are refused with ErrNotRebuildable:
// names with spaces or newlines (the kernel writes '_' for a space, but a
// file name may hold a newline, which splits the line), upper-case hex, a
// custom out-of-tree template (template.ErrUnknownTemplate). Keylime
// rebuilds lines the same way (keylime/ima/ast.py) for four templates.
//
// # Replaying and verifying
//
// Each bank is extended, per record, with H_bank(template data): the
// record's digest in that bank's algorithm, or, for a bank the kernel
// cannot map (SHA-3), the SHA-1 digest zero-padded. A violation (an
// all-zero column digest; security/integrity/ima/ima_api.c:
// ima_add_violation()) extends 0xFF over the bank's size, as the kernel
// does. ReplayOptions.Violations = ViolationsZero extends zeros instead,
// which is what evmctl ima_measurement does unless given
// --ignore-violations; a list with violations then never matches a real
// TPM. ReplayOptions.PaddedSHA1 replays lists of kernels before v5.8,
// which extended every bank with the SHA-1 template digest zero-padded
// (violations 0xFF×20 then zeros). All 24 PCRs of every bank are
// replayed, so policy rules with pcr= are followed.
//
// EventLog.Verify (and Reader.Verify) demands more than evmctl:
//
//   - the whole list is consumed and the values match after the last
//     record; evmctl stops at the first entry where they match, so it
//     passes records appended after the PCRs were read;
//   - every record's template digest matches its data, checked in the
//     column's algorithm (SHA-1 for the 20-byte column, SHA-256 for 32
//     bytes unless Options.ColumnAlg says otherwise); evmctl checks only
//     SHA-1, and only the legacy column;
//   - every PCR a record extends has an expected value in every bank
//     given, so no record goes unchecked (ErrUncheckedPCR); evmctl skips
//     the PCRs its replay leaves at zero;
//   - at least one expected value is needed; evmctl exits 0 when it reads
//     no PCR at all;
//   - any bank the TPM may have (SHA-1, SHA-2, SM3, SHA-3), any column,
//     either byte order, ASCII lists; evmctl knows sha1 and sha256, the
//     SHA-1 column in host order, and binary lists.
//
// Where evmctl is stricter: it refuses a list mixing the "ima" template
// with others, which the kernel can write (a policy rule may name
// template=ima: security/integrity/ima/ima_policy.c:ima_parse_rule(),
// Opt_template); this package accepts it.
//
// A failure is a *ReplayError naming the first problem: the first record
// whose template digest does not match its data, or the first record
// extending an unchecked PCR, or, when every digest is right, the bank, the
// PCR and the number of records replayed, with the first record not
// covered when a prefix of the list did reach the expected values.
//
// # Quotes, N and incremental verification
//
// EventLog.ReplayUntil replays until a Target (PCR values, and/or the PCR
// digests of quotes, see QuoteTarget) matches and returns N, the smallest
// number of records at which it does, N = 0 included, and the State there:
// the number of records and the running value of every PCR of every bank.
// A verifier saves the State (it marshals to JSON) and resumes from it with
// ReplayOptions.From, over the whole list or over the records from N on
// (Options.FirstIndex and FirstOffset keep the absolute numbering), as
// Keylime does with next_ima_ml_entry and its saved PCR values. This is
// ima-doc's "replay the event log until the quote matches"
// (linux-integrity/ima-doc event-log-format.rst).
//
// # Concatenating chunks
//
// Concat joins saved staged chunks and the kernel's current list into the
// list "as if staging was never done" (Documentation/security/
// IMA-export-delete.rst, [PATCH v7 12/12]), refusing a chunk that ends
// inside a record (ErrTornRecord) or has another byte order or column width
// (ErrMixedFormat, with the format DetectFormat finds for it), with the
// chunk's index, its first record and its offset (*ChunkError).
//
// # Speed
//
// A replay is a pipeline: a producer frames batches of records in place
// with template.Scanner (no allocation per record), workers compute the template digests of
// whole batches on every core, one goroutine per bank extends that bank in
// list order (a bank is a hash chain, but the banks are independent), and
// the calling goroutine scans the records in order and decides.
// BenchmarkVerify measures it against the hashes alone on one core, and
// scripts/compare-evmctl.sh against evmctl; docs/PERFORMANCE.md has the
// figures.
//
// # Concurrency
//
// Lock order: there are no locks. EventLog and State values are not
// modified by this package once returned; an EventLog is safe for
// concurrent use. A Reader, like an io.Reader, is used by one goroutine.
// Inside a replay a batch belongs to one stage at a time and is handed on
// through channels; a bank's running values belong to its goroutine until
// the replay ends.
package eventlog
