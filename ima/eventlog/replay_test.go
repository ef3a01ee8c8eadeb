package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/imasim/imasim/ima/eventlog/internal/gen"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"golang.org/x/sync/errgroup"
)

func generate(t testing.TB, cfg gen.Config, snapshots ...int) *gen.List {
	t.Helper()
	l, err := gen.Generate(cfg, snapshots...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func binaryOf(t testing.TB, l *gen.List, bank tpmext.Algorithm) []byte {
	t.Helper()
	b, err := l.Binary(bank)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func asciiOf(t testing.TB, l *gen.List, bank tpmext.Algorithm) []byte {
	t.Helper()
	b, err := l.ASCII(bank)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expect returns the given PCRs of every bank of vals.
func expect(vals tpmext.PCRValues, pcrs ...int) Expected {
	want := Expected{}
	for alg, v := range vals {
		want[alg] = map[int][]byte{}
		for _, p := range pcrs {
			want[alg][p] = v[p]
		}
	}
	return want
}

// columnOptions returns the options reading bank's list file.
func columnOptions(bank tpmext.Algorithm, o template.Order) Options {
	return Options{DigestSize: bank.Size(), ColumnAlg: bank, Order: o}
}

// TestViolations replays violations as the kernel extends them (0xFF of
// each bank's size) and, on request, as evmctl does without
// --ignore-violations (zeros), which then fails against a real TPM.
func TestViolations(t *testing.T) {
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512}
	l := generate(t, gen.Config{Records: 300, Banks: banks, ViolationEvery: 7})
	want := expect(l.PCRs, 10)
	for _, col := range banks {
		data := binaryOf(t, l, col)
		log := mustParse(t, data, columnOptions(col, template.LittleEndian))
		n := 0
		for r := range log.All() {
			if r.Violation() {
				n++
			}
		}
		if n != 300/7 {
			t.Fatalf("%v column: %d violations, want %d", col, n, 300/7)
		}
		if _, err := verifyBoth(t, data, columnOptions(col, template.LittleEndian), want, ReplayOptions{}); err != nil {
			t.Fatalf("%v column: %v", col, err)
		}
		_, err := verifyBoth(t, data, columnOptions(col, template.LittleEndian), want, ReplayOptions{Violations: ViolationsZero})
		if !errors.Is(err, ErrPCRMismatch) {
			t.Fatalf("%v column, violations as zeros: got %v, want a PCR mismatch", col, err)
		}
	}
	// The 0xFF digest itself: one violation after the boot aggregate.
	one := generate(t, gen.Config{Records: 2, Banks: banks, ViolationEvery: 1})
	st, err := mustParse(t, binaryOf(t, one, tpmext.SHA1), Options{}).Replay(ReplayOptions{Banks: banks})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range banks {
		boot, _ := mustParse(t, binaryOf(t, one, tpmext.SHA1), Options{}).Record(0).TemplateDigest(b)
		pcr := tpmext.ExtendValue(b, make([]byte, b.Size()), boot)
		pcr = tpmext.ExtendValue(b, pcr, bytes.Repeat([]byte{0xff}, b.Size()))
		if !bytes.Equal(st.PCRs[b][10], pcr) {
			t.Errorf("%v PCR 10 after a violation = %x, want %x", b, st.PCRs[b][10], pcr)
		}
	}
}

// TestPre58 replays a list of a kernel before v5.8 (SHA-1 template digest
// zero-padded into every bank) only in PaddedSHA1 mode.
func TestPre58(t *testing.T) {
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA512}
	l := generate(t, gen.Config{Records: 200, Banks: banks, ViolationEvery: 9, Pre58: true, Hash: template.HashSHA1})
	data := binaryOf(t, l, tpmext.SHA1)
	want := expect(l.PCRs, 10)
	if _, err := verifyBoth(t, data, Options{}, want, ReplayOptions{PaddedSHA1: true}); err != nil {
		t.Fatal(err)
	}
	_, err := verifyBoth(t, data, Options{}, want, ReplayOptions{})
	var re *ReplayError
	if !errors.As(err, &re) || !errors.Is(err, ErrPCRMismatch) || len(re.Mismatches) != 2 {
		t.Fatalf("per-bank replay of a pre-5.8 list: got %v, want the SHA-256 and SHA-512 banks to differ", err)
	}
	if re.Mismatches[0].Bank != tpmext.SHA256 || re.Mismatches[1].Bank != tpmext.SHA512 {
		t.Errorf("mismatching banks %v, %v", re.Mismatches[0].Bank, re.Mismatches[1].Bank)
	}
}

// TestUnmappedBank replays a SHA3-256 bank, which the kernel cannot map
// and fills with the padded SHA-1 digest.
func TestUnmappedBank(t *testing.T) {
	banks := []tpmext.Algorithm{tpmext.SHA256, tpmext.SHA3_256}
	l := generate(t, gen.Config{Records: 100, Banks: banks, ViolationEvery: 11})
	for _, col := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA3_256} {
		if _, err := verifyBoth(t, binaryOf(t, l, col), columnOptions(col, template.LittleEndian), expect(l.PCRs, 10), ReplayOptions{}); err != nil {
			t.Fatalf("%v column: %v", col, err)
		}
	}
}

// TestSeveralPCRs: a policy with pcr=11 rules puts records into PCR 11.
// Verifying only PCR 10 leaves those records unchecked, which is an error.
func TestSeveralPCRs(t *testing.T) {
	l := generate(t, gen.Config{Records: 3000, PCR11Every: 5})
	data := binaryOf(t, l, tpmext.SHA1)
	if _, err := verifyBoth(t, data, Options{}, expect(l.PCRs, 10, 11), ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := verifyBoth(t, data, Options{}, expect(l.PCRs, 10), ReplayOptions{})
	var re *ReplayError
	if !errors.As(err, &re) || !errors.Is(err, ErrUncheckedPCR) || re.Index != 5 || re.PCR != 11 {
		t.Fatalf("got %v, want record 5 extending unchecked PCR 11", err)
	}
	// One bank checking PCR 11 is not enough: every bank must.
	want := expect(l.PCRs, 10, 11)
	delete(want[tpmext.SHA256], 11)
	_, err = verifyBoth(t, data, Options{}, want, ReplayOptions{})
	if !errors.As(err, &re) || !errors.Is(err, ErrUncheckedPCR) || re.Bank != tpmext.SHA256 {
		t.Fatalf("got %v, want PCR 11 unchecked in bank sha256", err)
	}
}

// TestReplayUntilQuote is the quote that lags the list: a TPM extended with
// only the first k records signs a quote, and ReplayUntil finds k.
func TestReplayUntilQuote(t *testing.T) {
	const n = 5000 // several batches
	l := generate(t, gen.Config{Records: n, PCR11Every: 13, ViolationEvery: 101})
	data := binaryOf(t, l, tpmext.SHA1)
	log := mustParse(t, data, Options{})
	nonce := []byte("fresh nonce")
	for _, k := range []int{0, 1, 2, 13, batchRecords - 1, batchRecords, batchRecords + 1, 2 * batchRecords, 4*batchRecords + 7, n - 1, n} {
		tpm, err := tpmext.NewSoftware()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l.Entries[:k] {
			ds, err := l.Layout.ExtendDigests(e)
			if err != nil {
				t.Fatal(err)
			}
			// The software TPM has four banks, the kernel's layout two.
			if err := tpm.Extend(int(e.PCR), ds); err != nil {
				t.Fatal(err)
			}
		}
		for _, sel := range []tpmext.Selection{{Alg: tpmext.SHA256, PCRs: []int{10, 11}}, {Alg: tpmext.SHA1, PCRs: []int{11, 10}}} {
			q, err := tpm.Quote(nonce, sel)
			if err != nil {
				t.Fatal(err)
			}
			target, err := QuoteTarget(q, nonce, sel)
			if err != nil {
				t.Fatal(err)
			}
			for _, workers := range []int{1, 2} {
				two := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
				got, st, err := log.ReplayUntil(target, ReplayOptions{Workers: workers, Banks: two})
				if err != nil || got != k {
					t.Fatalf("k=%d %v workers %d: ReplayUntil = %d, %v; want %d", k, sel, workers, got, err, k)
				}
				vals := map[int][]byte{10: st.PCRs[sel.Alg][10], 11: st.PCRs[sel.Alg][11]}
				if err := q.Verify(nonce, sel, vals); err != nil {
					t.Fatalf("k=%d: the quote does not verify with the state's PCRs: %v", k, err)
				}
				// The state is the TPM's.
				if len(st.PCRs) != 2 {
					t.Fatalf("k=%d: state of %d banks, want 2", k, len(st.PCRs))
				}
				for _, b := range two {
					for p := 0; p < tpmext.NumPCRs; p++ {
						want, _ := tpm.ReadPCR(p, b)
						if !bytes.Equal(st.PCRs[b][p], want) {
							t.Fatalf("k=%d: state's %v PCR %d = %x, the TPM's %x", k, b, p, st.PCRs[b][p], want)
						}
					}
				}
				if k < n && st.Offset != log.Record(k).Offset || k == n && st.Offset != int64(len(data)) {
					t.Fatalf("k=%d: state offset %d", k, st.Offset)
				}
				// The stream stops there too.
				rd, _ := NewReader(bytes.NewReader(data), Options{})
				if got, _, err := rd.ReplayUntil(target, ReplayOptions{Workers: workers}); err != nil || got != k {
					t.Fatalf("k=%d: Reader.ReplayUntil = %d, %v", k, got, err)
				}
			}
		}
	}
	// A quote the list never reaches.
	tpm, _ := tpmext.NewSoftware()
	tpm.Extend(10, []tpmext.Digest{{Alg: tpmext.SHA256, Value: make([]byte, 32)}})
	sel := tpmext.Selection{Alg: tpmext.SHA256, PCRs: []int{10, 11}}
	q, _ := tpm.Quote(nonce, sel)
	target, err := QuoteTarget(q, nonce, sel)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := log.ReplayUntil(target, ReplayOptions{}); !errors.Is(err, ErrNotReached) {
		t.Fatalf("got %v, want ErrNotReached", err)
	}
	// A wrong nonce, selection or signature is refused before replaying.
	if _, err := QuoteTarget(q, []byte("other"), sel); !errors.Is(err, tpmext.ErrQuoteNonce) {
		t.Errorf("wrong nonce: %v", err)
	}
	if _, err := QuoteTarget(q, nonce, tpmext.Selection{Alg: tpmext.SHA256, PCRs: []int{10}}); !errors.Is(err, tpmext.ErrQuoteSelection) {
		t.Errorf("wrong selection: %v", err)
	}
	q.Signature[len(q.Signature)-1] ^= 1
	if _, err := QuoteTarget(q, nonce, sel); !errors.Is(err, tpmext.ErrQuoteSignature) {
		t.Errorf("bad signature: %v", err)
	}
}

// TestReplayUntilValues finds N from PCR values (the quote's PCRs read
// separately) of two PCRs.
func TestReplayUntilValues(t *testing.T) {
	ks := []int{0, 1, 100, 2500, 4999, 5000}
	l := generate(t, gen.Config{Records: 5000, PCR11Every: 17}, ks...)
	log := mustParse(t, binaryOf(t, l, tpmext.SHA256), columnOptions(tpmext.SHA256, template.LittleEndian))
	for _, k := range ks {
		vals, _ := l.PCRsAfter(k)
		n, _, err := log.ReplayUntil(Target{PCRs: expect(vals, 10, 11)}, ReplayOptions{})
		if err != nil || n != k {
			t.Errorf("ReplayUntil(values after %d) = %d, %v", k, n, err)
		}
	}
}

// TestResume checks that replaying from a saved state gives the same
// result as replaying from the start, whether the input holds the whole
// list or only the records after the state.
func TestResume(t *testing.T) {
	ks := []int{0, 1, batchRecords, 1000, 2048, 4321, 6000}
	l := generate(t, gen.Config{Records: 6000, ViolationEvery: 50, PCR11Every: 7}, ks...)
	for _, ascii := range []bool{false, true} {
		var data []byte
		opts := Options{ASCII: ascii}
		if ascii {
			data = asciiOf(t, l, tpmext.SHA1)
		} else {
			data = binaryOf(t, l, tpmext.SHA1)
		}
		log := mustParse(t, data, opts)
		full, err := log.Replay(ReplayOptions{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}})
		if err != nil {
			t.Fatal(err)
		}
		want := expect(l.PCRs, 10, 11)
		for _, k := range ks {
			vals, _ := l.PCRsAfter(k)
			_, st, err := log.ReplayUntil(Target{PCRs: expect(vals, 10, 11)}, ReplayOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The state survives JSON, as a verifier would store it.
			b, _ := json.Marshal(st)
			var saved State
			if err := json.Unmarshal(b, &saved); err != nil {
				t.Fatal(err)
			}
			got, err := log.Replay(ReplayOptions{From: &saved})
			if err != nil || !got.PCRs.Equal(full.PCRs) || got.Records != full.Records || got.Offset != full.Offset {
				t.Fatalf("ascii=%v k=%d: resumed replay differs from the full one (%v)", ascii, k, err)
			}
			// Only the tail, numbered from the state.
			tail := Options{ASCII: ascii, FirstIndex: saved.Records, FirstOffset: saved.Offset}
			if _, err := verifyBoth(t, data[saved.Offset:], tail, want, ReplayOptions{From: saved.Clone()}); err != nil {
				t.Fatalf("ascii=%v k=%d: verifying the tail: %v", ascii, k, err)
			}
			if k == 0 {
				continue
			}
			// A state that does not fit.
			if _, err := mustParse(t, data[saved.Offset:], tail).Replay(ReplayOptions{}); !errors.Is(err, ErrState) {
				t.Errorf("a tail without a state: got %v", err)
			}
			early := saved.Clone()
			early.Records--
			if _, err := mustParse(t, data[saved.Offset:], tail).Replay(ReplayOptions{From: early}); !errors.Is(err, ErrState) {
				t.Errorf("a tail after the state: got %v", err)
			}
			if _, err := mustParse(t, data[:log.Record(k-1).Offset], opts).Replay(ReplayOptions{From: saved.Clone()}); !errors.Is(err, ErrState) {
				t.Errorf("a list ending before the state: got %v", err)
			}
		}
	}
}

// TestConcat joins chunks cut at record boundaries, and refuses a torn
// record and chunks of another width or byte order.
func TestConcat(t *testing.T) {
	l := generate(t, gen.Config{Records: 500, ViolationEvery: 30})
	data := binaryOf(t, l, tpmext.SHA1)
	log := mustParse(t, data, Options{})
	cut := func(i int) int64 { return log.Record(i).Offset }
	chunks := [][]byte{data[:cut(100)], data[cut(100):cut(100)], data[cut(100):cut(350)], data[cut(350):]}
	got, err := Concat(Options{}, chunks...)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Concat of record-aligned chunks: %v", err)
	}
	if _, err := verifyBoth(t, got, Options{}, expect(l.PCRs, 10), ReplayOptions{}); err != nil {
		t.Fatal(err)
	}

	// Torn: chunk 1 ends 7 bytes into record 350.
	_, err = Concat(Options{}, data[:cut(100)], data[cut(100):cut(350)+7], data[cut(350)+7:])
	var ce *ChunkError
	var de *template.DecodeError
	if !errors.As(err, &ce) || !errors.Is(err, ErrTornRecord) || ce.Chunk != 1 || ce.Records != 100 || ce.Offset != cut(100) ||
		!errors.As(err, &de) || de.Index != 250 || de.RecordOffset != cut(350)-cut(100) {
		t.Fatalf("torn record: got %v", err)
	}

	// Mixed widths: the current list read from the *_sha256 file.
	wide := binaryOf(t, l, tpmext.SHA256)
	wlog := mustParse(t, wide, Options{DigestSize: 32})
	_, err = Concat(Options{}, data[:cut(100)], wide[wlog.Record(100).Offset:])
	if !errors.As(err, &ce) || !errors.Is(err, ErrMixedFormat) || ce.Chunk != 1 || ce.Detected == nil || ce.Detected.DigestSize != 32 {
		t.Fatalf("mixed widths: got %v", err)
	}
	// Mixed byte order.
	be := generate(t, gen.Config{Records: 50, Order: template.BigEndian})
	_, err = Concat(Options{}, data, binaryOf(t, be, tpmext.SHA1))
	if !errors.As(err, &ce) || !errors.Is(err, ErrMixedFormat) || ce.Chunk != 1 || ce.Detected.Order != template.BigEndian {
		t.Fatalf("mixed byte order: got %v", err)
	}
	// ASCII chunks: a torn line and a different width.
	text := asciiOf(t, l, tpmext.SHA1)
	tl := mustParse(t, text, Options{ASCII: true})
	at := tl.Record(200).Offset
	if got, err := Concat(Options{ASCII: true}, text[:at], text[at:]); err != nil || !bytes.Equal(got, text) {
		t.Fatalf("ASCII chunks: %v", err)
	}
	if _, err := Concat(Options{ASCII: true}, text[:at+5], text[at+5:]); !errors.Is(err, ErrTornRecord) {
		t.Fatalf("torn ASCII line: got %v", err)
	}
	wtext := asciiOf(t, l, tpmext.SHA256)
	if _, err := Concat(Options{ASCII: true}, text[:at], wtext[mustParse(t, wtext, Options{ASCII: true}).Record(200).Offset:]); !errors.Is(err, ErrMixedFormat) {
		t.Fatalf("mixed ASCII widths: got %v", err)
	}
}

func TestDetectFormat(t *testing.T) {
	l := generate(t, gen.Config{Records: 20, Banks: allBanks})
	be := generate(t, gen.Config{Records: 20, Banks: allBanks, Order: template.BigEndian})
	for _, b := range allBanks {
		for _, c := range []struct {
			l *gen.List
			o template.Order
		}{{l, template.LittleEndian}, {be, template.BigEndian}} {
			o, err := DetectFormat(binaryOf(t, c.l, b))
			if err != nil || o.DigestSize != b.Size() || o.Order != c.o || o.ColumnAlg != b || o.ASCII {
				t.Errorf("%v %v: DetectFormat = %+v, %v", b, c.o, o, err)
			}
		}
		o, err := DetectFormat(asciiOf(t, l, b))
		if err != nil || !o.ASCII || o.DigestSize != b.Size() {
			t.Errorf("%v ASCII: DetectFormat = %+v, %v", b, o, err)
		}
	}
	if _, err := DetectFormat([]byte("junk that is no list")); err == nil {
		t.Error("DetectFormat accepted junk")
	}
}

// TestBigEndian reads a list of a big-endian kernel without
// ima_canonical_fmt: its lengths, and the length prefixes it hashes, are
// big-endian.
func TestBigEndian(t *testing.T) {
	l := generate(t, gen.Config{Records: 300, Order: template.BigEndian, Templates: []*template.Descriptor{template.EVMSig, template.IMASig}})
	for _, b := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256} {
		opts := columnOptions(b, template.BigEndian)
		if _, err := verifyBoth(t, binaryOf(t, l, b), opts, expect(l.PCRs, 10), ReplayOptions{}); err != nil {
			t.Fatalf("%v: %v", b, err)
		}
		opts.ASCII = true
		if _, err := verifyBoth(t, asciiOf(t, l, b), opts, expect(l.PCRs, 10), ReplayOptions{}); err != nil {
			t.Fatalf("%v ASCII: %v", b, err)
		}
		if _, err := ParseEventLog(binaryOf(t, l, b), columnOptions(b, template.LittleEndian)); err == nil {
			t.Fatalf("%v: a big-endian list parses as little-endian", b)
		}
	}
}

