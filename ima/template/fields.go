package template

import (
	"errors"
	"fmt"
	"strings"

	"github.com/imasim/imasim/tpmext"
)

// xattr type bytes (include/linux/integrity.h enum evm_ima_xattr_type).
const (
	XattrIMADigsig       = 0x03 // EVM_IMA_XATTR_DIGSIG
	XattrPortableDigsig  = 0x05 // EVM_XATTR_PORTABLE_DIGSIG
	XattrIMAVerityDigsig = 0x06 // IMA_VERITY_DIGSIG
)

// BootAggregateName is the event name of the boot aggregate record.
const BootAggregateName = "boot_aggregate"

// Event is what a record's fields are built from: the kernel's struct
// ima_event_data with the parts of the inode integrity cache the fields
// read. Build one with NewFileEvent, NewViolationEvent, Layout.BufferEvent
// or Layout.BootAggregateEvent, or fill it in directly.
type Event struct {
	// Name is the event name (ima_event_data.filename): the pathname of a
	// file, or the name of a buffer event.
	Name string
	// HashAlgo and Digest are the measured digest (iint->ima_hash). Unused
	// for violations.
	HashAlgo HashAlgo
	Digest   []byte
	// Verity marks a digest that is an fs-verity digest (the policy rule
	// required fs-verity): d-ngv2 then says "verity".
	Verity bool
	// File is the measured file, nil for buffer events and the boot
	// aggregate. The iuid, igid, imode, evmsig and xattr* fields read it.
	File *File
	// IMAXattr is the security.ima value passed with the event
	// (ima_event_data.xattr_value); nil when there is none.
	IMAXattr []byte
	// Buf is the measured buffer (ima-buf); nil for files.
	Buf []byte
	// Modsig is the file's appended signature, nil if none.
	Modsig *Modsig
	// Violation is the cause of a violation ("ToMToU", "open_writers"), ""
	// for an ordinary measurement. The cause itself is not recorded.
	Violation string

	// boot marks the boot aggregate (the kernel compares the filename
	// pointer with boot_aggregate_name); the d field then recomputes a
	// SHA-1 aggregate from pcrs.
	boot   bool
	pcrs   tpmext.PCRValues
	layout *Layout
}

