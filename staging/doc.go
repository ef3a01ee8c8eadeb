// Package staging is the securityfs face of the measurement list after the
// staging series: the list files (per bank, binary and ASCII, original and
// _staged), the counter files, the open/release mediation (many readers or
// one writer task), seq_file-style reads, and the write grammar of A, D
// and N, with the kernel's errnos wrapped in *fs.PathError.
//
// It mirrors security/integrity/ima/ima_fs.c as changed by "[PATCH v7
// 05/12]", "06/12", "07/12", "09/12" and "11/12" of "ima: Exporting and
// deleting IMA measurement records from kernel memory" (Linux 7.2).
//
// Status: the package is built by a later issue; see the README.
package staging
