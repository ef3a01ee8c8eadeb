package template

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

// distinctPCRs gives every bank PCR 0-23 values that differ per bank and
// per PCR, so a wrong bank or a wrong PCR range changes the aggregate.
func distinctPCRs(banks ...tpmext.Algorithm) tpmext.PCRValues {
	v := tpmext.PCRValues{}
	for _, b := range banks {
		for i := 0; i < tpmext.NumPCRs; i++ {
			v[b] = append(v[b], b.Sum([]byte{byte(b), byte(i)}))
		}
	}
	return v
}

// aggregate is the expected aggregate: H_bank(PCR 0 .. n-1) of that bank.
func aggregate(pcrs tpmext.PCRValues, bank tpmext.Algorithm, n int) []byte {
	return bank.Sum(bytes.Join(pcrs[bank][:n], nil))
}

func TestBootAggregateBankSelection(t *testing.T) {
	all := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512, tpmext.SM3_256, tpmext.SHA3_256}
	pcrs := distinctPCRs(all...)
	tests := []struct {
		name  string
		banks []tpmext.Algorithm
		hash  HashAlgo
		algo  HashAlgo         // the record's algorithm
		bank  tpmext.Algorithm // the bank read; 0: zeros
		n     int              // PCRs aggregated
	}{
		{"exact match wins", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384}, HashSHA384, HashSHA384, tpmext.SHA384, 10},
		{"exact sha1: PCR 0-7", []tpmext.Algorithm{tpmext.SHA256, tpmext.SHA1}, HashSHA1, HashSHA1, tpmext.SHA1, 8},
		{"else sha256, record says sha256", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, HashSHA512, HashSHA256, tpmext.SHA256, 10},
		{"sha256 after sha1 overrides it", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA384, tpmext.SHA256}, HashSM3_256, HashSHA256, tpmext.SHA256, 10},
		{"sha1 after sha256 does not", []tpmext.Algorithm{tpmext.SHA256, tpmext.SHA1}, HashSHA384, HashSHA256, tpmext.SHA256, 10},
		{"only sha1", []tpmext.Algorithm{tpmext.SHA1}, HashSHA256, HashSHA1, tpmext.SHA1, 8},
		{"sm3 exact: PCR 0-9", []tpmext.Algorithm{tpmext.SM3_256}, HashSM3_256, HashSM3_256, tpmext.SM3_256, 10},
		{"no suitable bank: zeros of ima_hash", []tpmext.Algorithm{tpmext.SHA384, tpmext.SHA3_256}, HashSHA256, HashSHA256, 0, 0},
		{"no suitable bank, sha512", []tpmext.Algorithm{tpmext.SM3_256}, HashSHA512, HashSHA512, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustLayout(t, tc.banks, tc.hash, LittleEndian)
			e, err := l.NewBootAggregate(IMANG, 10, pcrs)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, tc.algo.Size())
			if tc.bank != 0 {
				want = aggregate(pcrs, tc.bank, tc.n)
			}
			wantField := append([]byte(tc.algo.String()+":\x00"), want...)
			if !bytes.Equal(e.Fields[0], wantField) {
				t.Errorf("d-ng = %q, want %q", e.Fields[0], wantField)
			}
			if string(e.Fields[1]) != "boot_aggregate\x00" || e.Violation {
				t.Errorf("n-ng %q violation %v", e.Fields[1], e.Violation)
			}
		})
	}
}

