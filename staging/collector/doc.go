// Package collector is the user-space half the staging series asks for:
// drive either staging flavour through the securityfs files (simulated or
// real), persist what was staged durably, and serve the concatenated log
// since boot from any record number, as if staging never happened.
//
// It has no kernel counterpart; it implements the "Management of Staged
// Measurements" and "Remote Attestation Agent Workflow" sections of
// Documentation/security/IMA-export-delete.rst ("[PATCH v7 12/12]"), on
// the staging.FS interface, so the same code runs on the simulated
// securityfs and on /sys/kernel/security/ima.
//
// # A cycle
//
// Prompt: open binary_runtime_measurements_staged O_RDWR (retrying while
// EBUSY), write "A" (ENOENT: nothing to stage; EACCES: suspended; EEXIST:
// records already staged, taken as the batch), read to EOF, write the batch
// to the store and fsync it, write "D", record the answer, close. One
// transaction: other actors get EBUSY meanwhile.
//
// DeleteN: first save and delete (D) what another actor left staged, in a
// transaction of its own on binary_runtime_measurements_staged; then open
// binary_runtime_measurements O_RDWR, read the current list to EOF, choose N
// (everything read; or what a quote covers, Options.Quote, found by
// replaying the log since boot with ima/eventlog; or Options.Cover), write the
// first N records durably, write "N", record the answer, close. The
// collector never holds two writer descriptors at once: killed while
// holding two, with its files released at exit by another thread, it would
// leave the kernel's writer count positive for good (every later writer
// EBUSY until reboot; docs/FINDINGS.md, Q4).
//
// Answers to the deletion: success and ENOMEM (docs/SPEC.md Q3: the kernel has lost
// the records) commit the batch; ESTALE (a kexec is carrying the records)
// aborts it, and the records come back in the next kernel's list; EINVAL or
// ENOENT to N abort it; anything else leaves it pending for the next cycle.
//
// # The store
//
// A directory of append-only segments (0600) of framed entries, each with
// its length and a CRC-32C, and a manifest that records the durable end of
// the store (format version 2; see store.go). The directory must belong
// to the collector's user and not be writable by its group or others
// (Open refuses it otherwise, naming the owner or mode); it is made 0700.
// Every file in it is opened relative to it, never through a symlink.
//
// Opening takes an exclusive flock on the directory itself (there is no
// lock file to remove or replace under a running collector), so one
// collector owns a store, which closes the "two actors each delete N"
// hazard the documentation warns about as long as every deleter goes
// through the same store.
//
// A batch is written, sealed and made durable (segment fsynced, then the
// manifest moved past it) before the kernel is asked to delete it; its
// commit or abort follows the answer and is made durable the same way. A
// write or fsync that fails (a full disk) is undone: the segment is cut
// back to where it was before the batch, and the kernel is not asked to
// delete anything; the staged records wait in the kernel for the next
// cycle.
//
// Committed records are not kept in memory: INDEX, a file derived from
// the segments, gives the location of each, so serving from record N
// reads only what it returns. CHECKPOINT, also derived, says where the
// last resolved batch ends; recovery resumes there instead of reading
// every segment, so opening a store of any size costs the same (both are
// checked, and rebuilt or ignored when they do not fit the manifest and
// the segments; the manifest stays the source of truth; see
// checkpoint.go and index.go).
//
// Recovery reads up to the manifest's durable end and cuts what lies
// after it: records never sealed, or sealed but never covered by
// the manifest (the kernel was never asked to delete them), or a commit
// that was not yet durable (the batch is decided again from the kernel).
// Before it cuts records, Open checks that the kernel still holds them at
// the head of its lists (ErrTailNotInKernel otherwise, the store left as it
// is); after a reboot there is nothing to check against.
// Anything missing before the durable end (a segment cut short, removed,
// or with a bad frame; a record count that differs from the manifest's) is
// a CorruptError naming the segment, offset and record number: committed
// records never vanish silently. Recovery from the checkpoint checks the
// segment links and the last indexed record; a bad frame before the
// checkpoint is reported when it is served, or by Open with
// Options.Verify, which reads every frame. A store without a manifest (format 1) or
// of another version is refused.
//
// Answers that say the kernel kept the records (ESTALE; EINVAL and ENOENT
// to N) abort the batch at once. A sealed batch whose answer was not
// recorded (a crash between the kernel's deletion and the commit, or
// before the deletion) is decided from kernel facts, with the flavour the
// seal records:
//
//   - a prompt batch in the same kernel is the whole staged list, which only
//     D empties: the kernel kept it exactly when its staged list still holds
//     it;
//   - otherwise a kept batch is at the head of the kernel's lists, staged
//     then current (an N batch is taken while nothing is staged; a kexec
//     restores staged then current first): a head that does not start with
//     the batch means it was deleted;
//   - a head that does start with it is either the batch, kept, or copies of
//     it appended after the deletion, which only repeated records can be
//     (violations; duplicates let in by ima_flush_htable or
//     CONFIG_IMA_DISABLE_HTABLE). Options.PCRs decides it exactly: of
//     "store ++ batch ++ kernel" and "store ++ kernel", exactly one replays
//     to PCR 10 (the lists and the PCRs are read twice, 20 ms apart, and
//     used only when unchanged, so that no extend is still under way).
//     Without it, a batch holding a record that is not a violation is
//     kept (exact while the hash table keeps the digests of deleted
//     records), and a batch of violations only is ErrAmbiguous and stays
//     pending.
//
// A kexec whose dump ran out of room inside a pending batch (the new list
// starts with the batch's first records, then the new boot_aggregate) is
// reported as ErrPartlyCarried rather than guessed at. Repeated records
// can make the same pattern (a deleted batch of violations, then fewer
// copies of it, then a kexec); with Options.PCRs the replay tells them
// apart: a cut dump lost records the TPM has.
//
// Records are numbered from the cold boot: a reboot starts a new log in the
// store (Options.NewBoot = Reboot), a kexec continues it (Kexec).
//
// # Tests
//
// Crash tests stop cycles at every step (Options.Hook) and damage stores
// byte by byte. TestKillLoop runs the collector in a child process that
// reaches a simulated kernel in the test process over a unix socket, kills
// it with SIGKILL at random moments and restarts it on the same store, with
// every record a repeated violation, and on a small tmpfs filled and
// freed over and over; the store must then serve the log as if staging
// never happened. It runs 100 kills per case (40 with -short, as CI's race
// run does); the long form sets the count:
//
//	IMASIM_KILLLOOP_KILLS=1000 go test -run TestKillLoop -v ./staging/collector
//
// The full-disk tests mount a tmpfs and are skipped, with one line, where
// mounting is not permitted.
//
// # Lock order
//
// Collector.mu (one cycle or one serving request at a time), then the
// store's flock (held while open), then the kernel's files.
package collector
