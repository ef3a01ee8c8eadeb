package ima

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestReboot checks a plain reboot: the old kernel is suspended, the TPM is
// reset, the firmware runs again, and the new kernel starts a fresh list
// whose boot_aggregate equals the first one (same firmware).
func TestReboot(t *testing.T) {
	fw := &firmware{}
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, CriticalData: true, Firmware: fw.run})
	pcr0 := pcr(t, tpm, 0, tpmext.SHA256)
	first := read(t, k, "binary_runtime_measurements_sha256")
	measure(t, k, "r", 5)
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	measure(t, k, "s", 2)

	k2, err := k.Reboot()
	require.NoError(t, err)
	require.Equal(t, 2, fw.runs, "the firmware ran again")
	require.Equal(t, pcr0, pcr(t, tpm, 0, tpmext.SHA256), "reset, then the same firmware")
	list := read(t, k2, "binary_runtime_measurements_sha256")
	require.Equal(t, first, list, "fresh list: boot_aggregate and kernel_version, as at the first boot")
	require.Equal(t, "2\n", string(read(t, k2, staging.RuntimeMeasurementsCount)))
	require.Empty(t, read(t, k2, staging.BinaryRuntimeMeasurementsStaged))
	requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte { return read(t, k2, bankFile(t, k2, alg, false)) })
	res, rerr := k2.Restored()
	require.Nil(t, res)
	require.NoError(t, rerr)

	// The old kernel answers as a kernel going down: no kexec_execute
	// record on a plain reboot, and every change refused.
	for _, e := range k.Queue().Entries(measlist.Current) {
		require.NotEqual(t, "kexec_execute", eventName(e))
	}
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"), syscall.ESTALE, "write")
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurements, "1\n"), syscall.ESTALE, "write")
	require.ErrorIs(t, k.Measure(file("late", 0)), syscall.ENODEV)
	_, err = k.Reboot()
	require.ErrorIs(t, err, ErrGone)
	_, err = k.Kexec()
	require.ErrorIs(t, err, ErrGone)
	_, err = k.KexecLoad()
	require.ErrorIs(t, err, ErrGone)
}

// kexecEventText is the ima_kexec critical data of ima_measure_kexec_event().
func kexecEventText(seg uint64, size, count int) string {
	return fmt.Sprintf("kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;", seg, size, count)
}

// TestKexecCriticalData checks the kexec_load and kexec_execute records:
// the segment size, and the BINARY_FULL figures (every record since IMA
// init, staged and deleted ones included; the size plus the 24-byte
// header), computed here from the lists read through the files.
func TestKexecCriticalData(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, CriticalData: true})
	measure(t, k, "a", 6)
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	saved := read(t, k, staging.BinaryRuntimeMeasurementsStaged)
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"))
	measure(t, k, "b", 3)
	cur := read(t, k, staging.BinaryRuntimeMeasurements)
	history := append(append([]byte(nil), saved...), cur...)
	count := len(decode(t, history, 20))
	require.Equal(t, 11, count)

	seg, err := k.KexecLoad()
	require.NoError(t, err)
	// BINARY + header, BINARY_STAGED (empty) + header, half a page extra,
	// rounded up to a page.
	want := (uint64(len(cur)+24+0+24+2048) + 4095) / 4096 * 4096
	require.Equal(t, want, seg)
	es := k.Queue().Entries(measlist.Current)
	load := es[len(es)-1]
	require.Equal(t, "kexec_load", eventName(load))
	require.Equal(t, "ima-buf", load.Desc.Name())
	require.Equal(t, kexecEventText(seg, len(history)+24, count), string(field(load, template.FieldBuf)))
	// ima_runtime_measurements_count is FULL, not BINARY (3 + boot records).
	require.NotEqual(t, k.Queue().NumRecords(measlist.Binary), k.Queue().NumRecords(measlist.BinaryFull))

	loadBytes, err := load.AppendBinary(nil, k.Layout().SHA1Index(), k.Layout().Order())
	require.NoError(t, err)
	k2, err := k.Kexec()
	require.NoError(t, err)
	es = k.Queue().Entries(measlist.Current)
	exec := es[len(es)-1]
	require.Equal(t, "kexec_execute", eventName(exec))
	require.Equal(t, kexecEventText(seg, len(history)+len(loadBytes)+24, count+1), string(field(exec, template.FieldBuf)))

	// The new kernel: FULL restarts from the restored records (Q6).
	restored := len(k2.Queue().Entries(measlist.Current)) - 2
	require.Equal(t, int64(restored+2), k2.Queue().NumRecords(measlist.BinaryFull))
}