// allTemplates are every builtin and custom formats of the same fields.
func allTemplates(t testing.TB) []*template.Descriptor {
	descs := template.Builtins()
	for _, f := range []string{"d-ng|n-ng|iuid|igid|imode|xattrnames|xattrlengths|xattrvalues", "d|n-ng", "n-ng|d-ngv2|sig|buf", "d-modsig|modsig|evmsig", "d-ng|n-ng"} {
		d, err := template.ParseFmt(f)
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	return descs
}

// TestASCIIEveryTemplate rebuilds lists of every template from their ASCII
// files, for every column, and checks the rebuilt records byte for byte.
func TestASCIIEveryTemplate(t *testing.T) {
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SM3_256}
	for _, order := range []template.Order{template.LittleEndian, template.BigEndian} {
		l := generate(t, gen.Config{Records: 400, Banks: banks, Templates: allTemplates(t), ViolationEvery: 37, Order: order, PCR11Every: 19})
		for _, b := range banks {
			opts := columnOptions(b, order)
			opts.ASCII = true
			text := asciiOf(t, l, b)
			al, err := ParseEventLog(text, opts)
			if err != nil {
				t.Fatalf("%v %v: %v", order, b, err)
			}
			if !bytes.Equal(al.Binary(), binaryOf(t, l, b)) {
				t.Fatalf("%v %v: rebuilt records differ from the binary list", order, b)
			}
			if _, err := verifyBoth(t, text, opts, expect(l.PCRs, 10, 11), ReplayOptions{}); err != nil {
				t.Fatalf("%v %v: %v", order, b, err)
			}
		}
	}
}

