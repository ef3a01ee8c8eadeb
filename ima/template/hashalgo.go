package template

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/imasim/imasim/tpmext"
)

// HashAlgo is the kernel's enum hash_algo (include/uapi/linux/hash_info.h).
// Its numeric values are the kernel's: they appear in signature headers and
// index hash_algo_name[] and hash_digest_size[].
type HashAlgo uint8

// The kernel's hash algorithms, with the kernel's values.
const (
	HashMD4         HashAlgo = 0
	HashMD5         HashAlgo = 1
	HashSHA1        HashAlgo = 2
	HashRMD160      HashAlgo = 3
	HashSHA256      HashAlgo = 4
	HashSHA384      HashAlgo = 5
	HashSHA512      HashAlgo = 6
	HashSHA224      HashAlgo = 7
	HashRMD128      HashAlgo = 8
	HashRMD256      HashAlgo = 9
	HashRMD320      HashAlgo = 10
	HashWP256       HashAlgo = 11
	HashWP384       HashAlgo = 12
	HashWP512       HashAlgo = 13
	HashTGR128      HashAlgo = 14
	HashTGR160      HashAlgo = 15
	HashTGR192      HashAlgo = 16
	HashSM3_256     HashAlgo = 17
	HashStreebog256 HashAlgo = 18
	HashStreebog512 HashAlgo = 19
	HashSHA3_256    HashAlgo = 20
	HashSHA3_384    HashAlgo = 21
	HashSHA3_512    HashAlgo = 22
	// HashAlgoLast is HASH_ALGO__LAST: not an algorithm. The kernel uses it
	// as the crypto id of a TPM bank it cannot map ("unmapped" bank).
	HashAlgoLast HashAlgo = 23
)

// MaxDigestSize is the largest digest of any slot (TPM_MAX_DIGEST_SIZE).
const MaxDigestSize = 64

type hashInfo struct {
	name string // hash_algo_name[]
	size int    // hash_digest_size[]
	tpm  tpmext.Algorithm
	// sum writes the digest of p into dst[:size]; nil when this model has
	// no implementation of the algorithm.
	sum func(dst, p []byte)
	// new returns a streaming hash; nil when sum is nil.
	new func() hash.Hash
}

// hashInfos is indexed by HashAlgo. The names and sizes are
// crypto/hash_info.c's; "sm3" is the current name of HASH_ALGO_SM3_256
// (formerly "sm3-256").
var hashInfos = [HashAlgoLast]hashInfo{
	HashMD4: {name: "md4", size: 16},
	HashMD5: {name: "md5", size: 16,
		sum: func(dst, p []byte) { s := md5.Sum(p); copy(dst, s[:]) }, new: md5.New},
	HashSHA1: {name: "sha1", size: 20, tpm: tpmext.SHA1,
		sum: func(dst, p []byte) { s := sha1.Sum(p); copy(dst, s[:]) }, new: sha1.New},
	HashRMD160: {name: "rmd160", size: 20},
	HashSHA256: {name: "sha256", size: 32, tpm: tpmext.SHA256,
		sum: func(dst, p []byte) { s := sha256.Sum256(p); copy(dst, s[:]) }, new: sha256.New},
	HashSHA384: {name: "sha384", size: 48, tpm: tpmext.SHA384,
		sum: func(dst, p []byte) { s := sha512.Sum384(p); copy(dst, s[:]) }, new: sha512.New384},
	HashSHA512: {name: "sha512", size: 64, tpm: tpmext.SHA512,
		sum: func(dst, p []byte) { s := sha512.Sum512(p); copy(dst, s[:]) }, new: sha512.New},
	HashSHA224: {name: "sha224", size: 28,
		sum: func(dst, p []byte) { s := sha256.Sum224(p); copy(dst, s[:]) }, new: sha256.New224},
	HashRMD128:      {name: "rmd128", size: 16},
	HashRMD256:      {name: "rmd256", size: 32},
	HashRMD320:      {name: "rmd320", size: 40},
	HashWP256:       {name: "wp256", size: 32},
	HashWP384:       {name: "wp384", size: 48},
	HashWP512:       {name: "wp512", size: 64},
	HashTGR128:      {name: "tgr128", size: 16},
	HashTGR160:      {name: "tgr160", size: 20},
	HashTGR192:      {name: "tgr192", size: 24},
	HashSM3_256:     {name: "sm3", size: 32, tpm: tpmext.SM3_256, new: tpmext.SM3_256.New},
	HashStreebog256: {name: "streebog256", size: 32},
	HashStreebog512: {name: "streebog512", size: 64},
	HashSHA3_256: {name: "sha3-256", size: 32,
		sum: func(dst, p []byte) { s := sha3.Sum256(p); copy(dst, s[:]) },
		new: func() hash.Hash { return sha3.New256() }},
	HashSHA3_384: {name: "sha3-384", size: 48,
		sum: func(dst, p []byte) { s := sha3.Sum384(p); copy(dst, s[:]) },
		new: func() hash.Hash { return sha3.New384() }},
	HashSHA3_512: {name: "sha3-512", size: 64,
		sum: func(dst, p []byte) { s := sha3.Sum512(p); copy(dst, s[:]) },
		new: func() hash.Hash { return sha3.New512() }},
}

