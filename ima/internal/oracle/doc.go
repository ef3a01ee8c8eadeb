// Package oracle runs the same scripts on the real kernel and on the
// model, so that a test can diff what each printed.
//
// The real kernel is Debian's linux-source-6.12 with the v7 staging series
// ("ima: Exporting and deleting IMA measurement records from kernel
// memory", Message-IDs
// 20260605172236.2042045-2..13-roberto.sassu@huaweicloud.com on
// linux-integrity) applied, built by scripts/kernel/build.sh and booted
// under QEMU with swtpm as its TPM. Its /init is the static program in
// guestinit, which runs every script it finds against
// /sys/kernel/security/ima through staging.Dir (a Real machine) and prints
// the transcript on the second serial port. The test in this package boots
// it, runs the same scripts on ima.Kernel (a Model machine) and compares
// the two transcripts.
//
// A script is a subset of the ima/scenario language (the shell steps, fds,
// tasks, save and replay; see Parse), without expectations: the two
// transcripts are each other's expectations. What the real kernel cannot
// be told to do from user space is done the way user space makes the
// kernel do it: "measure PATH CONTENT" writes a file owned by uid 1234 and
// reads it, under the policy rule "measure func=FILE_CHECK mask=MAY_READ
// fowner=1234" that the guest loads first; "violation PATH CONTENT" reads
// such a file while it is open for write (an open_writers violation, then
// the measurement).
//
// Only the boot aggregate legitimately differs (it hashes PCRs 0-9, which
// the firmware extended on the real machine and nobody on the model's
// software TPM): each side checks its own boot aggregate against its own
// PCRs with the model's formula, and Normalize replaces its digests by
// placeholders before the diff. PCR 10 itself is never printed, only
// whether the list read back replays to it.
//
// The package has no kernel counterpart.
package oracle
