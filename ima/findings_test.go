package ima

import (
	"bytes"
	"os"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/stretchr/testify/require"
)

// The tests of this file show the open questions of docs/SPEC.md §7 and the
// findings of docs/FINDINGS.md that the model decides, as the v7 code does.

// hashKey returns the key a record has in the hash table: its template
// digest in the ima_hash slot, and its PCR.
func hashKey(k *Kernel, e *template.Entry) ([]byte, uint32) {
	return e.Digests[k.Layout().HashIndex()].Value, e.PCR
}

// TestFindingQ2FlushForgetsCurrentDigests shows docs/SPEC.md Q2: with
// ima_flush_htable, D replaces the whole hash table, so it also forgets
// the digests of records appended to the current list between A and D. A
// second measurement of such a record is then appended to the same current
// list: a duplicate the documentation says cannot happen there. Without
// the flush it is refused with EEXIST.
func TestFindingQ2FlushForgetsCurrentDigests(t *testing.T) {
	for _, flush := range []bool{false, true} {
		k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), HashAlgo: "sha256", Staging: true, FlushHtable: flush})
		measure(t, k, "old", 3)
		require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
		between := file("between", 0)
		require.NoError(t, k.Measure(between)) // in C, and in the hash table
		e := k.Queue().Entries(measlist.Current)[0]
		d, p := hashKey(k, e)
		require.True(t, k.Queue().InHtable(d, p))
		require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"))

		err := k.Measure(between)
		if !flush {
			require.ErrorIs(t, err, syscall.EEXIST)
			require.True(t, k.Queue().InHtable(d, p))
			require.Equal(t, "1\n", string(read(t, k, staging.RuntimeMeasurementsCount)))
			continue
		}
		require.NoError(t, err, "the flush forgot a digest of the current list")
		require.Equal(t, "2\n", string(read(t, k, staging.RuntimeMeasurementsCount)))
		cur := decode(t, read(t, k, staging.BinaryRuntimeMeasurements), 20)
		require.Len(t, cur, 2)
		require.Equal(t, raw(t, cur[0]), raw(t, cur[1]), "the same record twice in one current list")
		// Records appended after D are deduplicated again.
		require.ErrorIs(t, k.Measure(between), syscall.EEXIST)
	}
}

// TestFindingQ6FullCountsRestoredRecords shows docs/SPEC.md Q6: ima.h says
// BINARY_FULL is "lost after kexec", but restored records go through
// ima_add_digest_entry(), which increments it; the new kernel's FULL starts
// at the number of carried records, and its kexec_load record reports it.
func TestFindingQ6FullCountsRestoredRecords(t *testing.T) {
	k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), Staging: true, Kexec: true, CriticalData: true})
	measure(t, k, "q6", 8)
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"))
	measure(t, k, "q6b", 2)
	k2, err := k.Kexec() // loads first: kexec_load and kexec_execute are carried
	require.NoError(t, err)
	res, rerr := k2.Restored()
	require.NoError(t, rerr)
	require.Equal(t, 2+2, res.Restored)
	require.Equal(t, int64(res.Restored+2), k2.Queue().NumRecords(measlist.BinaryFull))
	require.Equal(t, int64(res.Restored+2), k2.Queue().NumRecords(measlist.Binary))
	_, err = k2.KexecLoad()
	require.NoError(t, err)
	es := k2.Queue().Entries(measlist.Current)
	require.Contains(t, string(field(es[len(es)-1], template.FieldBuf)), "ima_runtime_measurements_count=6;")
}