// TestBootAggregateIMATemplate: the d field retries the choice requesting
// SHA-1 and falls back to 20 zero bytes.
func TestBootAggregateIMATemplate(t *testing.T) {
	pcrs := distinctPCRs(tpmext.SHA1, tpmext.SHA256, tpmext.SHA384)
	tests := []struct {
		name  string
		banks []tpmext.Algorithm
		hash  HashAlgo
		want  []byte
	}{
		{"sha1 bank, ima_hash sha1", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, HashSHA1, aggregate(pcrs, tpmext.SHA1, 8)},
		{"md5 picks sha256 first, the retry finds sha1", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, HashMD5, aggregate(pcrs, tpmext.SHA1, 8)},
		{"no sha1 bank: zeros", []tpmext.Algorithm{tpmext.SHA256}, HashSHA1, make([]byte, 20)},
		{"no suitable bank at all: zeros", []tpmext.Algorithm{tpmext.SHA384}, HashSHA1, make([]byte, 20)},
		{"no TPM, sha1: 20 zeros", nil, HashSHA1, make([]byte, 20)},
		{"no TPM, md5: the 16-byte md5 zero digest", nil, HashMD5, make([]byte, 16)},
		{"no TPM, sha256 (template=ima by policy): 20 zeros", nil, HashSHA256, make([]byte, 20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustLayout(t, tc.banks, tc.hash, LittleEndian)
			e, err := l.NewBootAggregate(IMA, 10, pcrs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e.Fields[0], tc.want) {
				t.Errorf("d = %x, want %x", e.Fields[0], tc.want)
			}
			// The ima template hash: d || name padded to 256.
			in := append(append([]byte{}, tc.want...), []byte("boot_aggregate")...)
			in = append(in, make([]byte, 256-len("boot_aggregate"))...)
			if got := e.Digests[l.SHA1Index()].Value; !bytes.Equal(got, HashSHA1.Sum(in)) {
				t.Errorf("template digest %x, want %x", got, HashSHA1.Sum(in))
			}
		})
	}
}

func TestBootAggregateErrors(t *testing.T) {
	l := mustLayout(t, []tpmext.Algorithm{tpmext.SHA256}, HashSHA256, LittleEndian)
	pcrs := distinctPCRs(tpmext.SHA256)
	short := tpmext.PCRValues{tpmext.SHA256: pcrs[tpmext.SHA256][:9]}
	if _, err := l.BootAggregateEvent(short); err == nil || !strings.Contains(err.Error(), "PCR 0-9") {
		t.Errorf("9 PCRs: %v", err)
	}
	bad := tpmext.PCRValues{tpmext.SHA256: append([][]byte{{1, 2}}, pcrs[tpmext.SHA256][1:]...)}
	if _, err := l.BootAggregateEvent(bad); err == nil || !strings.Contains(err.Error(), "PCR 0") {
		t.Errorf("short PCR 0: %v", err)
	}
	if _, err := l.BootAggregateEvent(nil); err == nil {
		t.Error("no PCR values accepted with a TPM")
	}
	// SHA-1 banks need only PCR 0-7.
	l1 := mustLayout(t, sha1Only, HashSHA1, LittleEndian)
	p1 := distinctPCRs(tpmext.SHA1)
	if _, err := l1.BootAggregateEvent(tpmext.PCRValues{tpmext.SHA1: p1[tpmext.SHA1][:8]}); err != nil {
		t.Errorf("SHA-1 with PCR 0-7: %v", err)
	}
}

// TestBufferEvents: d-ng is always the hash of what buf holds.
func TestBufferEvents(t *testing.T) {
	l := mustLayout(t, nil, HashSHA256, LittleEndian)
	buf := []byte("module image")
	e, err := l.NewEntry(IMABuf, 10, l.BufferEvent("init_module", buf, true))
	if err != nil {
		t.Fatal(err)
	}
	h := HashSHA256.Sum(buf)
	hh := HashSHA256.Sum(h)
	want := "10 " + hex.EncodeToString(e.Digests[0].Value) + " ima-buf sha256:" + hex.EncodeToString(hh) + " init_module " + hex.EncodeToString(h) + "\n"
	if got := ascii(t, e, 0, LittleEndian); got != want {
		t.Errorf("buf_hash line\n got %q\nwant %q", got, want)
	}
	e, err = l.NewEntry(IMABuf, 10, l.BufferEvent("kexec-cmdline", buf, false))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Fields[0][len("sha256:\x00"):], h) || !bytes.Equal(e.Fields[2], buf) {
		t.Errorf("plain buffer: %x %x", e.Fields[0], e.Fields[2])
	}
	// Buffer events have no file: file fields are empty, sig falls to
	// evmsig, which is empty.
	e, err = l.NewEntry(EVMSig, 10, l.BufferEvent("x", buf, false))
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < e.Desc.NumFields(); i++ {
		if len(e.Fields[i]) != 0 {
			t.Errorf("field %v = %x, want empty", e.Desc.Field(i), e.Fields[i])
		}
	}
}
