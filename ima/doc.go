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
// Status: the package is built by a later issue; see the README.
package ima