// TestASCIILines checks published lines and lines that cannot be rebuilt.
func TestASCIILines(t *testing.T) {
	good := []string{
		// keylime test_ima_ast.py and ima-evm-utils tests
		// the template hashes are SHA-1.
		"10 1e70a3e1af66f42826ad63b761b4cb9c4df195e1 ima-sig sha256:d33d5d13792292e202dbf69a6f1b07bc8a02f01424db8489ba7bb7d43c0290ef /usr/bin/dd 030204f3452d2301009dd340c852f37e35748363586939d4199b6684be27e7c1236ca1528f708372ed9cd52a0d991f66448790f5616ed5bd7f9bbd22193b1e3e54f6bf29a1497945a34d1b418b24f4cbeaef897bf3cebca27065ebb8761b46bc2662fe76f141245b9186a5ac8493c7f4976cf0d6dfc085c3e503e3f771bc3ccb121230db76fd8aba4f45f060ad64ab3afd99b4e52824b9eba12e93e46f9dcb2fa01d9cef89f298a0da02a82a4fb56924afd3e3c277a1302d99f770d488449df2d43eb5b174a0a528827e6877b965c2f0b7c89cf1aa26a7417a892df4c2294e2872d62748b72ea04ecb0689b5d792e615a9bf9d56f6e0f298560bf9441df0a22729c5f23389f028c25f\n",
		"10 5426cf3031a43f5bfca183d79950698a95a728f6 ima-sig sha256:f1125b940480d20ad841d26d5ea253edc0704b5ec1548c891edf212cb1a9365e /lib/modules/5.4.48-openpower1/kernel/drivers/usb/common/usb-common.ko \n",
		"10 7936eb315fb4e74b99e7d461bc5c96049e1ee092 ima-ng sha1:bc026ae66d81713e4e852465e980784dc96651f8 /usr/lib/systemd/systemd\n",
		"10 d7026dc672344d3ee372217bdbc7395947788671 ima 6f66d1d8e2fffcc12dfcb78c04b81fe5b8bbae4e /usr/bin/kmod\n",
		"10 2e03b3fdb0014fc8bae2a07ca33ae67125b290f3 ima-ng sha256:83d19723ef3b3c05bb8ae70d86b3886c158f2408f1b71ed265886a7b79eb700e boot_aggregate\n",
		"10 49ab61dd97ea2f759edcb6c6a3387ac67f0aa576 ima-buf sha256:0c907aab3261194f16b0c2a422a82f145bc9b9ecb8fdb633fa43e3e5379f0af2 kernel_version 372e312e302d7263312b\n",
	}
	for _, line := range good {
		l, err := ParseEventLog([]byte(line), Options{ASCII: true})
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if _, err := l.Replay(ReplayOptions{}); err != nil {
			t.Fatalf("%q: template digest: %v", line, err)
		}
	}
	ok := good[2]
	bad := []struct {
		text string
		kind error
	}{
		{"10 " + fmt.Sprintf("%040x", 1) + " ima-cgpath 0\n", template.ErrUnknownTemplate},
		{"10 0123 ima-ng 0\n", ErrASCII},
		{replace1(ok, "/usr/lib/systemd/systemd", "/usr/lib/system d"), ErrNotRebuildable},
		{replace1(ok, "bc026ae6", "BC026AE6"), ErrNotRebuildable},
		{replace1(ok, "7936eb31", "7936EB31"), ErrNotRebuildable},
		{replace1(ok, "\n", ""), template.ErrTruncated},
		{replace1(ok, "systemd\n", "systemd\r\n"), ErrTemplateDigest}, // the \r is part of the name
		{replace1(ok, "10 ", "010 "), ErrNotRebuildable},
		{replace1(ok, "10 ", "x "), ErrASCII},
		{replace1(ok, "bc026ae6", "zc026ae6"), ErrASCII},
		{replace1(ok, "7936eb31", "7936eb3"), ErrASCII},
		{"\n", ErrASCII},
		{replace1(ok, "10 ", "24 "), ErrPCRIndex},
		{replace1(ok, " /usr", "  /usr"), ErrNotRebuildable},
	}
	for _, c := range bad {
		_, err := verifyOne(c.text)
		if !errors.Is(err, c.kind) {
			t.Errorf("%q: got %v, want %v", c.text, err, c.kind)
		}
	}
	// Mixed widths: a SHA-1 line, then a SHA-256 one.
	mixed := ok + "10 " + fmt.Sprintf("%064x", 1) + " ima-ng sha1:bc026ae66d81713e4e852465e980784dc96651f8 /x\n"
	if _, err := ParseEventLog([]byte(mixed), Options{ASCII: true}); !errors.Is(err, ErrASCII) {
		t.Errorf("mixed widths: got %v", err)
	}
	// PCRs below 10 are printed "%2d".
	e := &template.Entry{PCR: 8, Desc: template.IMANG, Fields: [][]byte{[]byte("sha1:\x00" + string(make([]byte, 20))), []byte("/a\x00")}}
	e.Digests = []tpmext.Digest{{Alg: tpmext.SHA1, Value: make([]byte, 20)}}
	line, _ := e.AppendASCII(nil, 0, template.LittleEndian)
	if line[0] != ' ' {
		t.Fatalf("line %q", line)
	}
	if l, err := ParseEventLog(line, Options{ASCII: true}); err != nil || l.Record(0).PCR != 8 || !l.Record(0).Violation() {
		t.Fatalf("%q: %v", line, err)
	}
}