// TestKexecBetweenAAndD is the scenario of the issue: records are staged
// and read, then the machine kexecs before D. On the old kernel D gives
// ESTALE (the records are carried, do not save them twice), A EEXIST or
// EACCES, N ESTALE, measurements ENODEV. The new kernel's list starts with
// the staged records, then the old current ones (kexec_load and
// kexec_execute included), then its own boot_aggregate; and the whole
// history replays to PCR 10 of every bank.
func TestKexecBetweenAAndD(t *testing.T) {
	tpm := newSoftware(t, tpmext.SHA1, tpmext.SHA256, tpmext.SHA384)
	k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, CriticalData: true})
	measure(t, k, "before", 10)
	require.NoError(t, k.Violation("/tmp/v", nil, CauseToMToU))
	fd, err := k.SecurityFS().Open(staging.Root(7), staging.BinaryRuntimeMeasurementsStaged, os.O_RDWR)
	require.NoError(t, err)
	_, err = fd.Write([]byte("A\n"))
	require.NoError(t, err)
	staged, err := io.ReadAll(fd)
	require.NoError(t, err)
	require.Len(t, decode(t, staged, 20), 13)
	measure(t, k, "after", 4)

	_, err = k.KexecLoad()
	require.NoError(t, err)
	k2, err := k.Kexec()
	require.NoError(t, err)

	// The old kernel, through the writer's own descriptor.
	_, err = fd.Write([]byte("D\n"))
	requireErrno(t, err, syscall.ESTALE, "write")
	_, err = fd.Write([]byte("A\n"))
	requireErrno(t, err, syscall.EEXIST, "write") // checked before suspension
	require.NoError(t, fd.Close())
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurements, "2\n"), syscall.ESTALE, "write")
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurements, "99\n"), syscall.ENOENT, "write") // the walk comes first
	require.ErrorIs(t, k.Measure(file("late", 0)), syscall.ENODEV)
	require.ErrorIs(t, k.Violation("/tmp/late", nil, CauseToMToU), syscall.ENODEV)
	oldCur := read(t, k, staging.BinaryRuntimeMeasurements)
	oldNames := names(decode(t, oldCur, 20))
	require.Equal(t, []string{"kexec_load", "kexec_execute"}, oldNames[len(oldNames)-2:])

	// The new kernel.
	res, rerr := k2.Restored()
	require.NoError(t, rerr)
	require.Nil(t, res.Stopped)
	require.Equal(t, 13+6, res.Restored)
	list := read(t, k2, staging.BinaryRuntimeMeasurements)
	carried := append(append([]byte(nil), staged...), oldCur...)
	require.True(t, bytes.HasPrefix(list, carried), "staged records first, then the old current list")
	require.Equal(t, []string{template.BootAggregateName, "kernel_version"}, names(decode(t, list[len(carried):], 20)))
	require.Empty(t, read(t, k2, staging.BinaryRuntimeMeasurementsStaged), "staging was aborted")
	require.Equal(t, fmt.Sprintf("%d\n", 13+6+2), string(read(t, k2, staging.RuntimeMeasurementsCount)))
	require.Equal(t, "0\n", string(read(t, k2, staging.Violations)), "not carried")
	// Every bank's column was recomputed in the new kernel, and the one
	// list replays the TPM, which kexec did not reset.
	requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte { return read(t, k2, bankFile(t, k2, alg, false)) })
	// The violation came back as a violation.
	require.True(t, k2.Queue().Entries(measlist.Current)[12].Violation)

	// Staging works again in the new kernel.
	require.NoError(t, write(k2, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	require.Equal(t, list, read(t, k2, staging.BinaryRuntimeMeasurementsStaged))
}

// TestKexecSuspendedWithoutStaged checks the other errors of a suspended
// kernel: A is EACCES when nothing is staged, D ENOENT.
func TestKexecSuspendedWithoutStaged(t *testing.T) {
	k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), Staging: true, Kexec: true})
	measure(t, k, "x", 3)
	_, err := k.Kexec()
	require.NoError(t, err)
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"), syscall.EACCES, "write")
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"), syscall.ENOENT, "write")
	requireErrno(t, write(k, staging.BinaryRuntimeMeasurements, "1\n"), syscall.ESTALE, "write")
	require.ErrorIs(t, k.MeasureBuffer("late", []byte("x"), BufferOptions{}), syscall.ENODEV)
}

