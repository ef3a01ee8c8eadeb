package main

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// footprintRow is the modelled kernel memory of one record.
type footprintRow struct {
	Template string
	Banks    []tpmext.Algorithm
	Slots    int
	Fields   []int // each field's stored length
	Live     int   // in a list
	Retained int   // after D without ima_flush_htable, or after N
}

func (r footprintRow) banks() string {
	var s []string
	for _, b := range r.Banks {
		s = append(s, b.String())
	}
	return strings.Join(s, "+")
}

// rsaSig is a security.ima value of an RSA-2048 signature: struct
// signature_v2_hdr (type EVM_IMA_XATTR_DIGSIG 0x03, version 2, hash_algo
// SHA-256 (4), keyid, sig_size big-endian) and 256 bytes of signature.
func rsaSig() []byte {
	sig := []byte{0x03, 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x00}
	for i := range 256 {
		sig = append(sig, byte(i*7+1))
	}
	return sig
}

// samplePath is 46 bytes, as the path of measlist's BenchmarkMemory.
const samplePath = "/usr/lib/x86_64-linux-gnu/libexample-000001.so"

func footprints() ([]footprintRow, error) {
	bankSets := [][]tpmext.Algorithm{
		{tpmext.SHA256},
		{tpmext.SHA1, tpmext.SHA256},
		{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512},
	}
	digest := make([]byte, 32)
	binary.LittleEndian.PutUint64(digest, 1)
	var rows []footprintRow
	for _, tmpl := range []string{"ima-ng", "ima-sig"} {
		for _, banks := range bankSets {
			l, err := template.NewLayout(banks, template.HashSHA256, template.LittleEndian)
			if err != nil {
				return nil, err
			}
			f := &template.File{}
			if tmpl == "ima-sig" {
				f.IMAXattr = rsaSig()
			}
			ev, err := template.NewFileEvent(samplePath, f, template.HashSHA256, digest)
			if err != nil {
				return nil, err
			}
			e, err := l.NewEntry(template.Builtin(tmpl), 10, ev)
			if err != nil {
				return nil, err
			}
			live, ret := measlist.RecordFootprint(e, l.NumSlots())
			r := footprintRow{Template: tmpl, Banks: banks, Slots: l.NumSlots(), Live: live, Retained: ret}
			for _, fd := range e.Fields {
				r.Fields = append(r.Fields, len(fd))
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// memSample is the modelled kernel memory after a given number of
// measurements.
type memSample struct {
	Measured int
	Total    int64
}

type memRun struct {
	Name    string
	Samples []memSample
	Final   measlist.KernelMemory
}

// memoryOverTime boots a kernel (software TPM with SHA-1 and SHA-256,
// ima_hash=sha256, ima-ng) and measures n distinct files; with staging it
// writes A then D to binary_runtime_measurements_staged after every k
// measurements, as a collector would.
func memoryOverTime(n, k int, stage, flush bool) (*memRun, error) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	if err != nil {
		return nil, err
	}
	kern, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: stage, FlushHtable: flush, Kexec: true})
	if err != nil {
		return nil, err
	}
	run := &memRun{}
	fsys := kern.FS(staging.Root(1))
	step := max(1, n/2000)
	for i := 1; i <= n; i++ {
		f := ima.NewFile(fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%06d.so", i), fmt.Appendf(nil, "content %d", i))
		if err := kern.Measure(f); err != nil {
			return nil, err
		}
		if i%step == 0 || (stage && i%k == 0) {
			run.Samples = append(run.Samples, memSample{i, kern.Queue().KernelMemory().Total()})
		}
		if stage && i%k == 0 {
			for _, cmd := range []string{"A\n", "D\n"} {
				if err := staging.WriteFile(fsys, staging.BinaryRuntimeMeasurements+"_staged", []byte(cmd)); err != nil {
					return nil, fmt.Errorf("writing %q after %d measurements: %w", cmd, i, err)
				}
			}
			run.Samples = append(run.Samples, memSample{i, kern.Queue().KernelMemory().Total()})
		}
	}
	run.Final = kern.Queue().KernelMemory()
	return run, nil
}
