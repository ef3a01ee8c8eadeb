// Package measlist is the kernel's measurement queue after the staging
// series: the current and staged lists, the per-type counters, append and
// extend under the extend-list mutex, staging (A), deleting the staged
// records (D), deleting the first N records (N), suspension, and the kexec
// dump and restore.
//
// It mirrors security/integrity/ima/ima_queue.c and ima_kexec.c as changed
// by "[PATCH v7 01/12]", "03/12", "04/12", "08/12" to "11/12" of "ima:
// Exporting and deleting IMA measurement records from kernel memory"
// (Linux 7.2).
//
// Status: the package is built by a later issue; see the README.
package measlist