// verifyOne parses text as an ASCII list and replays it.
func verifyOne(text string) (*State, error) {
	l, err := ParseEventLog([]byte(text), Options{ASCII: true})
	if err != nil {
		return nil, err
	}
	return l.Replay(ReplayOptions{})
}

func replace1(s, old, new string) string {
	return string(bytes.Replace([]byte(s), []byte(old), []byte(new), 1))
}

func TestPCRFile(t *testing.T) {
	sha1 := "9be6bac02bf18d09d17e726c2df00bca4e8831ea"
	good := []struct {
		text string
		bank tpmext.Algorithm
		want map[int]string
	}{
		{"PCR-10: " + sha1 + "\n", tpmext.SHA1, map[int]string{10: sha1}},
		{"PCR-00: 00000000000000000000000000000000000000AA\nPCR-01: 0000000000000000000000000000000000000001\n", tpmext.SHA1,
			map[int]string{0: "00000000000000000000000000000000000000aa", 1: "0000000000000000000000000000000000000001"}},
		{"# comment\n\n PCR 10: 9b e6 ba c0 2b f1 8d 09 d1 7e 72 6c 2d f0 0b ca 4e 88 31 ea \n", tpmext.SHA1, map[int]string{10: sha1}},
		{"PCR-3: 9b e6 ba c0 2b f1 8d 09 d1 7e 72 6c 2d f0 0b ca 4e 88 31 ea\r\n", tpmext.SHA1, map[int]string{3: sha1}},
	}
	for _, c := range good {
		got, err := ParsePCRFile(bytes.NewReader([]byte(c.text)), c.bank)
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("%q: %v, %v", c.text, got, err)
		}
		for p, v := range c.want {
			if fmt.Sprintf("%x", got[p]) != v {
				t.Errorf("%q: PCR %d = %x, want %s", c.text, p, got[p], v)
			}
		}
	}
	// The four banks of imakvtpcr10.txt, picked by size.
	for _, b := range allBanks {
		vals, err := ParsePCRFile(bytes.NewReader(readFile(t, ibmPCR10)), b)
		if err != nil || len(vals[10]) != b.Size() {
			t.Fatalf("%v: %v", b, err)
		}
	}
	bad := []struct {
		text string
		bank tpmext.Algorithm
	}{
		{"", tpmext.SHA1},
		{"PCR-10 " + sha1, tpmext.SHA1},
		{"PCR-24: " + sha1, tpmext.SHA1},
		{"PCR-10: xyz", tpmext.SHA1},
		{"PCR-10: " + sha1, tpmext.SHA256},                                // wrong bank
		{"PCR-10: " + sha1 + "\nPCR-10: " + sha1[2:] + "aa", tpmext.SHA1}, // two values
		{"PCR-10: " + sha1, tpmext.SM3_256 + 1},
		{"foo: bar", tpmext.SHA1},
	}
	for _, c := range bad {
		if _, err := ParsePCRFile(bytes.NewReader([]byte(c.text)), c.bank); !errors.Is(err, ErrPCRFile) {
			t.Errorf("%q: got %v, want ErrPCRFile", c.text, err)
		}
	}
	// AppendPCRFile writes what ParsePCRFile and evmctl read.
	l := generate(t, gen.Config{Records: 3})
	text := AppendPCRFile(nil, l.PCRs[tpmext.SHA256])
	got, err := ParsePCRFile(bytes.NewReader(text), tpmext.SHA256)
	if err != nil || len(got) != tpmext.NumPCRs || !bytes.Equal(got[10], l.PCRs[tpmext.SHA256][10]) {
		t.Fatalf("round trip: %v", err)
	}
}

