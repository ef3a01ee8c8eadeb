package staging

import (
	"bytes"
	"math"
	"syscall"
)

// StagedReqLength is STAGED_REQ_LENGTH: the longest request, 20 digits of
// ULONG_MAX and a newline.
const StagedReqLength = 21

// request carries out one write to a list file, with the checks in the
// order SimFile.Write documents.
//
// Mirrors security/integrity/ima/ima_fs.c:_ima_measurements_write()
// ([PATCH v7 09/12, 11/12]).
func (s *SecurityFS) request(p []byte, staged bool) error {
	if len(p) < 2 || len(p) > StagedReqLength {
		return syscall.EINVAL
	}
	if p[len(p)-1] != '\n' {
		return syscall.EINVAL
	}
	req := p[:len(p)-1]
	if i := bytes.IndexByte(req, 0); i >= 0 {
		req = req[:i]
	}
	switch p[0] {
	case 'A':
		if len(p) != 2 || !staged {
			return syscall.EINVAL
		}
		return s.q.Stage()
	case 'D':
		if len(p) != 2 || !staged {
			return syscall.EINVAL
		}
		_, err := s.q.DeleteStaged()
		return err
	}
	if staged {
		return syscall.EINVAL
	}
	if s.q.FlushHtable() {
		// "Deleting staged N measurements not supported when flushing
		// the hash table is requested"
		return syscall.EINVAL
	}
	n, err := Kstrtoul(req)
	if err != nil {
		return err
	}
	if n == 0 {
		return syscall.EINVAL // "Must delete at least one entry"
	}
	return s.q.DeletePartial(n)
}

// Kstrtoul converts s to an unsigned long in base 10 as the kernel's
// kstrtoul(s, 10, &res) does on a 64-bit kernel: an optional leading '+',
// one or more decimal digits (leading zeros allowed), then optionally one
// '\n', then the end of the string (or a NUL). No digits, or anything else
// after them, is EINVAL; a value above ULONG_MAX is ERANGE, even when
// junk follows the digits.
//
// Mirrors lib/kstrtox.c:kstrtoull() and _parse_integer_limit().
func Kstrtoul(s []byte) (uint64, error) {
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	var v uint64
	overflow := false
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		d := uint64(s[digits] - '0')
		if v > (math.MaxUint64-d)/10 {
			overflow = true
		}
		v = v*10 + d
		digits++
	}
	if overflow {
		return 0, syscall.ERANGE
	}
	if digits == 0 {
		return 0, syscall.EINVAL
	}
	rest := s[digits:]
	if len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return 0, syscall.EINVAL
	}
	return v, nil
}
