package template

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

func TestHashAlgoTable(t *testing.T) {
	// The kernel's enum values, names and sizes (hash_info.h, hash_info.c).
	want := []struct {
		a    HashAlgo
		v    uint8
		name string
		size int
	}{
		{HashMD4, 0, "md4", 16}, {HashMD5, 1, "md5", 16}, {HashSHA1, 2, "sha1", 20},
		{HashRMD160, 3, "rmd160", 20}, {HashSHA256, 4, "sha256", 32}, {HashSHA384, 5, "sha384", 48},
		{HashSHA512, 6, "sha512", 64}, {HashSHA224, 7, "sha224", 28}, {HashRMD128, 8, "rmd128", 16},
		{HashRMD256, 9, "rmd256", 32}, {HashRMD320, 10, "rmd320", 40}, {HashWP256, 11, "wp256", 32},
		{HashWP384, 12, "wp384", 48}, {HashWP512, 13, "wp512", 64}, {HashTGR128, 14, "tgr128", 16},
		{HashTGR160, 15, "tgr160", 20}, {HashTGR192, 16, "tgr192", 24}, {HashSM3_256, 17, "sm3", 32},
		{HashStreebog256, 18, "streebog256", 32}, {HashStreebog512, 19, "streebog512", 64},
		{HashSHA3_256, 20, "sha3-256", 32}, {HashSHA3_384, 21, "sha3-384", 48}, {HashSHA3_512, 22, "sha3-512", 64},
	}
	if len(want) != int(HashAlgoLast) || HashAlgoLast != 23 {
		t.Fatalf("HashAlgoLast = %d, table has %d", HashAlgoLast, len(want))
	}
	for _, w := range want {
		if uint8(w.a) != w.v || w.a.String() != w.name || w.a.Size() != w.size {
			t.Errorf("%d: got (%d, %q, %d), want (%d, %q, %d)", w.v, uint8(w.a), w.a, w.a.Size(), w.v, w.name, w.size)
		}
		if p, err := ParseHashAlgo(w.name); err != nil || p != w.a {
			t.Errorf("ParseHashAlgo(%q) = %v, %v", w.name, p, err)
		}
		if w.a.Available() {
			if got := len(w.a.Sum([]byte("abc"))); got != w.size {
				t.Errorf("%v: Sum gives %d bytes", w.a, got)
			}
			if !bytes.Equal(w.a.Sum([]byte("ab"), []byte("c")), w.a.Sum([]byte("abc"))) {
				t.Errorf("%v: Sum of parts differs", w.a)
			}
		} else if w.a.New() != nil || w.a.Sum(nil) != nil {
			t.Errorf("%v: unavailable but hashes", w.a)
		}
	}
	for _, a := range []HashAlgo{HashMD4, HashRMD160, HashRMD128, HashRMD256, HashRMD320, HashWP256, HashWP384, HashWP512, HashTGR128, HashTGR160, HashTGR192, HashStreebog256, HashStreebog512} {
		if a.Available() {
			t.Errorf("%v should have no implementation", a)
		}
	}
	if _, err := ParseHashAlgo("sm3-256"); err == nil {
		t.Error(`"sm3-256" is no longer a hash_algo_name`)
	}
	if HashAlgoLast.Valid() || HashAlgoLast.Size() != 0 || HashAlgoLast.String() != "hash_algo(23)" {
		t.Errorf("HashAlgoLast: valid %v size %d name %q", HashAlgoLast.Valid(), HashAlgoLast.Size(), HashAlgoLast)
	}
	// SM3 of "abc" (GB/T 32905-2016 example 1) through this table.
	if got := fmt.Sprintf("%x", HashSM3_256.Sum([]byte("abc"))); got != "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" {
		t.Errorf("sm3(abc) = %s", got)
	}
}

func TestTPMMap(t *testing.T) {
	mapped := map[tpmext.Algorithm]HashAlgo{
		tpmext.SHA1: HashSHA1, tpmext.SHA256: HashSHA256, tpmext.SHA384: HashSHA384,
		tpmext.SHA512: HashSHA512, tpmext.SM3_256: HashSM3_256,
	}
	for id, a := range mapped {
		if got := HashAlgoFromTPM(id); got != a {
			t.Errorf("HashAlgoFromTPM(%v) = %v, want %v", id, got, a)
		}
		if back, ok := a.TPM(); !ok || back != id {
			t.Errorf("%v.TPM() = %v, %v", a, back, ok)
		}
	}
	for _, id := range []tpmext.Algorithm{tpmext.SHA3_256, tpmext.SHA3_384, tpmext.SHA3_512, 0, 0x1234} {
		if got := HashAlgoFromTPM(id); got != HashAlgoLast {
			t.Errorf("HashAlgoFromTPM(%v) = %v, want unmapped", id, got)
		}
	}
	for _, a := range []HashAlgo{HashMD5, HashSHA224, HashSHA3_256, HashAlgoLast} {
		if _, ok := a.TPM(); ok {
			t.Errorf("%v should have no TPM id", a)
		}
	}
}

