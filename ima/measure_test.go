package ima

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestMeasureResults checks what ima_add_template_entry() answers: EEXIST
// for a template digest already in the hash table for that PCR (nothing
// added, nothing extended), success for the same content under another
// name or PCR, ENODEV once measurement is suspended.
func TestMeasureResults(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Staging: true})
	f := file("dup", 0)
	require.NoError(t, k.Measure(f))
	before := pcr(t, tpm, 10, tpmext.SHA256)
	require.ErrorIs(t, k.Measure(f), syscall.EEXIST)
	require.Equal(t, before, pcr(t, tpm, 10, tpmext.SHA256), "a duplicate extends nothing")
	require.Equal(t, "2\n", string(read(t, k, staging.RuntimeMeasurementsCount)))

	other := f
	other.Path = "/usr/bin/elsewhere" // same content, another name: another template digest
	require.NoError(t, k.Measure(other))
	otherPCR := f
	otherPCR.PCR = PCR(11) // same template digest, another PCR
	require.NoError(t, k.Measure(otherPCR))
	require.ErrorIs(t, k.Measure(otherPCR), syscall.EEXIST)

	require.NoError(t, k.MeasureBuffer("blob", []byte("data"), BufferOptions{}))
	require.ErrorIs(t, k.MeasureBuffer("blob", []byte("data"), BufferOptions{}), syscall.EEXIST)

	// Staging and deleting without a flush keep the digests: still EEXIST.
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"))
	require.ErrorIs(t, k.Measure(f), syscall.EEXIST)

	k2, err := k.Reboot()
	require.NoError(t, err)
	require.ErrorIs(t, k.Measure(file("late", 0)), syscall.ENODEV)
	require.ErrorIs(t, k.MeasureBuffer("late", []byte("x"), BufferOptions{}), syscall.ENODEV)
	require.NoError(t, k2.Measure(f), "a new kernel has a new hash table")
}

// TestMeasureHtableDisabled checks CONFIG_IMA_DISABLE_HTABLE: no duplicate
// detection, and ima_flush_htable ignored with the kernel's warning.
func TestMeasureHtableDisabled(t *testing.T) {
	k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), HtableDisabled: true, FlushHtable: true, Staging: true})
	require.NoError(t, k.Measure(file("x", 0)))
	require.NoError(t, k.Measure(file("x", 0)))
	require.Equal(t, []string{"Hash table not enabled, ignoring request to flush"}, k.Queue().Warnings())
	require.False(t, k.Queue().FlushHtable())
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurements, "1\n"), "N works: the flush flag stayed false")
}

// TestViolation checks ima_add_violation(): the violations counter moves
// before the record is stored; the record has all-zero digests in every
// slot and every list file; the TPM is extended with 0xFF in every bank;
// violations are never refused as duplicates.
func TestViolation(t *testing.T) {
	tpm := newSoftware(t, tpmext.SHA1, tpmext.SHA256, tpmext.SHA3_256)
	k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Staging: true})
	before := map[tpmext.Algorithm][]byte{}
	for _, alg := range tpm.Banks() {
		before[alg] = pcr(t, tpm, 10, alg)
	}
	require.NoError(t, k.Violation("/var/log/app.log", &template.File{Content: []byte("x")}, CauseToMToU))
	require.Equal(t, "1\n", string(read(t, k, staging.Violations)))
	require.Equal(t, "2\n", string(read(t, k, staging.RuntimeMeasurementsCount)))
	v := k.Queue().Entries(measlist.Current)[1]
	require.True(t, v.Violation)
	require.Equal(t, "/var/log/app.log", eventName(v))
	for i, d := range v.Digests {
		require.Equal(t, make([]byte, len(d.Value)), d.Value, "slot %d", i)
	}
	for _, alg := range tpm.Banks() {
		ff := bytes.Repeat([]byte{0xff}, alg.Size())
		if alg == tpmext.SHA3_256 { // unmapped bank: 0xFF over 20 bytes, then zeros
			ff = append(bytes.Repeat([]byte{0xff}, 20), make([]byte, 12)...)
		}
		require.Equal(t, tpmext.ExtendValue(alg, before[alg], ff), pcr(t, tpm, 10, alg), "bank %v", alg)
	}
	for _, lf := range k.Layout().ListFiles() {
		size := k.Layout().Slot(lf.Slot).Size
		es := decode(t, read(t, k, "binary_runtime_measurements_"+lf.Suffix), size)
		require.Equal(t, make([]byte, size), es[1].Digests[0].Value, lf.Suffix)
	}
	// The same violation again is recorded again.
	require.NoError(t, k.Violation("/var/log/app.log", &template.File{Content: []byte("x")}, CauseToMToU))
	require.Equal(t, "2\n", string(read(t, k, staging.Violations)))
	require.Equal(t, "3\n", string(read(t, k, staging.RuntimeMeasurementsCount)))
	require.Error(t, k.Violation("/x", nil, ""), "a violation needs a cause")

	// Staging and deletion never change the violations counter.
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "A\n"))
	require.NoError(t, write(k, staging.BinaryRuntimeMeasurementsStaged, "D\n"))
	require.Equal(t, "2\n", string(read(t, k, staging.Violations)))

	// The counter moves first: after suspension the record fails with
	// ENODEV but the violation is counted.
	_, err := k.Reboot()
	require.NoError(t, err)
	require.ErrorIs(t, k.Violation("/var/log/late.log", nil, CauseOpenWriters), syscall.ENODEV)
	require.Equal(t, "3\n", string(read(t, k, staging.Violations)))
	require.Equal(t, "0\n", string(read(t, k, staging.RuntimeMeasurementsCount)))
}

// TestMeasureConcurrently measures from many goroutines while others read
// the files: every measurement lands once, and the list replays to the TPM.
func TestMeasureConcurrently(t *testing.T) {
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256"})
	const workers, each = 4, 25
	done := make(chan struct{})
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				if err := k.Measure(file("w"+string(rune('a'+w)), i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	go func() {
		defer close(done)
		for range 20 {
			_, _ = staging.ReadFile(k.FS(staging.Root(99)), "ascii_runtime_measurements")
		}
	}()
	for range workers {
		require.NoError(t, <-errs)
	}
	<-done
	require.Len(t, k.Queue().Entries(measlist.Current), 1+workers*each)
	requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte { return read(t, k, bankFile(t, k, alg, false)) })
}