func init() {
	// SM3 has no one-shot function; hash through its streaming form.
	i := &hashInfos[HashSM3_256]
	i.sum = func(dst, p []byte) {
		h := i.new()
		h.Write(p)
		h.Sum(dst[:0])
	}
}

// Valid reports whether a is an algorithm of the enum (below HashAlgoLast).
func (a HashAlgo) Valid() bool { return a < HashAlgoLast }

// String returns hash_algo_name[a] ("sha256", "sm3", "sha3-256"), or
// "hash_algo(N)" for a value that is not an algorithm.
func (a HashAlgo) String() string {
	if a.Valid() {
		return hashInfos[a].name
	}
	return fmt.Sprintf("hash_algo(%d)", uint8(a))
}

// Size returns hash_digest_size[a], or 0 for a value that is not an
// algorithm.
func (a HashAlgo) Size() int {
	if a.Valid() {
		return hashInfos[a].size
	}
	return 0
}

// Available reports whether this model can compute the algorithm. MD4,
// RIPEMD, Whirlpool, Tiger and Streebog have no implementation here (the
// standard library has none); everything a TPM bank can map to (SHA-1,
// SHA-256, SHA-384, SHA-512, SM3) and MD5, SHA-224 and SHA-3 do.
func (a HashAlgo) Available() bool { return a.Valid() && hashInfos[a].sum != nil }

// New returns a streaming hash for the algorithm, or nil if it is not
// Available.
func (a HashAlgo) New() hash.Hash {
	if !a.Available() {
		return nil
	}
	return hashInfos[a].new()
}

// Sum returns the digest of the concatenated parts, or nil if the algorithm
// is not Available.
func (a HashAlgo) Sum(parts ...[]byte) []byte {
	if !a.Available() {
		return nil
	}
	if len(parts) == 1 {
		out := make([]byte, a.Size())
		hashInfos[a].sum(out, parts[0])
		return out
	}
	h := a.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// TPM returns the TPM algorithm id tpm2_hash_map gives the algorithm, and
// false for algorithms the map does not hold (everything but SHA-1,
// SHA-256, SHA-384, SHA-512 and SM3).
func (a HashAlgo) TPM() (tpmext.Algorithm, bool) {
	if !a.Valid() || hashInfos[a].tpm == 0 {
		return 0, false
	}
	return hashInfos[a].tpm, true
}

// HashAlgoFromTPM returns the kernel crypto id of a TPM bank.
//
// Mirrors drivers/char/tpm/tpm2-cmd.c:tpm2_init_bank() with tpm2_hash_map:
// SHA1, SHA256, SHA384, SHA512 and SM3_256 map; every other id (the SHA-3
// banks among them) is unmapped and yields HashAlgoLast.
func HashAlgoFromTPM(id tpmext.Algorithm) HashAlgo {
	for a := HashAlgo(0); a < HashAlgoLast; a++ {
		if hashInfos[a].tpm != 0 && hashInfos[a].tpm == id {
			return a
		}
	}
	return HashAlgoLast
}

// ParseHashAlgo returns the algorithm whose hash_algo_name is exactly name,
// the way the ima_hash= parameter is matched (match_string).
func ParseHashAlgo(name string) (HashAlgo, error) {
	for a := HashAlgo(0); a < HashAlgoLast; a++ {
		if hashInfos[a].name == name {
			return a, nil
		}
	}
	return HashAlgoLast, fmt.Errorf("template: unknown hash algorithm %q", name)
}
