// Package ima is the simulated IMA subsystem as a whole: ima.New boots a
// kernel (digest slots from the TPM's banks, the hash table, the
// boot_aggregate record from PCRs 0-9, optional kernel_version critical
// data), measures files and buffers, records violations, reboots (TPM reset)
// and kexecs (TPM not reset, the list carried over with staged records
// first), and exposes the securityfs files of package staging.
//
// It mirrors, in security/integrity/ima/: ima_init.c (ima_init(),
// ima_add_boot_aggregate()), ima_main.c (process_measurement(),
// process_buffer_measurement(), ima_rdwr_violation_check()), ima_api.c
// (ima_store_template(), ima_add_violation()), as of Linux 7.2 with
// "[PATCH v7 00/12] ima: Exporting and deleting IMA measurement records from
// kernel memory" applied.
//
// Every method is safe for concurrent use; the locks are those of
// measlist and staging, and a Kernel's own mutex (kexec load state) is
// never held across a call into them except to record the ima_kexec
// critical data. After Reboot or Kexec a Kernel stays suspended: its files
// keep answering as a kernel going down does (A: EACCES, D and N: ESTALE,
// measurements: ENODEV).
//
// Differences from Linux: no policy language (a measurement is made when
// the caller asks, with the rule's pcr= and template= as arguments), no
// inode cache (re-measuring an unchanged file is the caller's choice, and
// the hash table rejects it as the kernel's would), no audit records.
package ima
