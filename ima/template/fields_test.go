package template

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

// oneField builds an entry of the one-field custom template id from ev and
// returns the field's bytes and its ASCII rendering (the text after the
// template name, without the separating space and the newline).
func oneField(t *testing.T, l *Layout, id string, ev *Event) ([]byte, string, error) {
	t.Helper()
	desc, err := ParseFmt(id)
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.NewEntry(desc, 10, ev)
	if err != nil {
		return nil, "", err
	}
	line := ascii(t, e, 0, l.Order())
	prefix := "10 " + hex.EncodeToString(e.Digests[0].Value) + " " + id + " "
	if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, "\n") {
		t.Fatalf("line %q does not start with %q", line, prefix)
	}
	return e.Fields[0], strings.TrimSuffix(strings.TrimPrefix(line, prefix), "\n"), nil
}

func TestFieldBytes(t *testing.T) {
	sha256Digest := HashSHA256.Sum([]byte("content"))
	sha1Digest := HashSHA1.Sum([]byte("content"))
	md5Digest := HashMD5.Sum([]byte("content"))
	sig := append([]byte{0x03, 0x02, 0x04, 1, 2, 3, 4, 0, 2}, 0xaa, 0xbb)
	veritySig := []byte{0x06, 0x03, 0x04, 9}
	evmPortable := []byte{0x05, 0x02, 0x04, 7, 7}
	file := func() *File {
		return &File{
			Content: []byte("content"), UID: 1000, GID: 0x01020304, Mode: 0o100644,
			Xattrs: []Xattr{{"security.selinux", []byte("system_u:object_r:bin_t:s0\x00")}, {"security.ima", sig}},
		}
	}
	fileEv := func(algo HashAlgo, digest []byte) *Event {
		ev, err := NewFileEvent("/usr/bin/a b", file(), algo, digest)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	long := "/" + strings.Repeat("d", 200) + "/" + strings.Repeat("f", 100) // 302 characters
	type tc struct {
		name  string
		hash  HashAlgo // ima_hash of the layout
		order Order
		id    string
		ev    *Event
		data  string // hex of the stored bytes
		ascii string
		err   string
	}
	h := hex.EncodeToString
	le32 := func(v uint32) string { return h(binary.LittleEndian.AppendUint32(nil, v)) }
	be32 := func(v uint32) string { return h(binary.BigEndian.AppendUint32(nil, v)) }
	tests := []tc{
		// d: SHA-1 and MD5 digests as they are; others re-hashed.
		{"d sha1", HashSHA1, LittleEndian, "d", fileEv(HashSHA1, sha1Digest), h(sha1Digest), h(sha1Digest), ""},
		{"d md5 is 16 bytes", HashMD5, LittleEndian, "d", fileEv(HashMD5, md5Digest), h(md5Digest), h(md5Digest), ""},
		{"d sha256 re-hashed with sha1", HashSHA256, LittleEndian, "d", fileEv(HashSHA256, sha256Digest), h(sha1Digest), h(sha1Digest), ""},
		{"d sha256 re-hashed with ima_hash md5", HashMD5, LittleEndian, "d", fileEv(HashSHA256, sha256Digest), h(md5Digest), h(md5Digest), ""},
		{"d violation", HashSHA256, LittleEndian, "d", NewViolationEvent("/x", file(), "ToMToU"), strings.Repeat("00", 20), strings.Repeat("00", 20), ""},
		{"d buffer with sha256", HashSHA256, LittleEndian, "d", &Event{Name: "kernel_version", HashAlgo: HashSHA256, Digest: sha256Digest, Buf: []byte("x")}, "", "", "d needs the file"},
		{"d without content", HashSHA256, LittleEndian, "d", &Event{Name: "/x", HashAlgo: HashSHA256, Digest: sha256Digest, File: &File{}}, "", "", "needs the file content"},
		{"d wrong digest size", HashSHA1, LittleEndian, "d", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: []byte{1}}, "", "", "digest has 1 bytes, want 20"},

		// n: NUL, underscores, 255-byte rule.
		{"n spaces", HashSHA1, LittleEndian, "n", fileEv(HashSHA1, sha1Digest), h([]byte("/usr/bin/a_b\x00")), "/usr/bin/a_b", ""},
		{"n long with file: base name", HashSHA1, LittleEndian, "n", &Event{Name: long, HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{}}, h([]byte(strings.Repeat("f", 100) + "\x00")), strings.Repeat("f", 100), ""},
		{"n long without file: truncated", HashSHA1, LittleEndian, "n", &Event{Name: long, HashAlgo: HashSHA1, Digest: sha1Digest}, h([]byte(long[:255] + "\x00")), long[:255], ""},
		{"n exactly 255", HashSHA1, LittleEndian, "n", &Event{Name: long[:255], HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{}}, h([]byte(long[:255] + "\x00")), long[:255], ""},
		{"n-ng no limit", HashSHA1, LittleEndian, "n-ng", &Event{Name: long + " x", HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{}}, h([]byte(long + "_x\x00")), long + "_x", ""},
		{"n-ng empty name", HashSHA1, LittleEndian, "n-ng", &Event{Name: "", HashAlgo: HashSHA1, Digest: sha1Digest}, "00", "", ""},

		// d-ng, d-ngv2.
		{"d-ng sha256", HashSHA1, LittleEndian, "d-ng", fileEv(HashSHA256, sha256Digest), h([]byte("sha256:\x00")) + h(sha256Digest), "sha256:" + h(sha256Digest), ""},
		{"d-ng sha1 keeps its prefix", HashSHA1, LittleEndian, "d-ng", fileEv(HashSHA1, sha1Digest), h([]byte("sha1:\x00")) + h(sha1Digest), "sha1:" + h(sha1Digest), ""},
		{"d-ng sm3", HashSHA1, LittleEndian, "d-ng", fileEv(HashSM3_256, HashSM3_256.Sum([]byte("content"))), h([]byte("sm3:\x00")) + h(HashSM3_256.Sum([]byte("content"))), "sm3:" + h(HashSM3_256.Sum([]byte("content"))), ""},
		{"d-ng sha3-256", HashSHA1, LittleEndian, "d-ng", fileEv(HashSHA3_256, HashSHA3_256.Sum([]byte("content"))), h([]byte("sha3-256:\x00")) + h(HashSHA3_256.Sum([]byte("content"))), "sha3-256:" + h(HashSHA3_256.Sum([]byte("content"))), ""},
		{"d-ng violation uses ima_hash", HashSHA384, LittleEndian, "d-ng", NewViolationEvent("/x", nil, ""), h([]byte("sha384:\x00")) + strings.Repeat("00", 48), "sha384:" + strings.Repeat("00", 48), ""},
		{"d-ngv2 ima", HashSHA1, LittleEndian, "d-ngv2", fileEv(HashSHA256, sha256Digest), h([]byte("ima:sha256:\x00")) + h(sha256Digest), "ima:sha256:" + h(sha256Digest), ""},
		{"d-ngv2 verity", HashSHA1, LittleEndian, "d-ngv2", &Event{Name: "/x", HashAlgo: HashSHA256, Digest: sha256Digest, Verity: true}, h([]byte("verity:sha256:\x00")) + h(sha256Digest), "verity:sha256:" + h(sha256Digest), ""},
		{"d-ngv2 violation ignores verity", HashSHA256, LittleEndian, "d-ngv2", &Event{Name: "/x", Verity: true, Violation: "ToMToU"}, h([]byte("ima:sha256:\x00")) + strings.Repeat("00", 32), "ima:sha256:" + strings.Repeat("00", 32), ""},
		{"d-ng invalid algo", HashSHA1, LittleEndian, "d-ng", &Event{Name: "/x", HashAlgo: HashAlgoLast}, "", "", "invalid hash algorithm"},

		// sig: IMA signatures, else EVM portable signatures, else nothing.
		{"sig digsig", HashSHA1, LittleEndian, "sig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, IMAXattr: sig}, h(sig), h(sig), ""},
		{"sig from NewFileEvent", HashSHA1, LittleEndian, "sig", func() *Event {
			f := file()
			f.IMAXattr = sig
			ev, _ := NewFileEvent("/x", f, HashSHA1, sha1Digest)
			return ev
		}(), h(sig), h(sig), ""},
		{"sig verity digsig", HashSHA1, LittleEndian, "sig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, IMAXattr: veritySig}, h(veritySig), h(veritySig), ""},
		{"sig hash xattr falls back to evm portable", HashSHA1, LittleEndian, "sig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, IMAXattr: []byte{0x04, 0x04, 1}, File: &File{EVMXattr: evmPortable}}, h(evmPortable), h(evmPortable), ""},
		{"sig hash xattr, evm hmac: empty", HashSHA1, LittleEndian, "sig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, IMAXattr: []byte{0x04, 0x04, 1}, File: &File{EVMXattr: []byte{0x02, 1, 2}}}, "", "", ""},
		{"sig violation: no ima xattr, evm portable", HashSHA1, LittleEndian, "sig", NewViolationEvent("/x", &File{IMAXattr: sig, EVMXattr: evmPortable}, "ToMToU"), h(evmPortable), h(evmPortable), ""},
		{"sig nothing", HashSHA1, LittleEndian, "sig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest}, "", "", ""},
		{"evmsig portable", HashSHA1, LittleEndian, "evmsig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{EVMXattr: evmPortable}}, h(evmPortable), h(evmPortable), ""},
		{"evmsig ima digsig type is not portable", HashSHA1, LittleEndian, "evmsig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{EVMXattr: sig}}, "", "", ""},
		{"evmsig no file", HashSHA1, LittleEndian, "evmsig", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest}, "", "", ""},

		// buf, modsig, d-modsig.
		{"buf", HashSHA1, LittleEndian, "buf", &Event{Name: "x", HashAlgo: HashSHA1, Digest: sha1Digest, Buf: []byte("7.1.0")}, h([]byte("7.1.0")), h([]byte("7.1.0")), ""},
		{"buf none", HashSHA1, LittleEndian, "buf", fileEv(HashSHA1, sha1Digest), "", "", ""},
		{"modsig", HashSHA1, LittleEndian, "modsig", &Event{Name: "/m.ko", HashAlgo: HashSHA1, Digest: sha1Digest, Modsig: &Modsig{HashAlgo: HashSHA256, Digest: sha256Digest, Raw: []byte{0x30, 0x82}}}, "3082", "3082", ""},
		{"modsig none", HashSHA1, LittleEndian, "modsig", fileEv(HashSHA1, sha1Digest), "", "", ""},
		{"d-modsig", HashSHA1, LittleEndian, "d-modsig", &Event{Name: "/m.ko", HashAlgo: HashSHA1, Digest: sha1Digest, Modsig: &Modsig{HashAlgo: HashSHA256, Digest: sha256Digest, Raw: []byte{0x30}}}, h([]byte("sha256:\x00")) + h(sha256Digest), "sha256:" + h(sha256Digest), ""},
		{"d-modsig none", HashSHA1, LittleEndian, "d-modsig", fileEv(HashSHA1, sha1Digest), "", "", ""},
		{"d-modsig violation with modsig", HashSHA256, LittleEndian, "d-modsig", &Event{Name: "/m.ko", Violation: "ToMToU", Modsig: &Modsig{HashAlgo: HashSHA256, Digest: sha256Digest}}, h([]byte("sha1:\x00")) + strings.Repeat("00", 20), "sha1:" + strings.Repeat("00", 20), ""},
		{"d-modsig without digest", HashSHA1, LittleEndian, "d-modsig", &Event{Name: "/m.ko", HashAlgo: HashSHA1, Digest: sha1Digest, Modsig: &Modsig{HashAlgo: HashSHA256}}, "", "", "no digest"},

		// Integers in the kernel's byte order; rendered in decimal.
		{"iuid le", HashSHA1, LittleEndian, "iuid", fileEv(HashSHA1, sha1Digest), le32(1000), "1000", ""},
		{"iuid be", HashSHA1, BigEndian, "iuid", fileEv(HashSHA1, sha1Digest), be32(1000), "1000", ""},
		{"igid le", HashSHA1, LittleEndian, "igid", fileEv(HashSHA1, sha1Digest), "04030201", "16909060", ""},
		{"igid be", HashSHA1, BigEndian, "igid", fileEv(HashSHA1, sha1Digest), "01020304", "16909060", ""},
		{"imode le", HashSHA1, LittleEndian, "imode", fileEv(HashSHA1, sha1Digest), "a481", "33188", ""},
		{"imode be", HashSHA1, BigEndian, "imode", fileEv(HashSHA1, sha1Digest), "81a4", "33188", ""},
		{"iuid no file", HashSHA1, LittleEndian, "iuid", &Event{Name: "x", HashAlgo: HashSHA1, Digest: sha1Digest}, "", "", ""},
		{"imode no file", HashSHA1, LittleEndian, "imode", &Event{Name: "x", HashAlgo: HashSHA1, Digest: sha1Digest}, "", "", ""},

		// EVM-protected xattrs.
		{"xattrnames", HashSHA1, LittleEndian, "xattrnames", fileEv(HashSHA1, sha1Digest), h([]byte("security.selinux|security.ima\x00")), "security.selinux|security.ima", ""},
		{"xattrlengths le", HashSHA1, LittleEndian, "xattrlengths", fileEv(HashSHA1, sha1Digest), le32(27) + le32(uint32(len(sig))), le32(27) + le32(uint32(len(sig))), ""},
		{"xattrlengths be", HashSHA1, BigEndian, "xattrlengths", fileEv(HashSHA1, sha1Digest), be32(27) + be32(uint32(len(sig))), be32(27) + be32(uint32(len(sig))), ""},
		{"xattrvalues", HashSHA1, LittleEndian, "xattrvalues", fileEv(HashSHA1, sha1Digest), h([]byte("system_u:object_r:bin_t:s0\x00")) + h(sig), h([]byte("system_u:object_r:bin_t:s0\x00")) + h(sig), ""},
		{"xattrnames none", HashSHA1, LittleEndian, "xattrnames", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{}}, "", "", ""},
		{"xattrnames one", HashSHA1, LittleEndian, "xattrnames", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest, File: &File{Xattrs: []Xattr{{"security.ima", nil}}}}, h([]byte("security.ima\x00")), "security.ima", ""},
		{"xattrlengths none", HashSHA1, LittleEndian, "xattrlengths", &Event{Name: "/x", HashAlgo: HashSHA1, Digest: sha1Digest}, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustLayout(t, sha1Only, tc.hash, tc.order)
			data, text, err := oneField(t, l, tc.id, tc.ev)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrFieldInit) {
					t.Fatalf("err = %v, want one containing %q wrapping ErrFieldInit", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(data); got != tc.data {
				t.Errorf("stored bytes\n got %s\nwant %s", got, tc.data)
			}
			if text != tc.ascii {
				t.Errorf("ASCII\n got %q\nwant %q", text, tc.ascii)
			}
		})
	}
}

// TestNameWithNUL: kernel strings cannot hold NUL; such a name is refused.
func TestNameWithNUL(t *testing.T) {
	l := mustLayout(t, nil, HashSHA256, LittleEndian)
	if _, err := l.NewEntry(IMANG, 10, l.BufferEvent("a\x00b", nil, false)); err == nil {
		t.Error("name with NUL accepted")
	}
	if _, err := l.NewEntry(nil, 10, l.BufferEvent("a", nil, false)); err == nil {
		t.Error("nil descriptor accepted")
	}
}

// TestASCIIEdgeCases renders bytes the kernel never builds but a decoded
// list may hold, and the PCR column.
func TestASCIIEdgeCases(t *testing.T) {
	custom := func(f string) *Descriptor { d, _ := ParseFmt(f); return d }
	tests := []struct {
		name string
		e    *Entry
		want string
	}{
		{"pcr 8 is padded", &Entry{PCR: 8, Desc: custom("n-ng"), Fields: [][]byte{[]byte("x\x00")}}, " 8 00 n-ng x\n"},
		{"pcr 0", &Entry{PCR: 0, Desc: custom("n-ng"), Fields: [][]byte{[]byte("x\x00")}}, " 0 00 n-ng x\n"},
		{"pcr 123", &Entry{PCR: 123, Desc: custom("n-ng"), Fields: [][]byte{[]byte("x\x00")}}, "123 00 n-ng x\n"},
		{"pcr is an int", &Entry{PCR: 0xffffffff, Desc: custom("n-ng"), Fields: [][]byte{[]byte("x\x00")}}, "-1 00 n-ng x\n"},
		{"string without NUL", &Entry{Desc: custom("n-ng"), Fields: [][]byte{[]byte("abc")}}, " 0 00 n-ng abc\n"},
		{"string stops at NUL", &Entry{Desc: custom("n-ng"), Fields: [][]byte{[]byte("ab\x00cd")}}, " 0 00 n-ng ab\n"},
		{"d-ng without colon: hex", &Entry{Desc: custom("d-ng"), Fields: [][]byte{[]byte("ab")}}, " 0 00 d-ng 6162\n"},
		{"d-ng colon first: no prefix", &Entry{Desc: custom("d-ng"), Fields: [][]byte{{':', 0, 0xab}}}, " 0 00 d-ng ab\n"},
		{"d-ng colon at the end", &Entry{Desc: custom("d-ng"), Fields: [][]byte{[]byte("sha1:")}}, " 0 00 d-ng sha1:\n"},
		{"d-ng no digest", &Entry{Desc: custom("d-ng"), Fields: [][]byte{[]byte("sha1:\x00")}}, " 0 00 d-ng sha1:\n"},
		{"uint of 1 byte", &Entry{Desc: custom("iuid"), Fields: [][]byte{{7}}}, " 0 00 iuid 7\n"},
		{"uint of 8 bytes", &Entry{Desc: custom("iuid"), Fields: [][]byte{{1, 0, 0, 0, 0, 0, 0, 1}}}, " 0 00 iuid 72057594037927937\n"},
		{"uint of 3 bytes: nothing", &Entry{Desc: custom("iuid"), Fields: [][]byte{{1, 2, 3}}}, " 0 00 iuid \n"},
		{"empty fields keep their spaces", &Entry{Desc: IMAModsig, Fields: [][]byte{[]byte("sha1:\x00\x01"), []byte("/x\x00"), nil, nil, nil}}, " 0 00 ima-modsig sha1:01 /x   \n"},
	}
	for _, tc := range tests {
		tc.e.Digests = []tpmext.Digest{{Value: []byte{0}}}
		if got := ascii(t, tc.e, 0, LittleEndian); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	e := &Entry{Desc: IMANG, Fields: [][]byte{nil, nil}}
	if _, err := e.AppendASCII(nil, 0, LittleEndian); err == nil {
		t.Error("AppendASCII accepted a missing slot")
	}
	if _, err := e.AppendBinary(nil, -1, LittleEndian); err == nil {
		t.Error("AppendBinary accepted slot -1")
	}
}

// TestByteOrder: a big-endian kernel without ima_canonical_fmt writes every
// integer, the hashed length prefixes included, in big-endian order.
func TestByteOrder(t *testing.T) {
	f := &File{Content: []byte("x"), UID: 1, GID: 2, Mode: 0o100755}
	build := func(o Order) *Entry {
		l := mustLayout(t, sha1Only, HashSHA256, o)
		ev, err := NewFileEvent("/bin/x", f, HashSHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := l.NewEntry(EVMSig, 10, ev)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	le, be := build(LittleEndian), build(BigEndian)
	for _, c := range []struct {
		o Order
		e *Entry
		u func([]byte, uint32) []byte
	}{
		{LittleEndian, le, binary.LittleEndian.AppendUint32},
		{BigEndian, be, binary.BigEndian.AppendUint32},
	} {
		// Hand-built template data: u32 length and data per field.
		var data []byte
		for _, fld := range c.e.Fields {
			data = c.u(data, uint32(len(fld)))
			data = append(data, fld...)
		}
		if got := c.e.Digests[0].Value; !bytes.Equal(got, HashSHA1.Sum(data)) {
			t.Errorf("%v: template digest %x, want SHA-1 of the %v template data", c.o, got, c.o)
		}
		var rec []byte
		rec = c.u(rec, 10)
		rec = append(rec, c.e.Digests[0].Value...)
		rec = c.u(rec, uint32(len("evm-sig")))
		rec = append(rec, "evm-sig"...)
		rec = c.u(rec, uint32(len(data)))
		rec = append(rec, data...)
		got, err := c.e.AppendBinary(nil, 0, c.o)
		if err != nil || !bytes.Equal(got, rec) {
			t.Errorf("%v: record\n got %x\nwant %x", c.o, got, rec)
		}
		// Decoding in the same order gives the same bytes back.
		dec, err := DecodeAll(got, DecodeOptions{Order: c.o, DigestSize: 20})
		if err != nil || len(dec) != 1 {
			t.Fatalf("%v: decode: %v", c.o, err)
		}
		if again, _ := dec[0].AppendBinary(nil, 0, c.o); !bytes.Equal(again, got) {
			t.Errorf("%v: decode/encode changed the record", c.o)
		}
		if line := ascii(t, dec[0], 0, c.o); !strings.HasSuffix(line, " 1 2 33261\n") {
			t.Errorf("%v: line %q does not end with uid 1, gid 2, mode 33261", c.o, line)
		}
	}
	if bytes.Equal(le.Digests[0].Value, be.Digests[0].Value) {
		t.Error("little- and big-endian template digests are equal")
	}
	if !bytes.Equal(le.Fields[0], be.Fields[0]) || !bytes.Equal(le.Fields[1], be.Fields[1]) {
		t.Error("the byte order changed a non-integer field")
	}
	if !bytes.Equal(le.Fields[6], []byte{1, 0, 0, 0}) || !bytes.Equal(be.Fields[6], []byte{0, 0, 0, 1}) {
		t.Errorf("iuid: le %x be %x", le.Fields[6], be.Fields[6])
	}
	if Order(0) != LittleEndian || LittleEndian.String() != "little-endian" || BigEndian.String() != "big-endian" {
		t.Error("Order zero value or names")
	}
}