// TestKexecNWhileStaged checks §4.2: N while records are staged removes
// only from the current list; a kexec then carries S ++ the tail of C,
// with a gap that only user space's copy of the N records fills.
func TestKexecNWhileStaged(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, Staging: true, Kexec: true})
	measure(t, k, "s", 3)
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	measure(t, k, "c", 5)
	sBank := map[tpmext.Algorithm][]byte{}
	nBank := map[tpmext.Algorithm][]byte{}
	for _, alg := range tpm.Banks() {
		sBank[alg] = read(t, k, bankFile(t, k, alg, true))
		cur := read(t, k, bankFile(t, k, alg, false))
		first2 := decode(t, cur, alg.Size())[:2]
		var b []byte
		for _, e := range first2 {
			b = append(b, raw(t, e)...)
		}
		nBank[alg] = b
	}
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurements, "2\n"))
	k2, err := k.Kexec()
	require.NoError(t, err)
	for _, alg := range tpm.Banks() {
		list := read(t, k2, bankFile(t, k2, alg, false))
		require.True(t, bytes.HasPrefix(list, sBank[alg]))
		got := pcr(t, tpm, 10, alg)
		require.NotEqual(t, replay(t, list, alg, 10), got, "the carried list has a gap")
		whole := append(append(append([]byte(nil), sBank[alg]...), nBank[alg]...), list[len(sBank[alg]):]...)
		require.Equal(t, replay(t, whole, alg, 10), got, "S ++ the N records ++ the rest")
	}
}

// TestKexecWithoutConfig checks CONFIG_IMA_KEXEC=n: KexecLoad refuses, no
// kexec critical data, nothing carried; the new kernel's list alone no
// longer replays PCR 10, which was not reset.
func TestKexecWithoutConfig(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, Staging: true, CriticalData: true})
	measure(t, k, "x", 4)
	_, err := k.KexecLoad()
	require.ErrorIs(t, err, measlist.ErrKexecTooLarge)
	k2, err := k.Kexec()
	require.NoError(t, err)
	for _, e := range k.Queue().Entries(measlist.Current) {
		require.NotContains(t, []string{"kexec_load", "kexec_execute"}, eventName(e))
	}
	require.ErrorIs(t, k.Measure(file("late", 0)), syscall.ENODEV)
	list := read(t, k2, staging.BinaryRuntimeMeasurements)
	require.Equal(t, []string{template.BootAggregateName, "kernel_version"}, names(decode(t, list, 20)))
	res, _ := k2.Restored()
	require.Nil(t, res)
	old := read(t, k, staging.BinaryRuntimeMeasurements)
	requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte {
		return append(read(t, k, bankFile(t, k, alg, false)), read(t, k2, bankFile(t, k2, alg, false))...)
	})
	require.NotEqual(t, replay(t, list, tpmext.SHA1, 10), pcr(t, tpm, 10, tpmext.SHA1))
	require.NotEmpty(t, old)
}

