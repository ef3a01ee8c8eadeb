// Package scenario runs scenario scripts: plain-text files, written in the
// shell-like form of Documentation/security/IMA-export-delete.rst ("[PATCH
// v7 12/12]", section Usage), that drive a simulated kernel through its
// securityfs files and say what each step must print or which errno it must
// fail with. A reviewer can write a new case without writing Go:
//
//	boot banks=sha1,sha256 staging=y
//	measure /usr/bin/a "content of a"
//	echo A > binary_runtime_measurements_staged
//	cat binary_runtime_measurements_staged
//	> 10 ima-ng boot_aggregate
//	> 10 ima-ng /usr/bin/a
//	echo A > binary_runtime_measurements_staged
//	! EEXIST
//	save
//	echo D > binary_runtime_measurements_staged
//	cat binary_runtime_measurements_staged
//	replay
//	> sha1: 2 records replay to PCR 10
//	> sha256: 2 records replay to PCR 10
//
// The scripts in testdata/ run under go test and with `imasim run FILE`.
// The package has no kernel counterpart; each command names the kernel
// interface or documented user step it stands for.
//
// # Lines
//
// A line is a command, an expectation, a comment (first non-blank
// character '#') or blank. A command is followed directly (no blank line
// or comment in between) by its expectations:
//
//	> TEXT     a line the command must print; ">" alone is an empty line
//	! ERRNO    the command must fail with this errno (EBUSY, ENOENT, ...)
//
// A command's output must equal its "> " lines exactly, in order (trailing
// blanks are ignored on both sides); a command with no "> " line must print
// nothing. A command without "! ERRNO" must succeed. The first difference
// stops the script with an error naming the file and line. Errno names are
// those of syscall.Errno on Linux: EPERM, ENOENT, EBADF, ENOMEM, EACCES,
// EBUSY, EEXIST, ENODEV, EINVAL, ENFILE, ERANGE, ESTALE and the rest.
//
// Words are split as a shell splits them: 'single quotes' are literal,
// "double quotes" take \" and \\, a backslash quotes the next character,
// and an unquoted # starts a comment. Pipes, ';', '&', '<' and '$' are not
// supported. File names are names in the IMA securityfs directory
// (binary_runtime_measurements_staged); a /sys/kernel/security/ima/ or
// /sys/kernel/security/integrity/ima/ prefix is accepted and dropped.
//
// # Commands
//
// The machine:
//
//	boot [KEY=VALUE ...]     cold-boot a new machine: a software TPM and a kernel
//	reboot                   reboot: TPM reset, new kernel, saved log cleared
//	kexec [-l | -e]          kexec -l loads (sizes the segment, kexec_load);
//	                         kexec or kexec -e executes into a new kernel
//	measure PATH CONTENT [pcr=N] [uid=N] [gid=N] [mode=N] [template=NAME]
//	                         a file measurement (ima_store_measurement())
//	measure-buffer NAME DATA [pcr=N]
//	                         a buffer measurement (process_buffer_measurement())
//	violation PATH [CAUSE]   a violation, CAUSE ToMToU (default) or open_writers
//
// boot's keys, with their kernel counterparts and defaults (the kernel
// these scenarios are about, not the Kconfig defaults):
//
//	banks=sha1,sha256   the TPM's PCR banks, in order; "none": no TPM
//	hash=sha256         ima_hash=
//	template=ima-ng     ima_template= (template_fmt=FMT: ima_template_fmt=)
//	staging=y           CONFIG_IMA_STAGING
//	kexec=y             CONFIG_IMA_KEXEC
//	flush=n             the ima_flush_htable boot parameter
//	htable=y            hash table enabled (n: CONFIG_IMA_DISABLE_HTABLE=y)
//	criticaldata=n      a policy measuring critical data (kernel_version,
//	                    kexec_load, kexec_execute records)
//	pcr=10              CONFIG_IMA_MEASURE_PCR_IDX (8 to 14)
//	pagesize=4096       PAGE_SIZE (seq_file buffers, kexec segment; 16 to 65536)
//	kexec_extra_kb=0    CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB (0: half a page; at most 65536)
//	ndelete_needs_staging=n  N deletion gated by CONFIG_IMA_STAGING (docs/SPEC.md Q1;
//	                    n models the v7 code)
//	bigendian=n, canonical=n  a big-endian kernel, ima_canonical_fmt
//	locking=model       the model's safe locking; "kernel" is the v7 code's
//	                    own (measlist.Locking.KernelExact), to which
//	                    "+serialize", "+synchronize" and "+readers-hold-rcu"
//	                    add one proposed fix each
//
// The TPM starts with every PCR at its reset value and no firmware runs, so
// the boot aggregate, and with it every digest and PCR value, is the same
// at every run.
//
// Shell steps, run by the current task (root, thread 1, unless "as"):
//
//	echo [-n] [-e] WORD... > FILE   open O_WRONLY|O_CREAT|O_TRUNC, one write(), close
//	echo ... >> FILE                the same with O_APPEND
//	printf FORMAT [ARG...] > FILE   \n \t \\ \0 \NNN \xHH escapes; %s %b %d %%
//	cat FILE...                     open O_RDONLY, read to EOF, close
//	ls [-l]                         the directory
//
// Without a redirection, echo and printf print to the output. cat prints
// ascii_* and counter files as they read; a binary_* file prints one line
// per record, "PCR TEMPLATE NAME", with " (violation)" after a record whose
// template digest is all zeros, and a last line "(N bytes that are not a
// whole record: REASON)" if the data ends inside one (after a seek, say).
//
// File descriptors, for transactions and the open/release mediation
// (fds are shared by all tasks, as after a fork; each stays bound to the
// kernel it was opened on, so that after kexec it reaches the old kernel,
// which answers as a kernel going down does):
//
//	open FD FILE r|w|rw   open(2) with O_RDONLY, O_WRONLY or O_RDWR
//	write FD TEXT         one write(2) of TEXT, with printf's escapes; prints
//	                      what it returns (the length, on success)
//	read FD               read(2) to EOF from the offset, printed like cat
//	read FD N             one read(2) of at most N bytes; prints the count
//	seek FD OFFSET        lseek(2) with SEEK_SET
//	close FD              close(2) in the opener's context
//
// Tasks and kernels:
//
//	as TASK COMMAND      run COMMAND as TASK: TID[:OPT,...] with OPT one of
//	                     uid=N (a non-zero uid has no capabilities, and
//	                     its gid is the uid unless gid= says), gid=N,
//	                     groups=G+G..., nocap, cap=sys_admin+dac_override+
//	                     dac_read_search. "as 7 close 3" releases fd 3 in
//	                     task 7's context (docs/SPEC.md Q4); read, write and seek
//	                     accept "as", but the kernel does not look at the
//	                     task there (docs/SPEC.md Q5).
//	old COMMAND          run COMMAND on the kernel before the last kexec or
//	                     reboot: measurement is suspended there
//	at POINT COMMAND     run COMMAND once, as another thread sharing the
//	                     fds, when the next command reaches the preemption
//	                     point POINT: 'N: walked' (after N's lockless walk),
//	                     'N: release', 'D: release' (before freeing),
//	                     'read current: show', 'read staged: show' (between
//	                     a reader's fetch of a record and its show()). The
//	                     next command waits until COMMAND returns or has to
//	                     wait for it (a mutex, a grace period). COMMAND's
//	                     output and errno become lines of the next
//	                     command's output starting "[POINT] "; "[POINT] not
//	                     reached" if the point never came.
//
// With locking=kernel, what the C would corrupt or read after freeing is
// not done but printed after the command, as "fault: KIND: OP (after BY)"
// (measlist.Fault), and the command itself then prints nothing more.
//
// Checks (no kernel counterpart):
//
//	pcr [N [BANK]]   PCR N (default CONFIG_IMA_MEASURE_PCR_IDX) of each bank
//	counters         BINARY, BINARY_STAGED, BINARY_FULL and hash-table size
//	save [N]         user space saves what it staged: read every bank's
//	                 binary_runtime_measurements_<bank>_staged (or, with N,
//	                 the first N records of binary_runtime_measurements_<bank>)
//	                 and append it to the saved log
//	fail-alloc       the kernel's next hash-table allocation fails (the
//	                 kcalloc() of a flushing D: docs/SPEC.md Q3)
//	discard          drop what the last save appended (after D fails with
//	                 ESTALE, the documentation's Kexec section)
//	replay           replay saved ++ staged ++ current, per bank, against the
//	                 TPM: "BANK: N records replay to PCR 10", or
//	                 "BANK: does not replay: REASON"
//
// The user-space collector (staging/collector), a daemon running as root
// thread 100 with its store in a temporary directory:
//
//	collect [prompt | n]  one collection cycle; prints "read R saved S" and
//	                      its note; fails with ESTALE, EACCES or EBUSY when
//	                      the kernel refuses. After a kexec or reboot the
//	                      daemon follows the new kernel. Once it has run,
//	                      replay checks the log it serves (do not mix with save).
//
// # Running
//
// Parse reads a script (syntax errors name the file and line); Run runs it
// against a fresh machine and writes a transcript, which is the script with
// what each command actually printed in place of its expectations; Update
// gives the same text for every command, so that `imasim run -update`
// can fill in the expectations of a new script for a reviewer to check
// line by line against the specification.
package scenario