// TestFindingRestoredRecordsLeakOnDelete shows finding (a): records
// restored by kexec are never inserted in the hash table, yet D and N
// without a flush free only their template data, keeping the queue entry,
// the template entry and its digests "referenced by ima_htable". Nothing
// references them: in the kernel they leak. The model shows the path
// taken: the template data is gone and the hash table has no key for them,
// while a live record deleted the same way stays in the hash table.
func TestFindingRestoredRecordsLeakOnDelete(t *testing.T) {
	k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), HashAlgo: "sha256", Staging: true, Kexec: true})
	measure(t, k, "carried", 4)
	k2, err := k.Kexec()
	require.NoError(t, err)
	measure(t, k2, "live", 2)
	es := k2.Queue().Entries(measlist.Current)
	require.Len(t, es, 5+1+2) // 5 carried, boot_aggregate, 2 live
	// The carried boot_aggregate has the key of the new one (same PCRs
	// 0-9, not reset by kexec), so it is found through the new one.
	bd, bp := hashKey(k2, es[5])
	inH := func(i int, e *template.Entry) bool {
		d, p := hashKey(k2, e)
		return i >= 5 || (bytes.Equal(d, bd) && p == bp)
	}
	for i, e := range es {
		d, p := hashKey(k2, e)
		require.Equal(t, inH(i, e), k2.Queue().InHtable(d, p), "record %d: only records measured by this kernel are in its hash table", i)
	}
	// Delete the carried records and the new boot_aggregate with N.
	require.NoError(t, write(k2, staging.BinaryRuntimeMeasurements, "6\n"))
	for i, e := range es[:6] {
		for _, f := range e.Fields {
			require.Nil(t, f, "record %d: template data freed", i)
		}
		require.NotEmpty(t, e.Digests, "record %d: digests kept, as for a hash-table entry", i)
		d, p := hashKey(k2, e)
		require.Equal(t, inH(i, e), k2.Queue().InHtable(d, p), "record %d: kept for the hash table, but only the live one is in it", i)
	}
	// Not being in the hash table, a carried record's measurement can even
	// be appended again.
	require.NoError(t, k2.Measure(file("carried", 0)))

	// Same with D: the staged carried records take the same path.
	k3, err := k2.Kexec()
	require.NoError(t, err)
	require.NoError(t, write(k3, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	staged := k3.Queue().Entries(measlist.Staged)
	stagedNames := names(staged)
	require.Equal(t, []string{"/usr/bin/live-0", "/usr/bin/live-1", "/usr/bin/carried-0", template.BootAggregateName}, stagedNames)
	require.NoError(t, write(k3, staging.BinaryRuntimeMeasurementsStaged, "D\n"))
	for i, e := range staged {
		require.Nil(t, e.Fields[0], "template data freed")
		d, p := hashKey(k3, e)
		require.Equal(t, i == 3, k3.Queue().InHtable(d, p), "%s", stagedNames[i])
	}
}

// TestFindingRestoreStopsSilently shows finding (b): when a carried
// record's template name is neither a builtin nor a valid format,
// restore_template_fmt() returns NULL and ima_restore_measurement_list()
// breaks out of its loop with the return value of the previous record, 0.
// The new kernel keeps the records before it, drops it and every later
// one, and logs nothing as an error.
func TestFindingRestoreStopsSilently(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	cfg := Config{TPM: tpm, Staging: true, Kexec: true}
	k := mustNew(t, cfg)
	measure(t, k, "r", 5)
	seg, err := k.KexecLoad()
	require.NoError(t, err)
	k.Queue().Suspend()
	dump, err := k.Queue().DumpKexec(seg)
	require.NoError(t, err)
	// Rename the template of the fourth record (boot_aggregate, r-0, r-1,
	// r-2, ...): "ima-ng" becomes "ima-nX", same length.
	at := 0
	for i := 0; i < 4; i++ {
		at += bytes.Index(dump[at:], []byte("ima-ng")) + 1
	}
	at--
	patched := bytes.Clone(dump)
	copy(patched[at:], "ima-nX")

	k2, err := boot(cfg, patched)
	require.NoError(t, err)
	res, rerr := k2.Restored()
	require.NoError(t, rerr, "no error is returned")
	require.Equal(t, 3, res.Restored)
	require.ErrorIs(t, res.Stopped, template.ErrUnknownTemplate)
	list := decode(t, read(t, k2, staging.BinaryRuntimeMeasurements), 20)
	require.Equal(t, []string{template.BootAggregateName, "/usr/bin/r-0", "/usr/bin/r-1", template.BootAggregateName}, names(list))
	// The whole dump restores when the name is intact.
	k3, err := boot(cfg, dump)
	require.NoError(t, err)
	res, rerr = k3.Restored()
	require.NoError(t, rerr)
	require.Nil(t, res.Stopped)
	require.Equal(t, 6, res.Restored)
}

type fileOpen struct {
	name string
	flag int
}

// exactWriter boots a kernel-exact kernel with three measurements and opens
// the files named, with their flags, as one writer task (the first open
// takes the writer lock, the others are the same task's extra opens).
func exactWriter(t *testing.T, opens ...fileOpen) (*Kernel, []staging.File) {
	t.Helper()
	k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), HashAlgo: "sha256", Staging: true,
		Locking: measlist.Locking{KernelExact: true}})
	measure(t, k, "f", 3)
	writer := k.FS(staging.Root(7))
	var files []staging.File
	for _, o := range opens {
		f, err := writer.OpenFile(o.name, o.flag)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		files = append(files, f)
	}
	return k, files
}

