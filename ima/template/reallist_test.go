package template

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

// The IBM TSS sample lists: the same 362 ima-sig records, with the SHA-1
// (sha1.log) and the SHA-256 (sha256.log) template-digest column. See
// testdata/ibmtss/README.md at the module root.
const (
	ibmSHA1   = "../../testdata/ibmtss/sha1.log"
	ibmSHA256 = "../../testdata/ibmtss/sha256.log"
	ibmPCR10  = "../../testdata/ibmtss/imakvtpcr10.txt"
	ibmCount  = 362
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var ibmLists = []struct {
	file string
	alg  tpmext.Algorithm
	algo HashAlgo
}{
	{ibmSHA1, tpmext.SHA1, HashSHA1},
	{ibmSHA256, tpmext.SHA256, HashSHA256},
}

func TestRealListsRoundTrip(t *testing.T) {
	for _, l := range ibmLists {
		t.Run(l.file, func(t *testing.T) {
			data := readFile(t, l.file)
			opts := DecodeOptions{DigestSize: l.algo.Size(), Alg: l.alg}
			entries, err := DecodeAll(data, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != ibmCount {
				t.Fatalf("decoded %d records, want %d", len(entries), ibmCount)
			}
			var out, ascii []byte
			for i, e := range entries {
				if e.Desc != IMASig {
					t.Fatalf("record %d: template %s, want ima-sig", i, e.Desc)
				}
				if e.PCR != 10 {
					t.Fatalf("record %d: PCR %d, want 10", i, e.PCR)
				}
				if got := e.BinarySize(l.algo.Size()); got != 4+l.algo.Size()+4+len("ima-sig")+4+e.TemplateDataLen() {
					t.Fatalf("record %d: BinarySize %d", i, got)
				}
				out, err = e.AppendBinary(out, 0, LittleEndian)
				if err != nil {
					t.Fatal(err)
				}
				d, err := e.TemplateDigest(l.algo, LittleEndian)
				if err != nil {
					t.Fatal(err)
				}
				if allZero(e.Digests[0].Value) {
					t.Errorf("record %d: violation in a list that has none", i)
				} else if !bytes.Equal(d, e.Digests[0].Value) {
					t.Errorf("record %d: template digest %x, list says %x", i, d, e.Digests[0].Value)
				}
				ascii, err = e.AppendASCII(ascii, 0, LittleEndian)
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("re-encoded list differs from the original (%d vs %d bytes)", len(out), len(data))
			}
			lines := strings.Split(strings.TrimSuffix(string(ascii), "\n"), "\n")
			if len(lines) != ibmCount {
				t.Fatalf("%d ASCII lines, want %d", len(lines), ibmCount)
			}
			want := "10 " + hex.EncodeToString(entries[0].Digests[0].Value) + " ima-sig sha256:8c84a9518e30ce8b12c9c54f54d805808551efccb15728c9453343a802ef5257 boot_aggregate \n"
			if got := lines[0] + "\n"; got != want {
				t.Errorf("first line\n got %q\nwant %q", got, want)
			}

			// The streaming decoder yields the same records.
			dec, err := NewDecoder(bytes.NewReader(data), opts)
			if err != nil {
				t.Fatal(err)
			}
			var again []byte
			for {
				e, err := dec.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				again, _ = e.AppendBinary(again, 0, LittleEndian)
			}
			if dec.Index() != ibmCount || dec.Offset() != int64(len(data)) || !bytes.Equal(again, data) {
				t.Fatalf("stream: %d records, offset %d, equal %v", dec.Index(), dec.Offset(), bytes.Equal(again, data))
			}
		})
	}
}

// TestRealListsReplay replays PCR 10 of the four banks the IBM TSS
// recorded (imakvtpcr10.txt: sha1, sha256, sha384, sha512) from the
// template data of the list: PCR_b = H_b(PCR_b || H_b(template data)).
func TestRealListsReplay(t *testing.T) {
	entries, err := DecodeAll(readFile(t, ibmSHA1), DecodeOptions{DigestSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	want := parsePCR10(t, readFile(t, ibmPCR10))
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512}
	if len(want) != len(banks) {
		t.Fatalf("%s holds %d values, want %d", ibmPCR10, len(want), len(banks))
	}
	l, err := NewLayout(banks, HashSHA256, LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	pcr := make([][]byte, len(banks))
	for i, b := range banks {
		pcr[i] = make([]byte, b.Size())
	}
	for _, rec := range entries {
		e, err := l.RestoreEntry(rec)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := l.ExtendDigests(e)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range ext {
			pcr[i] = d.Alg.Sum(pcr[i], d.Value)
		}
	}
	for i, b := range banks {
		if !bytes.Equal(pcr[i], want[i]) {
			t.Errorf("PCR 10 %v = %x, want %x", b, pcr[i], want[i])
		}
	}
}

// parsePCR10 reads the " PCR 10: 9b e6 ..." lines.
func parsePCR10(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		_, v, ok := strings.Cut(s.Text(), "PCR 10:")
		if !ok {
			continue
		}
		d, err := hex.DecodeString(strings.ReplaceAll(v, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}
