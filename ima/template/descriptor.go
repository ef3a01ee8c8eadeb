package template

import (
	"errors"
	"fmt"
	"strings"
)

// FieldID names a template field, as a format string does ("d-ng",
// "n-ng", "sig", ...).
type FieldID uint8

// The supported template fields, in the order of the kernel's
// supported_fields[] table (ima_template.c).
const (
	FieldD            FieldID = iota // "d": digest, at most 20 bytes, no algorithm
	FieldN                           // "n": event name, at most 255 characters
	FieldDNG                         // "d-ng": "<algo>:" NUL digest
	FieldDNGv2                       // "d-ngv2": "<ima|verity>:<algo>:" NUL digest
	FieldNNG                         // "n-ng": event name, no limit
	FieldSig                         // "sig": security.ima signature (or EVM portable signature)
	FieldBuf                         // "buf": measured buffer
	FieldDModsig                     // "d-modsig": digest of the file without its appended signature
	FieldModsig                      // "modsig": appended signature
	FieldEvmsig                      // "evmsig": security.evm portable signature
	FieldIUID                        // "iuid": inode uid
	FieldIGID                        // "igid": inode gid
	FieldIMode                       // "imode": inode mode
	FieldXattrNames                  // "xattrnames": EVM-protected xattr names
	FieldXattrLengths                // "xattrlengths": their lengths
	FieldXattrValues                 // "xattrvalues": their values
	numFields
)

// showKind is the kernel's enum data_formats: how a field is shown in the
// ASCII list.
type showKind uint8

const (
	showDigest         showKind = iota // DATA_FMT_DIGEST
	showDigestWithAlgo                 // DATA_FMT_DIGEST_WITH_ALGO and _WITH_TYPE_AND_ALGO
	showString                         // DATA_FMT_STRING
	showHex                            // DATA_FMT_HEX
	showUint                           // DATA_FMT_UINT
)

var fieldTable = [numFields]struct {
	id   string
	show showKind
}{
	FieldD:            {"d", showDigest},
	FieldN:            {"n", showString},
	FieldDNG:          {"d-ng", showDigestWithAlgo},
	FieldDNGv2:        {"d-ngv2", showDigestWithAlgo},
	FieldNNG:          {"n-ng", showString},
	FieldSig:          {"sig", showHex},
	FieldBuf:          {"buf", showHex},
	FieldDModsig:      {"d-modsig", showDigestWithAlgo},
	FieldModsig:       {"modsig", showHex},
	FieldEvmsig:       {"evmsig", showHex},
	FieldIUID:         {"iuid", showUint},
	FieldIGID:         {"igid", showUint},
	FieldIMode:        {"imode", showUint},
	FieldXattrNames:   {"xattrnames", showString},
	FieldXattrLengths: {"xattrlengths", showHex},
	FieldXattrValues:  {"xattrvalues", showHex},
}

// String returns the field id as written in a format string.
func (f FieldID) String() string {
	if f < numFields {
		return fieldTable[f].id
	}
	return fmt.Sprintf("field(%d)", uint8(f))
}

// Limits of format strings (ima.h).
const (
	// MaxFields is IMA_TEMPLATE_NUM_FIELDS_MAX.
	MaxFields = 15
	// MaxFieldIDLen is IMA_TEMPLATE_FIELD_ID_MAX_LEN.
	MaxFieldIDLen = 16
)

// Descriptor is a template descriptor: a name, a format string and the
// fields the format names. Descriptors are immutable and safe for
// concurrent use; the builtins are package-level singletons.
//
// Mirrors struct ima_template_desc (security/integrity/ima/ima.h).
type Descriptor struct {
	name   string
	fmt    string
	fields []FieldID
	hasSig bool // has a modsig or d-modsig field
}

// Name returns the kernel's name of the descriptor: "ima-ng" for a builtin,
// "" for a custom format.
func (d *Descriptor) Name() string { return d.name }

// Fmt returns the format string ("d-ng|n-ng").
func (d *Descriptor) Fmt() string { return d.fmt }