// TestOptions checks the refusal of invalid options and targets.
func TestOptions(t *testing.T) {
	for _, o := range []Options{{DigestSize: 21}, {DigestSize: 32, ColumnAlg: tpmext.SHA1}, {Order: 7}, {MaxNameLen: -1}, {ColumnAlg: 0x99}, {FirstIndex: -1}} {
		if _, err := ParseEventLog(nil, o); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: got %v", o, err)
		}
	}
	if _, err := ParseEventLog(nil, Options{DigestSize: 32, ColumnAlg: tpmext.SM3_256}); err != nil {
		t.Errorf("an SM3 column: %v", err)
	}
	log := mustParse(t, readFile(t, ibmSHA1), Options{})
	for _, tg := range []Target{{}, {PCRs: Expected{tpmext.SHA1: {}}}, {PCRs: Expected{tpmext.SHA1: {10: []byte{1}}}}, {PCRs: Expected{tpmext.SHA1: {24: make([]byte, 20)}}},
		{Quotes: []QuoteDigest{{Selection: tpmext.Selection{Alg: tpmext.SHA1}, Digest: make([]byte, 32)}}},
		{Quotes: []QuoteDigest{{Selection: tpmext.Selection{Alg: tpmext.SHA1, PCRs: []int{10}}, Digest: make([]byte, 20)}}}} {
		if _, _, err := log.ReplayUntil(tg, ReplayOptions{}); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: got %v", tg, err)
		}
	}
	if _, err := log.Replay(ReplayOptions{Banks: []tpmext.Algorithm{0x99}}); !errors.Is(err, ErrOptions) {
		t.Errorf("unknown bank: %v", err)
	}
	bad := &State{Records: 1, PCRs: tpmext.PCRValues{tpmext.SHA1: make([][]byte, 3)}}
	if _, err := log.Replay(ReplayOptions{From: bad}); !errors.Is(err, ErrState) {
		t.Errorf("short state: %v", err)
	}
}

// TestConcurrentReplays runs replays of one EventLog from several
// goroutines at once (run it with -race): an EventLog is shared freely.
func TestConcurrentReplays(t *testing.T) {
	ks := []int{0, 700, 1500}
	l := generate(t, gen.Config{Records: 1500, ViolationEvery: 13, PCR11Every: 9}, ks...)
	log := mustParse(t, binaryOf(t, l, tpmext.SHA1), Options{})
	var g errgroup.Group
	for i := 0; i < 8; i++ {
		k := ks[i%len(ks)]
		g.Go(func() error {
			vals, _ := l.PCRsAfter(k)
			n, _, err := log.ReplayUntil(Target{PCRs: expect(vals, 10, 11)}, ReplayOptions{Workers: 1 + i%3})
			if err != nil || n != k {
				return fmt.Errorf("ReplayUntil = %d, %v; want %d", n, err, k)
			}
			_, err = log.Verify(expect(l.PCRs, 10, 11), ReplayOptions{Workers: 1 + i%3})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}
