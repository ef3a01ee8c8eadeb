package template

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/imasim/imasim/tpmext"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// splitDigestNG splits "sha256:83d1..." into its algorithm and digest.
func splitDigestNG(t testing.TB, s string) (HashAlgo, []byte) {
	t.Helper()
	name, h, ok := strings.Cut(s, ":")
	if !ok {
		t.Fatalf("no algorithm in %q", s)
	}
	a, err := ParseHashAlgo(name)
	if err != nil {
		t.Fatal(err)
	}
	return a, unhex(t, h)
}

// ascii renders slot of e.
func ascii(t testing.TB, e *Entry, slot int, o Order) string {
	t.Helper()
	b, err := e.AppendASCII(nil, slot, o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustLayout(t testing.TB, banks []tpmext.Algorithm, h HashAlgo, o Order) *Layout {
	t.Helper()
	l, err := NewLayout(banks, h, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var sha1Only = []tpmext.Algorithm{tpmext.SHA1}

// TestVectorsASCII rebuilds published ASCII lines (Keylime's
// test_ima_ast.py and ima-evm-utils' tests) from their parts with the constructors, and checks the line byte
// for byte and the SHA-1 template digest it shows.
func TestVectorsASCII(t *testing.T) {
	tests := []struct {
		source string
		line   string
	}{
		{"keylime test_ima_ast.py ima-sig-rsa",
			"10 1e70a3e1af66f42826ad63b761b4cb9c4df195e1 ima-sig sha256:d33d5d13792292e202dbf69a6f1b07bc8a02f01424db8489ba7bb7d43c0290ef /usr/bin/dd 030204f3452d2301009dd340c852f37e35748363586939d4199b6684be27e7c1236ca1528f708372ed9cd52a0d991f66448790f5616ed5bd7f9bbd22193b1e3e54f6bf29a1497945a34d1b418b24f4cbeaef897bf3cebca27065ebb8761b46bc2662fe76f141245b9186a5ac8493c7f4976cf0d6dfc085c3e503e3f771bc3ccb121230db76fd8aba4f45f060ad64ab3afd99b4e52824b9eba12e93e46f9dcb2fa01d9cef89f298a0da02a82a4fb56924afd3e3c277a1302d99f770d488449df2d43eb5b174a0a528827e6877b965c2f0b7c89cf1aa26a7417a892df4c2294e2872d62748b72ea04ecb0689b5d792e615a9bf9d56f6e0f298560bf9441df0a22729c5f23389f028c25f\n"},
		{"keylime test_ima_ast.py ima-sig-ec",
			"10 5d4d5141ccd5066d50dc3f21d79ba02fedc24256 ima-sig sha256:b8ae0b8dd04a5935cd8165aa2260cd11b658bd71629bdb52256a675a1f73907b /usr/bin/zmore 030204531f402500483046022100fe24678d21083ead47660e1a2d553a592d777c478d1b0466de6ed484b54956b3022100cad3adb37f277bbb03544d6107751b4cd4f2289d8353fa36257400a99334d5c3\n"},
		{"keylime test_ima_ast.py ima-sig-missing (trailing space)",
			"10 5426cf3031a43f5bfca183d79950698a95a728f6 ima-sig sha256:f1125b940480d20ad841d26d5ea253edc0704b5ec1548c891edf212cb1a9365e /lib/modules/5.4.48-openpower1/kernel/drivers/usb/common/usb-common.ko \n"},
		{"keylime test_ima_ast.py ima-ng",
			"10 7936eb315fb4e74b99e7d461bc5c96049e1ee092 ima-ng sha1:bc026ae66d81713e4e852465e980784dc96651f8 /usr/lib/systemd/systemd\n"},
		{"keylime test_ima_ast.py ima",
			"10 d7026dc672344d3ee372217bdbc7395947788671 ima 6f66d1d8e2fffcc12dfcb78c04b81fe5b8bbae4e /usr/bin/kmod\n"},
		{"ima-evm-utils sample-ascii_runtime_measurements-pcrs-8-9",
			"10 2e03b3fdb0014fc8bae2a07ca33ae67125b290f3 ima-ng sha256:83d19723ef3b3c05bb8ae70d86b3886c158f2408f1b71ed265886a7b79eb700e boot_aggregate\n"},
		{"ima-evm-utils test_ascii_runtime_measurements 1",
			"10 cf41b43c4031672fcc2bd358b309ad33b977424f ima-ng sha256:f1b4c7c9b27e94569f4c2b64051c452bc609c3cb891dd7fae06b758f8bc83d14 boot_aggregate\n"},
		{"ima-evm-utils test_ascii_runtime_measurements 2",
			"10 983dcd8e6f7c84a1a5f10e762d1850623966ceab ima-ng sha256:ae06e032a65fed8102aff5f8f31c678dcf2eb25b826f77ecb699faa0411f89e0 /init\n"},
		{"ima-evm-utils test_ascii_runtime_measurements 3",
			"10 b6e4d01c73f6e4b698eaf48e7d76a2bae0c02514 ima-ng sha256:4b1764ee112aa8b2a6ae9a3a2f1e272b6601681f610708497673cd49e5bd2f5c /bin/sh\n"},
		{"keylime create-runtime-policy ima-log-sha256 boot_aggregate",
			"10 6309e2c83b7814367bb3912a55e5473454623535 ima-ng sha256:f4845392eca429a4c941a6a07fc32faf843a88c5c3dfa3b9329ab8f4171d9ce3 boot_aggregate\n"},
		{"keylime create-runtime-policy ima-log-sha256",
			"10 80255d9c7dad91ef5f21b18560a47642d6f4d653 ima-ng sha256:96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754 /data\n"},
		{"keylime create-runtime-policy ima-log-sha1",
			"10 edcfbc3299860219161af60b266f8e2fa1fbd0c0 ima-ng sha1:009b0d8ee8fb8d890fa70f9c8e02b3f1eded1509 /data\n"},
		{"keylime create-runtime-policy ima-log-sha384",
			"10 75c0136ea25f6ef9ad3e029fc5ffde6a4d293a07 ima-ng sha384:20393b3e109c55b3128ba761bab1c555d8f39afe118eb1a29929ba8e017e8b2cdfc805c304e10d280604a829145ba6f0 /data\n"},
	}
	l := mustLayout(t, sha1Only, HashSHA1, LittleEndian)
	for _, tc := range tests {
		t.Run(tc.source, func(t *testing.T) {
			parts := strings.Split(strings.TrimSuffix(tc.line, "\n"), " ")
			thash := unhex(t, parts[1])
			var desc *Descriptor
			var ev *Event
			var err error
			switch parts[2] {
			case "ima":
				desc = IMA
				ev, err = NewFileEvent(parts[4], &File{}, HashSHA1, unhex(t, parts[3]))
			default:
				desc = Builtin(parts[2])
				algo, digest := splitDigestNG(t, parts[3])
				f := &File{}
				if desc == IMASig && parts[5] != "" {
					f.IMAXattr = unhex(t, parts[5])
				}
				ev, err = NewFileEvent(parts[4], f, algo, digest)
			}
			if err != nil {
				t.Fatal(err)
			}
			e, err := l.NewEntry(desc, 10, ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Digests[l.SHA1Index()].Value; !bytes.Equal(got, thash) {
				t.Errorf("template digest %x, want %x", got, thash)
			}
			if got := ascii(t, e, l.SHA1Index(), LittleEndian); got != tc.line {
				t.Errorf("line\n got %q\nwant %q", got, tc.line)
			}
		})
	}
}

// TestVectorBuffers checks buffer measurements against published lines:
// the digest is H_ima_hash(buf), computed here, not given.
func TestVectorBuffers(t *testing.T) {
	tests := []struct {
		source string
		banks  []tpmext.Algorithm
		hash   HashAlgo
		name   string
		buf    string
		line   string
	}{
		{"keylime test_ima_ast.py ima-buf", sha1Only, HashSHA1, "device_resume",
			"6e616d653d544553543b757569643d43525950542d5645524954592d39656633326535623635623034343234613561386562343436636630653731332d544553543b63617061636974793d303b6d616a6f723d3235333b6d696e6f723d303b6d696e6f725f636f756e743d313b6e756d5f746172676574733d313b6163746976655f7461626c655f686173683d346565383065333365353635643336333430356634303238393436653837623365396563306335383661666639656630656436663561653762656237326431333b",
			"10 b7862dbbf1383ac6c7cca7f02d981a081aacb1f1 ima-buf sha1:6e0e6fc8a188ef4f059638949adca4d221946906 device_resume 6e616d653d544553543b757569643d43525950542d5645524954592d39656633326535623635623034343234613561386562343436636630653731332d544553543b63617061636974793d303b6d616a6f723d3235333b6d696e6f723d303b6d696e6f725f636f756e743d313b6e756d5f746172676574733d313b6163746976655f7461626c655f686173683d346565383065333365353635643336333430356634303238393436653837623365396563306335383661666639656630656436663561653762656237326431333b\n"},
		{"lore 2026-04-30 kernel_version, no TPM", nil, HashSHA256, "kernel_version",
			hex.EncodeToString([]byte("7.1.0-rc1+")),
			"10 49ab61dd97ea2f759edcb6c6a3387ac67f0aa576 ima-buf sha256:0c907aab3261194f16b0c2a422a82f145bc9b9ecb8fdb633fa43e3e5379f0af2 kernel_version 372e312e302d7263312b\n"},
	}
	for _, tc := range tests {
		t.Run(tc.source, func(t *testing.T) {
			l := mustLayout(t, tc.banks, tc.hash, LittleEndian)
			e, err := l.NewEntry(IMABuf, 10, l.BufferEvent(tc.name, unhex(t, tc.buf), false))
			if err != nil {
				t.Fatal(err)
			}
			if got := ascii(t, e, l.SHA1Index(), LittleEndian); got != tc.line {
				t.Errorf("line\n got %q\nwant %q", got, tc.line)
			}
		})
	}
}

// TestVectorBootAggregates covers the boot aggregates of §11.1 and §11.3.
func TestVectorBootAggregates(t *testing.T) {
	zeroPCRs := func(banks ...tpmext.Algorithm) tpmext.PCRValues {
		v := tpmext.PCRValues{}
		for _, b := range banks {
			for i := 0; i < tpmext.NumPCRs; i++ {
				v[b] = append(v[b], make([]byte, b.Size()))
			}
		}
		return v
	}

	t.Run("no TPM sha256 (lore 2026-04-30; §11.3 sha256 slot)", func(t *testing.T) {
		l := mustLayout(t, nil, HashSHA256, LittleEndian)
		e, err := l.NewBootAggregate(IMANG, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "10 0adefe762c149c7cec19da62f0da1297fcfbffff ima-ng sha256:0000000000000000000000000000000000000000000000000000000000000000 boot_aggregate\n"
		if got := ascii(t, e, l.SHA1Index(), LittleEndian); got != want {
			t.Errorf("line\n got %q\nwant %q", got, want)
		}
		if got, want := hex.EncodeToString(e.Digests[l.HashIndex()].Value), "36f1cd67a730bc4137870c4d00dbc7430b51b1ebdaa130744297cf65339078a0"; got != want {
			t.Errorf("sha256 slot %s, want %s", got, want)
		}
	})
	t.Run("no TPM sha1 (§11.3)", func(t *testing.T) {
		l := mustLayout(t, nil, HashSHA1, LittleEndian)
		e, err := l.NewBootAggregate(IMANG, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "10 1d8d532d463c9f8c205d0df7787669a85f93e260 ima-ng sha1:0000000000000000000000000000000000000000 boot_aggregate\n"
		if got := ascii(t, e, l.SHA1Index(), LittleEndian); got != want {
			t.Errorf("line\n got %q\nwant %q", got, want)
		}
	})
	t.Run("no TPM ima template (§11.3)", func(t *testing.T) {
		l := mustLayout(t, nil, HashSHA1, LittleEndian)
		e, err := l.NewBootAggregate(IMA, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "10 719de8e521439498e9b77f6ed41e230b9821111e ima 0000000000000000000000000000000000000000 boot_aggregate\n"
		if got := ascii(t, e, l.SHA1Index(), LittleEndian); got != want {
			t.Errorf("line\n got %q\nwant %q", got, want)
		}
		// The legacy record: 69 bytes.
		b, err := e.AppendBinary(nil, l.SHA1Index(), LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		wantBin := unhex(t, "0a000000"+"719de8e521439498e9b77f6ed41e230b9821111e"+"03000000"+hex.EncodeToString([]byte("ima"))+
			strings.Repeat("00", 20)+"0e000000"+hex.EncodeToString([]byte("boot_aggregate")))
		if !bytes.Equal(b, wantBin) || len(b) != 69 {
			t.Errorf("binary record\n got %x\nwant %x", b, wantBin)
		}
		if e.BinarySize(20) != 69 {
			t.Errorf("BinarySize = %d, want 69", e.BinarySize(20))
		}
	})
	t.Run("ima template digest (Stack Overflow answer)", func(t *testing.T) {
		l := mustLayout(t, sha1Only, HashSHA1, LittleEndian)
		ev := &Event{Name: BootAggregateName, HashAlgo: HashSHA1, Digest: unhex(t, "0ea26e75253dc2fda7e4210980537d035e2fb9f8")}
		e, err := l.NewEntry(IMA, 10, ev)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := hex.EncodeToString(e.Digests[0].Value), "1ca03ef9cca98b0a04e5b01dabe1ff825ff0280a"; got != want {
			t.Errorf("template digest %s, want %s", got, want)
		}
	})
	t.Run("ten zero sha256 PCRs: the 101-byte record (§7.2, go-ima, §11.3)", func(t *testing.T) {
		l := mustLayout(t, []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, HashSHA256, LittleEndian)
		e, err := l.NewBootAggregate(IMANG, 10, zeroPCRs(tpmext.SHA1, tpmext.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.AppendBinary(nil, l.SHA1Index(), LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		want := unhex(t, "0a000000"+"6bdad7efa602f84ca31ffe3f11ff7c476e25dcdd"+"06000000"+"696d612d6e67"+
			"3f000000"+"28000000"+"7368613235363a00"+"7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"+
			"0f000000"+"626f6f745f616767726567617465"+"00")
		if !bytes.Equal(b, want) || len(b) != 101 {
			t.Errorf("record\n got %x\nwant %x", b, want)
		}
		if got, want := hex.EncodeToString(e.Digests[1].Value), "7b400d2dda1901cf39118a43ceb3837cd1de0b584b757e8ee2cf173c9e1b3444"; got != want {
			t.Errorf("sha256 template digest %s, want %s", got, want)
		}
		if got := e.BinaryRuntimeSize(); got != 101 {
			t.Errorf("BinaryRuntimeSize = %d, want 101", got)
		}
	})
	t.Run("SHA-1 aggregate of ima-evm-utils sample-tpm-2.0-pcrs-8-9 (PCR 0-7)", func(t *testing.T) {
		sha1PCRs := []string{
			"92c1850372e9493929aa9a2e9ea953e21ff1be45", "41c54039ca2750ea60d8ab7c48b142b10aba5667",
			"b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236", "b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236",
			"4c1a19aad90f770956ff5ee00334a2d548b1a350", "a1444a8a9904666165730168b3ae489447d3cef7",
			"b2a83b0ebf2f8374299a5b2bdfc31ea955ad7236", "5c6327a67ff36f138e0b7bb1d2eafbf8a6e52ebf",
			"fed489d2e5f9f85136e5ff53553d5f8b978dbe1a", "a2fa191f2622bb014702013bfebfca9fe210d9e5",
		}
		pcrs := tpmext.PCRValues{}
		for _, s := range sha1PCRs {
			pcrs[tpmext.SHA1] = append(pcrs[tpmext.SHA1], unhex(t, s))
		}
		l := mustLayout(t, sha1Only, HashSHA256, LittleEndian)
		ev, err := l.BootAggregateEvent(pcrs)
		if err != nil {
			t.Fatal(err)
		}
		if ev.HashAlgo != HashSHA1 || hex.EncodeToString(ev.Digest) != "902992f8f550b797165537c7e8ab9a2f2170321d" {
			t.Errorf("aggregate %v:%x, want sha1:902992f8f550b797165537c7e8ab9a2f2170321d", ev.HashAlgo, ev.Digest)
		}
	})
}

// TestVectorViolationAndEmptyFile: the violation line format (§3) and the
// empty /run/utmp of the lore mail, whose template digest is published as a
// prefix only.
func TestVectorViolationAndEmptyFile(t *testing.T) {
	l := mustLayout(t, nil, HashSHA256, LittleEndian)
	e, err := l.NewEntry(IMANG, 10, NewViolationEvent("/tmp/file", &File{}, "ToMToU"))
	if err != nil {
		t.Fatal(err)
	}
	want := "10 " + strings.Repeat("0", 40) + " ima-ng sha256:" + strings.Repeat("0", 64) + " /tmp/file\n"
	if got := ascii(t, e, l.SHA1Index(), LittleEndian); got != want {
		t.Errorf("violation line\n got %q\nwant %q", got, want)
	}

	ev, err := NewFileEvent("/run/utmp", &File{Content: []byte{}}, HashSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err = l.NewEntry(IMANG, 10, ev)
	if err != nil {
		t.Fatal(err)
	}
	line := ascii(t, e, l.SHA1Index(), LittleEndian)
	if !strings.HasPrefix(line, "10 22c48b48") || !strings.HasSuffix(line, " ima-ng sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 /run/utmp\n") {
		t.Errorf("empty file line %q, want template digest 22c48b48…", line)
	}
}