// DisplayName returns what the lists show as the template name: the name,
// or the format string for a custom format.
func (d *Descriptor) DisplayName() string {
	if d.name != "" {
		return d.name
	}
	return d.fmt
}

// NumFields returns the number of fields.
func (d *Descriptor) NumFields() int { return len(d.fields) }

// Field returns the i-th field.
func (d *Descriptor) Field(i int) FieldID { return d.fields[i] }

// Fields returns a copy of the fields.
func (d *Descriptor) Fields() []FieldID { return append([]FieldID(nil), d.fields...) }

// IsIMA reports whether this is the legacy "ima" template, whose template
// hash and binary record follow the old layout. The kernel decides by name,
// so a custom "d|n" format is not "ima".
func (d *Descriptor) IsIMA() bool { return d.name == imaName }

// HasModsig reports whether the template has a modsig or d-modsig field.
//
// Mirrors security/integrity/ima/ima_template.c:ima_template_has_modsig().
func (d *Descriptor) HasModsig() bool { return d.hasSig }

// String returns the display name ("<nil>" for a nil descriptor).
func (d *Descriptor) String() string {
	if d == nil {
		return "<nil>"
	}
	return d.DisplayName()
}

const imaName = "ima"

func builtin(name, fmtStr string) *Descriptor {
	d, err := ParseFmt(fmtStr)
	if err != nil {
		panic(err) // the builtin table is constant
	}
	d.name = name
	return d
}

// The builtin templates (ima_template.c builtin_templates[]).
var (
	IMA       = builtin("ima", "d|n")
	IMANG     = builtin("ima-ng", "d-ng|n-ng")
	IMASig    = builtin("ima-sig", "d-ng|n-ng|sig")
	IMANGv2   = builtin("ima-ngv2", "d-ngv2|n-ng")
	IMASigv2  = builtin("ima-sigv2", "d-ngv2|n-ng|sig")
	IMABuf    = builtin("ima-buf", "d-ng|n-ng|buf")
	IMAModsig = builtin("ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig")
	EVMSig    = builtin("evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode")
)

// builtins is in the kernel's list order, which lookup_template_desc walks.
var builtins = []*Descriptor{IMA, IMANG, IMASig, IMANGv2, IMASigv2, IMABuf, IMAModsig, EVMSig}

// Builtins returns the builtin descriptors in the kernel's order.
func Builtins() []*Descriptor { return append([]*Descriptor(nil), builtins...) }

// Builtin returns the builtin descriptor whose name is exactly name, or nil.
func Builtin(name string) *Descriptor {
	for _, d := range builtins {
		if d.name == name {
			return d
		}
	}
	return nil
}

// Lookup finds a builtin template by name or by format string: a name equal
// to a builtin's fmt resolves to that builtin ("d-ng|n-ng" is ima-ng). It
// returns nil if none matches.
//
// Mirrors security/integrity/ima/ima_template.c:lookup_template_desc().
//
// Differences from Linux:
//   - The kernel's list also holds the ima_template_fmt= descriptor and the
//     formats registered by a kexec restore; this package keeps no such
//     global state, so callers resolve custom formats with ParseFmt (or
//     LookupOrParse), which gives an equal descriptor.
func Lookup(nameOrFmt string) *Descriptor {
	for _, d := range builtins {
		if d.name == nameOrFmt || d.fmt == nameOrFmt {
			return d
		}
	}
	return nil
}

// LookupOrParse resolves a template name the way a kexec restore does:
// Lookup first, else the name is taken as a custom format string.
//
// Mirrors the lookup_template_desc()/restore_template_fmt() pair of
// security/integrity/ima/ima_template.c:ima_restore_measurement_list().
func LookupOrParse(name string) (*Descriptor, error) {
	if d := Lookup(name); d != nil {
		return d, nil
	}
	return ParseFmt(name)
}

// ErrUnknownField is wrapped by ParseFmt's error for a field id the kernel
// does not support.
var ErrUnknownField = errors.New("field not found")

