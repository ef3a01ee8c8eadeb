// Package gen builds measurement lists the way the kernel would, with the
// PCR values a TPM holds after them, for the tests, the agreement checks
// against evmctl and the speed comparison of package eventlog.
//
// No kernel counterpart as a whole: records come from
// template.Layout.NewEntry (the kernel's record construction) and the PCR
// values from a tpmext.Software TPM extended with Layout.ExtendDigests, so
// the expected values do not depend on eventlog's replay.
package gen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// Config describes a list to generate.
type Config struct {
	// Records is the number of records, the boot aggregate included.
	Records int
	// Templates are cycled over the records after the boot aggregate
	// (which uses the first); default ima-ng.
	Templates []*template.Descriptor
	// Banks are the TPM's banks; default SHA-1 and SHA-256.
	Banks []tpmext.Algorithm
	// Hash is ima_hash; default sha256 (HashMD4, the zero value, is not
	// implementable and means the default).
	Hash template.HashAlgo
	// Order is the kernel's byte order.
	Order template.Order
	// ViolationEvery makes every k-th record a violation (0: none).
	ViolationEvery int
	// PCR11Every puts every k-th file record into PCR 11, as a policy
	// rule with pcr=11 would (0: all in PCR 10).
	PCR11Every int
	// Pre58 extends like kernels before v5.8: the SHA-1 template digest
	// zero-padded into every bank (violations 0xFF×20 then zeros).
	Pre58 bool
	// Seed makes the list reproducible.
	Seed uint64
}

// List is a generated list.
type List struct {
	Layout  *template.Layout
	Entries []*template.Entry
	// PCRs are the TPM's PCRs after every entry was extended.
	PCRs tpmext.PCRValues
	// snaps holds the PCRs after the first k entries, for the k passed
	// to Generate.
	snaps map[int]tpmext.PCRValues
}

// Generate builds the list; snapshots lists record counts after which the
// PCR values are kept (List.PCRsAfter).
func Generate(cfg Config, snapshots ...int) (*List, error) {
	if cfg.Records < 1 {
		return nil, fmt.Errorf("gen: need at least one record")
	}
	if len(cfg.Templates) == 0 {
		cfg.Templates = []*template.Descriptor{template.IMANG}
	}
	if len(cfg.Banks) == 0 {
		cfg.Banks = []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	}
	if cfg.Hash == template.HashMD4 {
		cfg.Hash = template.HashSHA256
	}
	layout, err := template.NewLayout(cfg.Banks, cfg.Hash, cfg.Order)
	if err != nil {
		return nil, err
	}
	tpm, err := tpmext.NewSoftware(cfg.Banks...)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x696d6173696d))
	l := &List{Layout: layout, snaps: map[int]tpmext.PCRValues{}}
	want := map[int]bool{}
	for _, k := range snapshots {
		want[k] = true
	}
	snap := func() error {
		if want[len(l.Entries)] {
			v, err := tpm.ReadPCRs()
			if err != nil {
				return err
			}
			l.snaps[len(l.Entries)] = v
		}
		return nil
	}
	if err := snap(); err != nil {
		return nil, err
	}
	pcrs, err := tpm.ReadPCRs()
	if err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Records; i++ {
		desc := cfg.Templates[max(i-1, 0)%len(cfg.Templates)]
		var e *template.Entry
		switch {
		case i == 0:
			e, err = layout.NewBootAggregate(desc, 10, pcrs)
		case cfg.ViolationEvery > 0 && i%cfg.ViolationEvery == 0:
			e, err = layout.NewEntry(desc, 10, template.NewViolationEvent(fmt.Sprintf("/var/log/violated-%d.log", i), nil, "ToMToU"))
		default:
			pcr := uint32(10)
			if cfg.PCR11Every > 0 && i%cfg.PCR11Every == 0 {
				pcr = 11
			}
			e, err = fileEntry(layout, desc, pcr, i, rng)
		}
		if err != nil {
			return nil, fmt.Errorf("gen: record %d: %w", i, err)
		}
		ds, err := extendDigests(layout, e, cfg.Pre58)
		if err != nil {
			return nil, err
		}
		if err := tpm.Extend(int(e.PCR), ds); err != nil {
			return nil, err
		}
		l.Entries = append(l.Entries, e)
		if err := snap(); err != nil {
			return nil, err
		}
	}
	if l.PCRs, err = tpm.ReadPCRs(); err != nil {
		return nil, err
	}
	return l, nil
}

