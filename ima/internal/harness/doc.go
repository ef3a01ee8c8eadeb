// Package harness is the whole-system proof harness of imasim: a reference
// model of the simulated kernel's IMA (the measurement lists, counters and
// counter files, the hash table, the suspended flag, the securityfs
// open/release bookkeeping and seq_file reads, the software TPM's PCRs, kexec
// and reboot) and of the user-space collector, written for clarity and not
// for speed, and a runner that drives random operation sequences against the
// model and the real packages (ima, staging, measlist, staging/collector)
// together, comparing everything observable after every step.
//
// It has no kernel counterpart; it exists so that tests can check that the
// staging semantics of "[PATCH v7 00/12] ima: Exporting and deleting IMA
// measurement records from kernel memory" (Linux 7.2) hold under any
// sequence of operations, as docs/SPEC.md §2-§5 describes them.
//
// The model is independent of the code under test: it reuses only the record
// layer (ima/template: building entries, rendering them, template digests),
// which is tested on its own, and tpmext.ExtendValue as the extend oracle. It
// does not use measlist, staging, htable or the collector. It keeps plain
// slices and maps, and the seq_file reads are a line-by-line transcription of
// fs/seq_file.c:seq_read_iter(), traverse() and seq_lseek().
//
// The tests are FuzzSystem (operations decoded from the fuzzer's bytes),
// TestSystemSeeded (many seeded sequences; a failure prints the sequence as a
// script) and TestRaceStress (concurrent adders, collectors, deleters,
// readers and would-be writers under -race, with invariants checked as they
// run and at the end).
//
// Lock order: model.mu only; the runner takes no other lock of its own.
package harness