// TestFindingQ5ThreadsOfTheWriter shows docs/SPEC.md Q5 through the files,
// in kernel-exact mode: the one-writer rule of ima_fs.c is per task, so two
// threads of the writer process using its descriptors are not excluded.
// Thread 1 writes "2\n" (N) to the original file; ima_queue_delete_partial()
// walks to the second record without the mutex; thread 2 then writes "A\n"
// to the _staged file the same task opened; thread 1's __list_cut_position()
// then cuts at a record that is on the staged list. The model records the
// corruption instead of doing it; with the request mutex (the default, and
// the fix proposed in docs/FINDINGS.md) A waits for N.
func TestFindingQ5ThreadsOfTheWriter(t *testing.T) {
	k, files := exactWriter(t, fileOpen{staging.BinaryRuntimeMeasurements, os.O_WRONLY}, fileOpen{staging.BinaryRuntimeMeasurementsStaged, os.O_WRONLY})
	orig, stagedFile := files[0], files[1]

	var aErr error
	k.Queue().SetHooks(&measlist.Hooks{AfterPartialWalk: func() {
		_, aErr = stagedFile.Write([]byte("A\n")) // thread 2, between N's walk and its cut
	}})
	_, nErr := orig.Write([]byte("2\n"))
	require.NoError(t, aErr, "A succeeds: nothing orders it against N")
	require.ErrorIs(t, nErr, measlist.ErrFault)
	faults := k.Queue().Faults()
	require.Len(t, faults, 1)
	require.Equal(t, measlist.CutOffList, faults[0].Kind)
	require.Equal(t, "A", faults[0].By)
}

// TestFindingDeleteWhileWriterThreadReads shows, in kernel-exact mode, a
// thread of the writer reading the _staged file through the writer's
// O_RDWR descriptor while another thread writes "D\n" to another of the
// writer's descriptors: D frees the records
// without a grace period (ima_queue_delete()), and the reader, which
// fetched a record inside rcu_read_lock() but shows it after
// rcu_read_unlock() (_ima_measurements_next(), ima_measurements_show()),
// reads freed memory.
func TestFindingDeleteWhileWriterThreadReads(t *testing.T) {
	k, files := exactWriter(t, fileOpen{staging.BinaryRuntimeMeasurementsStaged, os.O_RDWR}, fileOpen{staging.ASCIIRuntimeMeasurementsStaged, os.O_WRONLY})
	rw, other := files[0], files[1]
	_, err := rw.Write([]byte("A\n"))
	require.NoError(t, err)

	deleted := false
	k.Queue().SetHooks(&measlist.Hooks{Yield: func(point string) {
		if point == "read staged: show" && !deleted {
			deleted = true
			_, err := other.Write([]byte("D\n")) // thread 2
			require.NoError(t, err)
		}
	}})
	buf := make([]byte, 1<<16)
	_, _ = rw.Read(buf) // thread 1
	require.True(t, deleted)
	faults := k.Queue().Faults()
	require.NotEmpty(t, faults)
	require.Equal(t, measlist.UseAfterFree, faults[0].Kind)
	require.Equal(t, "D", faults[0].By)
}