// TestFindingKexecDumpCutsLastRecord shows finding (d) and the segment
// limit: records added after kexec_file_load must fit in the extra memory.
// The dump writes byte by byte (ima_putc() -> seq_putc()), so the record
// that reaches the end of the segment is cut at its last byte but still
// counted in the header; the next one stops the dump. The new kernel
// restores the whole records before the cut one, logs an error, and goes on
// with its own boot_aggregate.
func TestFindingKexecDumpCutsLastRecord(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, Staging: true, Kexec: true, CriticalData: true, KexecExtraMemoryKB: 1})
	measure(t, k, "small", 2)
	seg, err := k.KexecLoad()
	require.NoError(t, err)
	require.Equal(t, uint64(4096), seg)
	// 60 records of about 100 bytes do not fit in what is left.
	for i := range 60 {
		require.NoError(t, k.Measure(file("big", i)))
	}
	k2, err := k.Kexec()
	require.NoError(t, err)

	// What the dump saw: the old staged list (empty) and current list in
	// the SHA-1 column, which the files still show.
	all := append(read(t, k, staging.BinaryRuntimeMeasurementsStaged), read(t, k, staging.BinaryRuntimeMeasurements)...)
	room := int(seg) - measlist.KexecHeaderSize
	require.Greater(t, len(all), room)
	counted, whole, end := 0, 0, 0
	for _, e := range decode(t, all, 20) {
		if end >= room {
			break // ima_dump_measurement(): count >= size, -EINVAL
		}
		counted++
		end += len(raw(t, e))
		if end <= room {
			whole++
		}
	}
	require.Greater(t, counted, whole, "this list ends with a cut record")

	dump, derr := k.Queue().DumpKexec(seg)
	require.ErrorIs(t, derr, syscall.EINVAL)
	require.Len(t, dump, int(seg), "the segment is full to its last byte")
	require.Equal(t, all[:room], dump[measlist.KexecHeaderSize:], "the cut record's first bytes are there")
	require.Equal(t, uint64(seg), leU64(dump[8:]), "buffer_size")
	require.Equal(t, uint64(counted), leU64(dump[16:]), "count includes the cut record")

	res, rerr := k2.Restored()
	require.Error(t, rerr)
	require.ErrorIs(t, rerr, syscall.EINVAL)
	require.Equal(t, whole, res.Restored)
	list := read(t, k2, staging.BinaryRuntimeMeasurements)
	wholeBytes := 0
	for _, e := range decode(t, all, 20)[:whole] {
		wholeBytes += len(raw(t, e))
	}
	require.Equal(t, all[:wholeBytes], list[:wholeBytes])
	require.Equal(t, []string{template.BootAggregateName, "kernel_version"}, names(decode(t, list[wholeBytes:], 20)))
}

func leU64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// TestFindingQ9SegmentCountsHeaderTwice shows the harmless over-estimate
// of docs/SPEC.md Q9: the segment size adds sizeof(struct ima_kexec_hdr) for the
// current and for the staged list.
func TestFindingQ9SegmentCountsHeaderTwice(t *testing.T) {
	k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), Staging: true, Kexec: true})
	measure(t, k, "q9", 4)
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	measure(t, k, "q9b", 3)
	cur := len(read(t, k, staging.BinaryRuntimeMeasurements))
	stg := len(read(t, k, staging.BinaryRuntimeMeasurementsStaged))
	seg, err := k.Queue().KexecSegmentSize(measlist.KexecOptions{PageSize: 1, ExtraMemoryKB: 1})
	require.NoError(t, err)
	require.Equal(t, uint64(cur+24+stg+24+1024), seg)
	// Only one header is written.
	dump, err := k.Queue().DumpKexec(seg)
	require.NoError(t, err)
	require.Len(t, dump, 24+stg+cur)
}

// TestKexecConcurrentOneSuccessor races Kexec, KexecInto and Reboot on one
// kernel: exactly one of them may bring up a successor, every other one gets
// ErrGone, and the TPM is extended by exactly one successor's boot.
func TestKexecConcurrentOneSuccessor(t *testing.T) {
	for iter := 0; iter < 200; iter++ {
		tpm := newSoftware(t, twoBanks...)
		k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, CriticalData: true})
		measure(t, k, "x", 3)
		const racers = 8
		var wg sync.WaitGroup
		successors := make(chan *Kernel, racers)
		start := make(chan struct{})
		for i := 0; i < racers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				var next *Kernel
				var err error
				if i%2 == 0 {
					next, err = k.Kexec()
				} else {
					_, _ = k.KexecLoad()
					next, err = k.KexecInto(k.Config())
				}
				if err == nil {
					successors <- next
					return
				}
				if !errors.Is(err, ErrGone) {
					t.Errorf("racer %d: %v, want success or ErrGone", i, err)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		close(successors)
		var got []*Kernel
		for s := range successors {
			got = append(got, s)
		}
		require.Len(t, got, 1, "iteration %d: successors of one kernel", iter)
		requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte { return read(t, got[0], bankFile(t, got[0], alg, false)) })
	}
}