// slotString renders a layout as "sha1,sha256+sha512" (banks, then extras)
// with the sha1 and ima_hash indexes.
func slotString(l *Layout) string {
	var b strings.Builder
	for i := 0; i < l.NumSlots(); i++ {
		s := l.Slot(i)
		switch {
		case i == l.NumBanks():
			b.WriteString("+")
		case i > 0:
			b.WriteString(",")
		}
		if s.Algo == HashAlgoLast {
			fmt.Fprintf(&b, "%v(padded)", s.Bank)
		} else {
			b.WriteString(s.Algo.String())
		}
	}
	fmt.Fprintf(&b, " sha1=%d hash=%d", l.SHA1Index(), l.HashIndex())
	return b.String()
}

func TestLayoutSlots(t *testing.T) {
	tests := []struct {
		banks []tpmext.Algorithm
		hash  HashAlgo
		slots string
		files string
	}{
		// ima_crypto.c:ima_init_crypto() examples.
		{nil, HashSHA256, "+sha1,sha256 sha1=0 hash=1", "0:sha1"},
		{[]tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, HashSHA256, "sha1,sha256 sha1=0 hash=1", "0:sha1 1:sha256"},
		{[]tpmext.Algorithm{tpmext.SHA256}, HashSHA1, "sha256+sha1 sha1=1 hash=1", "0:sha256 1:sha1"},
		{[]tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, HashSHA512, "sha1,sha256+sha512 sha1=0 hash=2", "0:sha1 1:sha256"},
		// More.
		{nil, HashSHA1, "+sha1 sha1=0 hash=0", "0:sha1"},
		{nil, HashMD5, "+sha1,md5 sha1=0 hash=1", "0:sha1"},
		{[]tpmext.Algorithm{tpmext.SHA256, tpmext.SHA3_256}, HashSHA256, "sha256,sha3_256(padded)+sha1 sha1=2 hash=0", "0:sha256 1:tpm_alg_27 2:sha1"},
		{[]tpmext.Algorithm{tpmext.SM3_256}, HashSM3_256, "sm3+sha1 sha1=1 hash=0", "0:sm3 1:sha1"},
		{[]tpmext.Algorithm{tpmext.SHA384, tpmext.SHA3_512}, HashSHA256, "sha384,sha3_512(padded)+sha1,sha256 sha1=2 hash=3", "0:sha384 1:tpm_alg_29 2:sha1"},
		{tpmext.DefaultBanks(), HashSHA256, "sha1,sha256,sha384,sha512 sha1=0 hash=1", "0:sha1 1:sha256 2:sha384 3:sha512"},
	}
	for _, tc := range tests {
		l := mustLayout(t, tc.banks, tc.hash, LittleEndian)
		if got := slotString(l); got != tc.slots {
			t.Errorf("banks %v ima_hash %v: slots %q, want %q", tc.banks, tc.hash, got, tc.slots)
		}
		var files []string
		for _, f := range l.ListFiles() {
			files = append(files, fmt.Sprintf("%d:%s", f.Slot, f.Suffix))
		}
		if got := strings.Join(files, " "); got != tc.files {
			t.Errorf("banks %v ima_hash %v: files %q, want %q", tc.banks, tc.hash, got, tc.files)
		}
		if l.NumBanks() != len(tc.banks) || l.HasTPM() != (len(tc.banks) > 0) || len(l.Banks()) != len(tc.banks) {
			t.Errorf("banks %v: NumBanks %d HasTPM %v", tc.banks, l.NumBanks(), l.HasTPM())
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	for _, tc := range []struct {
		banks []tpmext.Algorithm
		hash  HashAlgo
		o     Order
		want  string
	}{
		{nil, HashMD4, LittleEndian, "md4 has no implementation"},
		{nil, HashAlgoLast, LittleEndian, "no implementation"},
		{[]tpmext.Algorithm{0x1234}, HashSHA1, LittleEndian, "unknown algorithm"},
		{[]tpmext.Algorithm{tpmext.SHA1, tpmext.SHA1}, HashSHA1, LittleEndian, "listed twice"},
		{nil, HashSHA1, Order(7), "byte order"},
	} {
		_, err := NewLayout(tc.banks, tc.hash, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewLayout(%v, %v, %d) = %v, want error containing %q", tc.banks, tc.hash, tc.o, err, tc.want)
		}
	}
}

func TestPaddedSHA1AndExtendDigests(t *testing.T) {
	banks := []tpmext.Algorithm{tpmext.SHA256, tpmext.SHA3_256, tpmext.SHA384}
	l := mustLayout(t, banks, HashSHA256, LittleEndian)
	ev, err := NewFileEvent("/bin/true", &File{Content: []byte("x")}, HashSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.NewEntry(IMANG, 10, ev)
	if err != nil {
		t.Fatal(err)
	}
	data := e.appendHashInput(nil, LittleEndian)
	sha1 := HashSHA1.Sum(data)
	wantSlots := [][]byte{
		HashSHA256.Sum(data),
		append(append([]byte{}, sha1...), make([]byte, 12)...), // padded SHA-1 at the bank's 32 bytes
		HashSHA384.Sum(data),
		sha1, // extra SHA-1 slot
	}
	if len(e.Digests) != len(wantSlots) {
		t.Fatalf("%d digests, want %d", len(e.Digests), len(wantSlots))
	}
	for i, w := range wantSlots {
		if !bytes.Equal(e.Digests[i].Value, w) {
			t.Errorf("slot %d = %x, want %x", i, e.Digests[i].Value, w)
		}
		if e.Digests[i].Alg != l.Slot(i).Bank {
			t.Errorf("slot %d alg %v, want %v", i, e.Digests[i].Alg, l.Slot(i).Bank)
		}
	}
	ext, err := l.ExtendDigests(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 3 {
		t.Fatalf("%d extend digests, want 3", len(ext))
	}
	for i, d := range ext {
		if d.Alg != banks[i] || !bytes.Equal(d.Value, wantSlots[i]) {
			t.Errorf("extend %d = %v:%x", i, d.Alg, d.Value)
		}
	}

	// A violation: zero slots, 0xFF extends (0xFF×20 + zeros when unmapped).
	v, err := l.NewEntry(IMANG, 10, NewViolationEvent("/bin/true", nil, "open_writers"))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range v.Digests {
		if !allZero(d.Value) || len(d.Value) != l.Slot(i).Size {
			t.Errorf("violation slot %d = %x", i, d.Value)
		}
	}
	ext, err = l.ExtendDigests(v)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strings.Repeat("ff", 32), strings.Repeat("ff", 20) + strings.Repeat("00", 12), strings.Repeat("ff", 48)}
	for i, d := range ext {
		if got := fmt.Sprintf("%x", d.Value); got != want[i] || d.Alg != banks[i] {
			t.Errorf("violation extend %d = %v:%s, want %s", i, d.Alg, got, want[i])
		}
	}

	// No TPM: nothing to extend.
	nl := mustLayout(t, nil, HashSHA256, LittleEndian)
	if ext, err := nl.ExtendDigests(v); ext != nil || err != nil {
		t.Errorf("no TPM: %v, %v", ext, err)
	}
	// An entry of another layout is refused.
	if _, err := mustLayout(t, tpmext.DefaultBanks(), HashSHA256, LittleEndian).ExtendDigests(e); err == nil {
		t.Error("ExtendDigests accepted an entry of another layout")
	}
}

func TestComputeDigestsReuse(t *testing.T) {
	l := mustLayout(t, tpmext.DefaultBanks(), HashSHA256, LittleEndian)
	ev, _ := NewFileEvent("/a", &File{Content: []byte("a")}, HashSHA256, nil)
	e, err := l.NewEntry(IMANG, 10, ev)
	if err != nil {
		t.Fatal(err)
	}
	first := e.Digests[0].Value
	allocs := testing.AllocsPerRun(100, func() {
		if err := l.ComputeDigests(e); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ComputeDigests allocates %.1f times per call on a shaped entry", allocs)
	}
	if &e.Digests[0].Value[0] != &first[0] {
		t.Error("ComputeDigests did not reuse the digest storage")
	}
	// A decoded-shape entry gets reshaped.
	e.Digests = e.Digests[:1]
	if err := l.ComputeDigests(e); err != nil || len(e.Digests) != 4 {
		t.Errorf("reshape: %v, %d digests", err, len(e.Digests))
	}
	// Malformed entries are refused, not panicked on.
	if err := l.ComputeDigests(&Entry{Desc: IMANG}); err == nil {
		t.Error("entry without fields accepted")
	}
	if err := l.ComputeDigests(&Entry{}); err == nil {
		t.Error("entry without descriptor accepted")
	}
}

// TestConcurrentUse: a Layout and the builtins are shared by many
// goroutines building, hashing, rendering and decoding entries.
func TestConcurrentUse(t *testing.T) {
	l := mustLayout(t, tpmext.DefaultBanks(), HashSHA256, LittleEndian)
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func(g int) {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				var ev *Event
				ev, err = NewFileEvent(fmt.Sprintf("/f/%d/%d", g, i), &File{Content: []byte{byte(g), byte(i)}}, HashSHA256, nil)
				if err != nil {
					break
				}
				var e *Entry
				if e, err = l.NewEntry(IMASig, 10, ev); err != nil {
					break
				}
				var rec []byte
				if rec, err = e.AppendBinary(nil, 1, LittleEndian); err != nil {
					break
				}
				var back []*Entry
				if back, err = DecodeAll(rec, DecodeOptions{DigestSize: 32}); err != nil {
					break
				}
				want := e.Digests[1].Value
				got, _ := back[0].TemplateDigest(HashSHA256, LittleEndian)
				if !bytes.Equal(got, want) {
					err = fmt.Errorf("goroutine %d entry %d: digest %x, want %x", g, i, got, want)
				}
			}
			done <- err
		}(g)
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