// File is what the fields read from a measured file besides its digest.
type File struct {
	// Content is the file's data. It is needed only to compute a digest
	// NewFileEvent was not given, and for the "d" field when the digest's
	// algorithm is neither SHA-1 nor MD5 (the kernel re-hashes the file).
	Content []byte
	UID     uint32
	GID     uint32
	Mode    uint16
	// EVMXattr is the security.evm value, nil if absent.
	EVMXattr []byte
	// IMAXattr is the security.ima value, nil if absent. NewFileEvent
	// passes it on as Event.IMAXattr; violations do not.
	IMAXattr []byte
	// Xattrs are the EVM-protected xattrs present on the file, in the
	// order of EVM's configured list (evm_config_xattrnames).
	Xattrs []Xattr
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Modsig is an appended signature (ima_modsig.c).
type Modsig struct {
	// HashAlgo and Digest are the digest of the file without the
	// signature, with the algorithm the signature names.
	HashAlgo HashAlgo
	Digest   []byte
	// Raw is the signature as appended (PKCS#7), the modsig field.
	Raw []byte
}

// ErrFieldInit is wrapped by NewEntry's error when a field cannot be built
// (the kernel's field_init failing: the record is not added).
var ErrFieldInit = errors.New("field init failed")

// NewEntry builds the record the kernel adds for ev with template desc and
// target pcr: every field of desc from ev, then the template digest of
// every slot, or all-zero digests for a violation.
//
// Mirrors security/integrity/ima/ima_api.c:ima_alloc_init_template() and
// the digest step of ima_store_template().
func (l *Layout) NewEntry(desc *Descriptor, pcr uint32, ev *Event) (*Entry, error) {
	if desc == nil || ev == nil {
		return nil, errors.New("template: NewEntry needs a descriptor and an event")
	}
	if strings.IndexByte(ev.Name, 0) >= 0 {
		return nil, fmt.Errorf("template: event name %q contains NUL", ev.Name)
	}
	// All fields share one allocation: first the sizes, then the bytes.
	var buf []byte
	ends := make([]int, desc.NumFields())
	for i := range ends {
		var err error
		buf, err = l.appendField(buf, desc.Field(i), ev)
		if err != nil {
			return nil, fmt.Errorf("template: %s: field %s: %w: %v", desc, desc.Field(i), ErrFieldInit, err)
		}
		ends[i] = len(buf)
	}
	e := &Entry{PCR: pcr, Desc: desc, Fields: make([][]byte, len(ends)), Violation: ev.Violation != ""}
	start := 0
	for i, end := range ends {
		e.Fields[i] = buf[start:end:end]
		start = end
	}
	if err := l.ComputeDigests(e); err != nil {
		return nil, err
	}
	return e, nil
}

// appendField appends field f's stored bytes for ev.
func (l *Layout) appendField(dst []byte, f FieldID, ev *Event) ([]byte, error) {
	switch f {
	case FieldD:
		return l.appendDigestD(dst, ev)
	case FieldN:
		return appendEventName(dst, ev, true), nil
	case FieldNNG:
		return appendEventName(dst, ev, false), nil
	case FieldDNG:
		if ev.Violation != "" {
			return appendDigestField(dst, "", l.hashAlgo, nil), nil
		}
		if err := checkDigest(ev.HashAlgo, ev.Digest); err != nil {
			return nil, err
		}
		return appendDigestField(dst, "", ev.HashAlgo, ev.Digest), nil
	case FieldDNGv2:
		if ev.Violation != "" {
			return appendDigestField(dst, "ima:", l.hashAlgo, nil), nil
		}
		if err := checkDigest(ev.HashAlgo, ev.Digest); err != nil {
			return nil, err
		}
		typ := "ima:"
		if ev.Verity {
			typ = "verity:"
		}
		return appendDigestField(dst, typ, ev.HashAlgo, ev.Digest), nil
	case FieldDModsig:
		// ima_eventdigest_modsig_init()
		if ev.Modsig == nil {
			return dst, nil
		}
		if ev.Violation != "" {
			return appendDigestField(dst, "", HashSHA1, nil), nil
		}
		if !ev.Modsig.HashAlgo.Valid() || len(ev.Modsig.Digest) == 0 {
			return nil, errors.New("appended signature has no digest")
		}
		if err := checkDigest(ev.Modsig.HashAlgo, ev.Modsig.Digest); err != nil {
			return nil, err
		}
		return appendDigestField(dst, "", ev.Modsig.HashAlgo, ev.Modsig.Digest), nil
	case FieldModsig:
		if ev.Modsig == nil {
			return dst, nil
		}
		return append(dst, ev.Modsig.Raw...), nil
	case FieldSig:
		// ima_eventsig_init(): an IMA signature, else the evmsig rules.
		x := ev.IMAXattr
		if len(x) > 0 && (x[0] == XattrIMADigsig || x[0] == XattrIMAVerityDigsig) {
			return append(dst, x...), nil
		}
		return appendEvmsig(dst, ev), nil
	case FieldEvmsig:
		return appendEvmsig(dst, ev), nil
	case FieldBuf:
		return append(dst, ev.Buf...), nil
	case FieldIUID:
		if ev.File == nil {
			return dst, nil
		}
		return l.order.AppendUint32(dst, ev.File.UID), nil
	case FieldIGID:
		if ev.File == nil {
			return dst, nil
		}
		return l.order.AppendUint32(dst, ev.File.GID), nil
	case FieldIMode:
		if ev.File == nil {
			return dst, nil
		}
		return l.order.AppendUint16(dst, ev.File.Mode), nil
	case FieldXattrNames, FieldXattrLengths, FieldXattrValues:
		if ev.File == nil {
			return dst, nil
		}
		return l.appendXattrs(dst, f, ev.File.Xattrs), nil
	}
	return nil, fmt.Errorf("unknown field %v", f)
}

func checkDigest(a HashAlgo, d []byte) error {
	if !a.Valid() {
		return fmt.Errorf("invalid hash algorithm %v", a)
	}
	if len(d) != a.Size() {
		return fmt.Errorf("%v digest has %d bytes, want %d", a, len(d), a.Size())
	}
	return nil
}

// appendDigestField appends "<typ><algo>:" NUL digest; a nil digest (a
// violation) stands for hash_digest_size[algo] zero bytes.
//
// Mirrors security/integrity/ima/ima_template_lib.c:ima_eventdigest_init_common()
// for DATA_FMT_DIGEST_WITH_ALGO and DATA_FMT_DIGEST_WITH_TYPE_AND_ALGO.
func appendDigestField(dst []byte, typ string, algo HashAlgo, digest []byte) []byte {
	dst = append(dst, typ...)
	dst = append(dst, algo.String()...)
	dst = append(dst, ':', 0)
	if digest == nil {
		return append(dst, zeros[:algo.Size()]...)
	}
	return append(dst, digest...)
}

// appendDigestD appends the d field: a digest without algorithm.
//
// Mirrors security/integrity/ima/ima_template_lib.c:ima_eventdigest_init().
func (l *Layout) appendDigestD(dst []byte, ev *Event) ([]byte, error) {
	if ev.Violation != "" {
		return append(dst, zeros[:sha1Size]...), nil
	}
	if ev.HashAlgo == HashSHA1 || ev.HashAlgo == HashMD5 {
		if err := checkDigest(ev.HashAlgo, ev.Digest); err != nil {
			return nil, err
		}
		return append(dst, ev.Digest...), nil
	}
	if ev.boot {
		// Retry the aggregate requesting SHA-1; anything but a SHA-1
		// bank gives 20 zero bytes, as does the absence of a TPM.
		if ev.layout != nil && ev.layout.HasTPM() {
			algo, digest, err := ev.layout.bootAggregate(HashSHA1, ev.pcrs)
			if err == nil && algo == HashSHA1 && digest != nil {
				return append(dst, digest...), nil
			}
		}
		return append(dst, zeros[:sha1Size]...), nil
	}
	if ev.File == nil {
		return nil, errors.New("d needs the file to re-hash it (EINVAL)")
	}
	if ev.File.Content == nil {
		return nil, fmt.Errorf("d needs the file content to re-hash a %v digest", ev.HashAlgo)
	}
	algo := HashSHA1
	if l.hashAlgo == HashMD5 {
		algo = HashMD5
	}
	return append(dst, algo.Sum(ev.File.Content)...), nil
}

// appendEventName appends the n or n-ng field: the name, spaces replaced by
// underscores, and a NUL. For n (limit) a name over 255 characters is
// replaced by the file's base name, or truncated to 255 for events without a
// file.
//
// Mirrors security/integrity/ima/ima_template_lib.c:ima_eventname_init_common()
// and ima_write_template_field_data() with DATA_FMT_STRING.
//
// Differences from Linux:
//   - The base name is the text after the last '/' of Name (the kernel
//     takes the dentry name); a base name over 255 characters, which Linux
//     cannot have, is truncated too.
func appendEventName(dst []byte, ev *Event, limit bool) []byte {
	name := ev.Name
	if limit && len(name) > MaxEventNameLen {
		if ev.File != nil {
			name = name[strings.LastIndexByte(name, '/')+1:]
		}
		if len(name) > MaxEventNameLen {
			name = name[:MaxEventNameLen]
		}
	}
	start := len(dst)
	dst = append(dst, name...)
	for i := start; i < len(dst); i++ {
		if dst[i] == ' ' {
			dst[i] = '_'
		}
	}
	return append(dst, 0)
}

// appendEvmsig appends security.evm when it is a portable signature.
//
// Mirrors security/integrity/ima/ima_template_lib.c:ima_eventevmsig_init().
func appendEvmsig(dst []byte, ev *Event) []byte {
	if ev.File == nil {
		return dst
	}
	x := ev.File.EVMXattr
	if len(x) == 0 || x[0] != XattrPortableDigsig {
		return dst
	}
	return append(dst, x...)
}

// appendXattrs appends the names ('|'-joined, one trailing NUL), lengths
// (u32 each) or values (concatenated) of the present EVM-protected xattrs.
//
// Mirrors security/integrity/evm/evm_main.c:evm_read_protected_xattrs().
func (l *Layout) appendXattrs(dst []byte, f FieldID, xs []Xattr) []byte {
	for i, x := range xs {
		switch f {
		case FieldXattrNames:
			if i > 0 {
				dst[len(dst)-1] = '|'
			}
			dst = append(dst, x.Name...)
			dst = append(dst, 0)
		case FieldXattrLengths:
			dst = l.order.AppendUint32(dst, uint32(len(x.Value)))
		case FieldXattrValues:
			dst = append(dst, x.Value...)
		}
	}
	return dst
}
