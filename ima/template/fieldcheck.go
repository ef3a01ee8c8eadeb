package template

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrFieldLength is wrapped by CheckFieldLengths's errors.
var ErrFieldLength = errors.New("field length the kernel does not produce")

// CheckFieldLengths checks that fields, the stored bytes of desc's fields,
// have the lengths and shapes the kernel's field init functions give them.
// It returns the index of the first field that does not, with an error
// wrapping ErrFieldLength; (-1, nil) if all do.
//
// The rules, from security/integrity/ima/ima_template_lib.c:
//   - d (ima_eventdigest_init): a SHA-1 digest or 20 zero bytes (a
//     violation): 20 bytes; or an MD5 digest, 16 bytes, which the "ima"
//     template cannot carry (its binary layout has room for exactly
//     IMA_DIGEST_SIZE bytes and no length).
//   - n (ima_eventname_init, size_limit): at most IMA_EVENT_NAME_LEN_MAX
//     characters and the NUL ima_write_template_field_data() adds.
//   - n-ng (ima_eventname_ng_init): any length, one NUL at the end.
//   - d-ng, d-modsig (ima_eventdigest_init_common with an algorithm):
//     "<hash_algo_name>:" NUL and a digest of that algorithm's size, or
//     for a violation zeros of that size or of IMA_DIGEST_SIZE (kernels
//     before the violation fix reserved 20 bytes whatever the algorithm);
//     d-modsig may be empty (no appended signature).
//   - d-ngv2: the same after "ima:" or "verity:".
//   - iuid, igid (ima_eventinodedac_init_common): empty or an unsigned
//     int (4 bytes); imode (ima_eventinodemode_init): empty or a u16.
//   - xattrlengths: u32 lengths, a multiple of 4 bytes.
//   - sig, buf, modsig, evmsig, xattrnames, xattrvalues: any bytes.
//
// No kernel counterpart as a check: the kernel builds fields and never
// checks them; this exists so that a verifier rebuilding records from the
// ASCII list refuses fields the kernel cannot have written.
func CheckFieldLengths(desc *Descriptor, fields [][]byte) (int, error) {
	if len(fields) != desc.NumFields() {
		return len(fields), fmt.Errorf("%w: %d fields, template %s has %d", ErrFieldLength, len(fields), desc, desc.NumFields())
	}
	for i, f := range fields {
		id := desc.Field(i)
		if err := checkFieldLength(id, f, desc.IsIMA()); err != nil {
			return i, fmt.Errorf("%w: field %d (%s): %v", ErrFieldLength, i, id, err)
		}
	}
	return -1, nil
}

func checkFieldLength(id FieldID, f []byte, imaLayout bool) error {
	switch id {
	case FieldD:
		if len(f) == sha1Size || len(f) == HashMD5.Size() && !imaLayout {
			return nil
		}
		if imaLayout {
			return fmt.Errorf("%d bytes, the ima template's d has %d", len(f), sha1Size)
		}
		return fmt.Errorf("%d bytes, d has %d (SHA-1) or %d (MD5)", len(f), sha1Size, HashMD5.Size())
	case FieldN, FieldNNG:
		if len(f) == 0 || f[len(f)-1] != 0 || bytes.IndexByte(f, 0) != len(f)-1 {
			return errors.New("not a string with one NUL at its end")
		}
		if id == FieldN && len(f) > MaxEventNameLen+1 {
			return fmt.Errorf("name of %d characters, at most %d", len(f)-1, MaxEventNameLen)
		}
	case FieldDNG, FieldDModsig, FieldDNGv2:
		if id == FieldDModsig && len(f) == 0 {
			return nil
		}
		return checkDigestWithAlgo(f, id == FieldDNGv2)
	case FieldIUID, FieldIGID:
		if len(f) != 0 && len(f) != 4 {
			return fmt.Errorf("%d bytes, want 0 or 4", len(f))
		}
	case FieldIMode:
		if len(f) != 0 && len(f) != 2 {
			return fmt.Errorf("%d bytes, want 0 or 2", len(f))
		}
	case FieldXattrLengths:
		if len(f)%4 != 0 {
			return fmt.Errorf("%d bytes, not a multiple of 4", len(f))
		}
	}
	return nil
}

// checkDigestWithAlgo checks "[<type>:]<algo>:" NUL digest.
func checkDigestWithAlgo(f []byte, typed bool) error {
	nul := bytes.IndexByte(f, 0)
	if nul < 1 || f[nul-1] != ':' {
		return errors.New(`no "<algo>:" and NUL before the digest`)
	}
	prefix, digest := f[:nul-1], f[nul+1:]
	if typed {
		typ, rest, ok := bytes.Cut(prefix, []byte(":"))
		if !ok || string(typ) != "ima" && string(typ) != "verity" {
			return fmt.Errorf("digest type of %q is not ima or verity", prefix)
		}
		prefix = rest
	}
	a := HashAlgo(0)
	for a < HashAlgoLast && hashInfos[a].name != string(prefix) {
		a++
	}
	if a == HashAlgoLast {
		return fmt.Errorf("unknown hash algorithm %q", prefix)
	}
	if len(digest) == a.Size() || len(digest) == sha1Size && allZero(digest) {
		return nil
	}
	return fmt.Errorf("%v digest of %d bytes, want %d", a, len(digest), a.Size())
}