// ParseFmt parses a custom format string ('|'-separated field ids, at most
// MaxFields, each 1 to MaxFieldIDLen characters, each a supported id) into a
// descriptor with name "" and the format string as its fmt.
//
// Mirrors security/integrity/ima/ima_template.c:template_desc_init_fields()
// (with template_fmt_size() and lookup_template_field()).
func ParseFmt(fmtStr string) (*Descriptor, error) {
	n := strings.Count(fmtStr, "|") + 1
	if n > MaxFields {
		return nil, fmt.Errorf("template: format string %q contains too many fields (%d, at most %d)", fmtStr, n, MaxFields)
	}
	d := &Descriptor{fmt: fmtStr, fields: make([]FieldID, 0, n)}
	rest := fmtStr
	for i := 0; i < n; i++ {
		id, tail, _ := strings.Cut(rest, "|")
		rest = tail
		if len(id) == 0 || len(id) > MaxFieldIDLen {
			return nil, fmt.Errorf("template: format string %q: invalid field with length %d", fmtStr, len(id))
		}
		f, ok := fieldByID(id)
		if !ok {
			return nil, fmt.Errorf("template: format string %q: field %q: %w", fmtStr, id, ErrUnknownField)
		}
		d.fields = append(d.fields, f)
		if f == FieldModsig || f == FieldDModsig {
			d.hasSig = true
		}
	}
	return d, nil
}

func fieldByID(id string) (FieldID, bool) {
	for f := FieldID(0); f < numFields; f++ {
		if fieldTable[f].id == id {
			return f, true
		}
	}
	return 0, false
}

// TemplateSetup selects the template for the ima_template= boot parameter:
// a builtin name or format (Lookup); "ima" is refused unless hashAlgo (the
// ima_hash algorithm) is SHA-1 or MD5. On error the kernel keeps
// CONFIG_IMA_DEFAULT_TEMPLATE; so should the caller.
//
// Mirrors security/integrity/ima/ima_template.c:ima_template_setup().
//
// Differences from Linux:
//   - "The first of ima_template= and ima_template_fmt= wins" is the
//     caller's to enforce; this function has no memory.
func TemplateSetup(str string, hashAlgo HashAlgo) (*Descriptor, error) {
	d := Lookup(str)
	if d == nil {
		return nil, fmt.Errorf("template: template %q not found", str)
	}
	// The kernel checks the parameter text, not the descriptor: "d|n"
	// selects the ima template without this check.
	if str == imaName && hashAlgo != HashSHA1 && hashAlgo != HashMD5 {
		return nil, fmt.Errorf("template: template %q does not support hash algorithm %v", str, hashAlgo)
	}
	return d, nil
}

// TemplateFmtSetup selects the template for the ima_template_fmt= boot
// parameter: always a custom descriptor (name "", fmt as given), even when
// the format equals a builtin's.
//
// Mirrors security/integrity/ima/ima_template.c:ima_template_fmt_setup().
func TemplateFmtSetup(fmtStr string) (*Descriptor, error) {
	return ParseFmt(fmtStr)
}

// HashSetup returns the ima_hash algorithm selected by the ima_hash= boot
// parameter given the current template: with the "ima" template only
// strings starting with "sha1" or "md5" are accepted (the kernel compares
// prefixes), otherwise any exact hash_algo_name. On error the kernel keeps
// its previous algorithm; so should the caller.
//
// Mirrors security/integrity/ima/ima_main.c:hash_setup().
func HashSetup(str string, current *Descriptor) (HashAlgo, error) {
	if current != nil && current.name == imaName {
		switch {
		case strings.HasPrefix(str, "sha1"):
			return HashSHA1, nil
		case strings.HasPrefix(str, "md5"):
			return HashMD5, nil
		}
		return HashAlgoLast, fmt.Errorf("template: invalid hash algorithm %q for template %q", str, imaName)
	}
	return ParseHashAlgo(str)
}
