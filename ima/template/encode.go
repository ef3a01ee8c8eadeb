package template

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
)

// digestFor returns the digest of slot, or an error naming the problem.
func (e *Entry) digestFor(slot int) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	if slot < 0 || slot >= len(e.Digests) {
		return nil, fmt.Errorf("template: entry has no digest slot %d (it has %d)", slot, len(e.Digests))
	}
	return e.Digests[slot].Value, nil
}

// AppendBinary appends the binary record of e as the list file of the given
// slot shows it, with integers in order o:
//
//	u32 pcr, digest (the slot's size), u32 len(name), name,
//	u32 template_data_len, then per field u32 len and data;
//
// or, for the "ima" template, after the name: the d field raw, u32
// strlen(n) and n without its NUL.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_measurements_show() with
// ima_template_lib.c:ima_show_template_data_binary().
func (e *Entry) AppendBinary(dst []byte, slot int, o Order) ([]byte, error) {
	digest, err := e.digestFor(slot)
	if err != nil {
		return dst, err
	}
	name := e.Desc.DisplayName()
	dst = o.AppendUint32(dst, e.PCR)
	dst = append(dst, digest...)
	dst = o.AppendUint32(dst, uint32(len(name)))
	dst = append(dst, name...)
	ima := name == imaName
	if !ima {
		dst = o.AppendUint32(dst, uint32(e.TemplateDataLen()))
	}
	for i, f := range e.Fields {
		switch {
		case ima && e.Desc.Field(i) == FieldD: // IMA_SHOW_BINARY_NO_FIELD_LEN
		case ima && e.Desc.Field(i) == FieldN: // IMA_SHOW_BINARY_OLD_STRING_FMT
			f = cString(f)
			dst = o.AppendUint32(dst, uint32(len(f)))
		default:
			dst = o.AppendUint32(dst, uint32(len(f)))
		}
		dst = append(dst, f...)
	}
	return dst, nil
}

// BinarySize returns the length of e's binary record for a digest of
// digestSize bytes (what AppendBinary appends).
func (e *Entry) BinarySize(digestSize int) int {
	name := e.Desc.DisplayName()
	n := 4 + digestSize + 4 + len(name)
	if name != imaName {
		return n + 4 + e.TemplateDataLen()
	}
	for i, f := range e.Fields {
		switch e.Desc.Field(i) {
		case FieldD:
			n += len(f)
		case FieldN:
			n += 4 + len(cString(f))
		default:
			n += 4 + len(f)
		}
	}
	return n
}

// cString returns b up to its first NUL (all of b if it has none).
func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// AppendASCII appends the line of ascii_runtime_measurements for the given
// slot: "%2d " PCR, the digest in lowercase hex, " " and the template name,
// then for each field a space and (when not empty) its rendering, then a
// newline. Integer fields are read in order o.
//
// Mirrors security/integrity/ima/ima_fs.c:ima_ascii_measurements_show()
// with ima_template_lib.c:ima_show_template_data_ascii().
func (e *Entry) AppendASCII(dst []byte, slot int, o Order) ([]byte, error) {
	digest, err := e.digestFor(slot)
	if err != nil {
		return dst, err
	}
	// entry->pcr is an int printed with "%2d".
	pcr := int64(int32(e.PCR))
	if pcr >= 0 && pcr < 10 {
		dst = append(dst, ' ')
	}
	dst = strconv.AppendInt(dst, pcr, 10)
	dst = append(dst, ' ')
	dst = hex.AppendEncode(dst, digest)
	dst = append(dst, ' ')
	dst = append(dst, e.Desc.DisplayName()...)
	for i, f := range e.Fields {
		dst = append(dst, ' ')
		if len(f) == 0 {
			continue
		}
		dst = AppendFieldASCII(dst, e.Desc.Field(i), f, o)
	}
	return append(dst, '\n'), nil
}

// AppendFieldASCII appends field f's data as the ASCII list shows it
// (what follows the field's space in AppendASCII's line): a digest with
// its algorithm as "sha256:" and hex, digests and signatures in hex,
// strings up to their NUL, integers in decimal read in order o. Empty
// data appends nothing.
//
// Mirrors security/integrity/ima/ima_template_lib.c:ima_show_template_data_ascii().
//
// Differences from Linux (only for bytes the kernel never builds, as a
// decoded list can hold):
//   - A digest-with-algorithm field without ':' before its first NUL is
//     shown in hex (the kernel would dereference NULL); one whose ':' is too
//     close to the end shows its prefix only (the kernel would underflow
//     the length).
//   - A string field without NUL is shown whole (the kernel reads up to the
//     NUL it allocates after restored data).
func AppendFieldASCII(dst []byte, f FieldID, data []byte, o Order) []byte {
	switch fieldTable[f].show {
	case showDigestWithAlgo:
		s := cString(data)
		colon := bytes.LastIndexByte(s, ':')
		if colon < 0 {
			return hex.AppendEncode(dst, data)
		}
		if colon != 0 {
			dst = append(dst, s...)
		}
		if colon+2 <= len(data) {
			dst = hex.AppendEncode(dst, data[colon+2:])
		}
		return dst
	case showDigest, showHex:
		return hex.AppendEncode(dst, data)
	case showString:
		return append(dst, cString(data)...)
	case showUint:
		switch len(data) {
		case 1:
			return strconv.AppendUint(dst, uint64(data[0]), 10)
		case 2:
			return strconv.AppendUint(dst, uint64(o.Uint16(data)), 10)
		case 4:
			return strconv.AppendUint(dst, uint64(o.Uint32(data)), 10)
		case 8:
			return strconv.AppendUint(dst, o.Uint64(data), 10)
		}
	}
	return dst
}
