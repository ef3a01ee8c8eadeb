package eventlog

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"hash"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// hasher computes digests of one algorithm into caller-provided memory
// without allocating. The SHA-1, SHA-2 and SHA-3 algorithms use the
// standard library's one-shot functions; others (SM3) reuse one
// hash.Hash, so a hasher belongs to one goroutine.
type hasher struct {
	alg tpmext.Algorithm
	h   hash.Hash // nil for the one-shot algorithms
}

func newHasher(alg tpmext.Algorithm) *hasher {
	hs := &hasher{alg: alg}
	switch alg {
	case tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512,
		tpmext.SHA3_256, tpmext.SHA3_384, tpmext.SHA3_512:
	default:
		hs.h = alg.New()
	}
	return hs
}

// sum writes H(in) into dst, which has the algorithm's size.
func (hs *hasher) sum(dst, in []byte) {
	switch hs.alg {
	case tpmext.SHA1:
		s := sha1.Sum(in)
		copy(dst, s[:])
	case tpmext.SHA256:
		s := sha256.Sum256(in)
		copy(dst, s[:])
	case tpmext.SHA384:
		s := sha512.Sum384(in)
		copy(dst, s[:])
	case tpmext.SHA512:
		s := sha512.Sum512(in)
		copy(dst, s[:])
	case tpmext.SHA3_256:
		s := sha3.Sum256(in)
		copy(dst, s[:])
	case tpmext.SHA3_384:
		s := sha3.Sum384(in)
		copy(dst, s[:])
	case tpmext.SHA3_512:
		s := sha3.Sum512(in)
		copy(dst, s[:])
	default:
		hs.h.Reset()
		hs.h.Write(in)
		hs.h.Sum(dst[:0])
	}
}

// extend sets pcr to H(pcr || d), using scratch (at least twice the
// algorithm's size) for the concatenation.
func (hs *hasher) extend(pcr, d, scratch []byte) {
	n := copy(scratch, pcr)
	n += copy(scratch[n:], d)
	hs.sum(pcr, scratch[:n])
}

// digestSpec says how one digest of a record is computed from its hash
// input.
type digestSpec struct {
	alg  tpmext.Algorithm
	size int
	// padded: the SHA-1 template digest zero-padded to size, instead of
	// hashing with alg. The kernel does this for banks it cannot map
	// (and, before v5.8, for every bank).
	padded bool
}

// specFor returns the template digest the kernel computes for bank alg:
// hashed with alg when tpm2_hash_map maps it, else padded SHA-1.
//
// Mirrors security/integrity/ima/ima_crypto.c:ima_calc_field_array_hash()
// (the tfm == NULL case for unmapped banks).
func specFor(alg tpmext.Algorithm, pre58 bool) digestSpec {
	s := digestSpec{alg: alg, size: alg.Size()}
	if alg != tpmext.SHA1 && (pre58 || template.HashAlgoFromTPM(alg) == template.HashAlgoLast) {
		s.padded = true
	}
	return s
}

// violationDigest returns what the kernel extends into a bank for a
// violation: 0xFF over the bank's size, or 0xFF×20 then zeros for a
// padded bank; with zero set (evmctl's default), all zeros.
//
// Mirrors security/integrity/ima/ima_queue.c:ima_init_digests().
func violationDigest(s digestSpec, zero bool) []byte {
	v := make([]byte, s.size)
	if zero {
		return v
	}
	ff := s.size
	if s.padded {
		ff = min(ff, 20)
	}
	for i := 0; i < ff; i++ {
		v[i] = 0xff
	}
	return v
}
