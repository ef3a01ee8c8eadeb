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
// The model builds on the public reference models, which are independent
// of the code under test: measlist/measlisttest is each kernel's queue (the
// lists, counters, sizes, hash table, suspension, the PCRs it extends, the
// kexec segment and what it carries), and staging/stagingtest is the write
// grammar (kstrtoul included), the open checks and the one-writer
// bookkeeping. What the harness adds is the whole system around them: the
// file set, open file descriptions and their seq_file reads (a
// line-by-line transcription of fs/seq_file.c:seq_read_iter(), traverse()
// and seq_lseek()), the counter files, the kernel instances of one machine
// across kexec and reboot, the log as if staging never happened, and the
// collector. Beside those it reuses only the record layer (ima/template:
// building entries, rendering them, template digests), which is tested on
// its own, and tpmext.ExtendValue as the extend oracle for the log replay.
//
// The tests are FuzzSystem (operations decoded from the fuzzer's bytes),
// TestSystemSeeded (many seeded sequences; a failure prints the sequence as a
// script) and TestRaceStress (concurrent adders, collectors, deleters,
// readers and would-be writers under -race, with invariants checked as they
// run and at the end).
//
// Lock order: model.mu only; the runner takes no other lock of its own.
package harness
