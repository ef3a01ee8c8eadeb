// Package fusefs serves a simulated securityfs (staging.SecurityFS) as a
// real filesystem over FUSE, so that unmodified agents and tools (cat,
// echo, dd, evmctl, a Python or Rust agent, the Go collector through
// staging.Dir) run against the simulated kernel.
//
// It has no kernel counterpart of its own: it maps FUSE requests onto the
// model of security/integrity/ima/ima_fs.c in package staging, which
// decides every answer. The caller of a request is the task: the thread id
// FUSE reports (the kernel fills fuse_in_header.pid from task_pid(current),
// a thread's pid), the fsuid and fsgid FUSE reports, and the supplementary
// groups and effective capabilities (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE,
// CAP_DAC_READ_SEARCH) read from /proc/TID/status at open. A mount made by
// an unprivileged user may take that user as root (FS.MapRoot).
//
// Every file is opened with FOPEN_DIRECT_IO and every entry and attribute
// is sent with a zero timeout, so the kernel neither caches data nor
// invents offsets: each read(2) becomes one READ at the file offset, which
// the model serves as one seq_file read (a short read of at most a
// seq_file buffer, as securityfs gives). Files report size 0, as
// securityfs's do.
//
// Differences from a real securityfs, all forced by FUSE:
//
//   - RELEASE carries no task. The model's release needs the releasing task
//     (the writer bookkeeping compares it with the writer, docs/SPEC.md Q4), so the
//     file is released as the task that last closed one of its file
//     descriptors (the pid of the last FLUSH, which the kernel sends from
//     every close(2)), or as the opener when no FLUSH came. See
//     docs/FINDINGS.md, "The FUSE mount and the releasing task".
//   - FUSE moves the file offset by what write(2) accepted; securityfs
//     does not. Read hides it for read(2) after write(2) on one file
//     descriptor (A, read, D), but lseek(fd, 0, SEEK_CUR) after a write
//     reports the moved offset, and an lseek(2) or pread(2) to exactly the
//     offset the last request left the file at is taken as a plain read.
//   - lseek(2) with SEEK_SET and SEEK_CUR never reaches the server: the
//     kernel moves f_pos and the next READ carries it, so a seek that
//     seq_lseek() would fail fails at the next read instead. SEEK_END
//     answers i_size (0) where seq_lseek() answers EINVAL. SEEK_DATA and
//     SEEK_HOLE reach the model.
//   - A zero-length write(2) returns 0 without a request; securityfs would
//     call the write operation and answer EINVAL.
//   - access(2) is not checked by the model (the kernel allows it when the
//     server does not implement ACCESS); open(2) is.
//   - Swap replaces the kernel behind the mount (kexec, reboot). A file
//     opened on the old kernel stays bound to it: it is a task caught
//     between the reboot notifier and the jump, so its writes get the
//     suspended kernel's answers (EACCES for A, ESTALE for D and N) and its
//     reads get EIO, since the old kernel's list has been handed over.
package fusefs
