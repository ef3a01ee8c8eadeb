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
// One interface, FS (OpenFile returning a File with Read, Write, Close),
// has two implementations: the simulated SecurityFS, seen by a Task (thread
// id, uid, capabilities), and Dir, the real /sys/kernel/security/ima through
// the os package, so that user-space code runs unchanged on both.
//
// Differences from Linux are listed on each function. The securityfs policy
// file is not modelled.
//
// # Lock order
//
//	SimFile.mu          (a seq_file's m->lock: one read or seek of one file)
//	  the queue's locks (measlist: writerMutex, extendListMutex), via reads and writes
//	SecurityFS.measureMutex (ima_measure_mutex) is taken alone, inside open and release
//
// What a reader sees: what the kernel's seq_file reader sees (see
// SimFile.Read), built from measlist.Queue.WalkAt, which never shows a
// torn or released record.
package staging