// extendDigests returns what the kernel extends for e: the per-bank
// digests (Layout.ExtendDigests), or before v5.8 the SHA-1 digest padded.
func extendDigests(l *template.Layout, e *template.Entry, pre58 bool) ([]tpmext.Digest, error) {
	if !pre58 {
		return l.ExtendDigests(e)
	}
	sha1 := e.Digests[l.SHA1Index()].Value
	var out []tpmext.Digest
	for _, b := range l.Banks() {
		v := make([]byte, b.Size())
		if e.Violation {
			for j := 0; j < 20; j++ {
				v[j] = 0xff
			}
		} else {
			copy(v, sha1)
		}
		out = append(out, tpmext.Digest{Alg: b, Value: v})
	}
	return out, nil
}

var dirs = []string{"/usr/bin", "/usr/lib64", "/etc", "/usr/libexec/a-rather-long-directory-name", "/opt/app"}

// fileEntry measures a made-up file for record i.
func fileEntry(l *template.Layout, desc *template.Descriptor, pcr uint32, i int, rng *rand.Rand) (*template.Entry, error) {
	content := make([]byte, 16+rng.IntN(48))
	for j := range content {
		content[j] = byte(rng.Uint32())
	}
	f := &template.File{Content: content, UID: uint32(rng.IntN(2000)), GID: uint32(rng.IntN(2000)), Mode: 0o100644}
	path := fmt.Sprintf("%s/file-%d.%s", dirs[i%len(dirs)], i, strings.Repeat("x", rng.IntN(12)))
	if desc == template.IMABuf || strings.Contains(desc.Fmt(), "buf") {
		return l.NewEntry(desc, pcr, l.BufferEvent(fmt.Sprintf("buffer-%d", i), content, i%3 == 0))
	}
	if i%2 == 0 { // half the files are signed
		sig := []byte{template.XattrIMADigsig, 2, byte(template.HashSHA256), 0xa3, 0x20, 0x4a, 0x9e}
		s := make([]byte, 64+rng.IntN(8))
		for j := range s {
			s[j] = byte(rng.Uint32())
		}
		sig = binary.BigEndian.AppendUint16(sig, uint16(len(s)))
		f.IMAXattr = append(sig, s...)
		f.EVMXattr = append([]byte{template.XattrPortableDigsig, 2}, s[:32]...)
		f.Xattrs = []template.Xattr{{Name: "security.ima", Value: f.IMAXattr}, {Name: "security.selinux", Value: []byte("system_u:object_r:bin_t:s0\x00")}}
	}
	ev, err := template.NewFileEvent(path, f, l.HashAlgo(), nil)
	if err != nil {
		return nil, err
	}
	if desc.HasModsig() && i%3 == 0 {
		raw := make([]byte, 40)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		ev.Modsig = &template.Modsig{HashAlgo: template.HashSHA256, Digest: template.HashSHA256.Sum(raw), Raw: raw}
	}
	return l.NewEntry(desc, pcr, ev)
}

// Slot returns the slot whose list file shows bank's column (the SHA-1
// slot for SHA-1, which the legacy files show).
func (l *List) Slot(bank tpmext.Algorithm) (int, error) {
	if bank == tpmext.SHA1 {
		return l.Layout.SHA1Index(), nil
	}
	for i := 0; i < l.Layout.NumSlots(); i++ {
		if s := l.Layout.Slot(i); s.Bank == bank && s.Size == bank.Size() {
			return i, nil
		}
	}
	return 0, fmt.Errorf("gen: no slot for bank %v", bank)
}

// Binary returns binary_runtime_measurements_<bank> (for SHA-1 also the
// legacy binary_runtime_measurements).
func (l *List) Binary(bank tpmext.Algorithm) ([]byte, error) {
	slot, err := l.Slot(bank)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range l.Entries {
		if out, err = e.AppendBinary(out, slot, l.Layout.Order()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ASCII returns ascii_runtime_measurements_<bank>.
func (l *List) ASCII(bank tpmext.Algorithm) ([]byte, error) {
	slot, err := l.Slot(bank)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range l.Entries {
		if out, err = e.AppendASCII(out, slot, l.Layout.Order()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PCRsAfter returns the PCR values after the first k records, for a k
// passed to Generate.
func (l *List) PCRsAfter(k int) (tpmext.PCRValues, bool) {
	v, ok := l.snaps[k]
	return v, ok
}
