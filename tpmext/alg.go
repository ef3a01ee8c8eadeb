package tpmext

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"
	"strings"

	"github.com/imasim/imasim/tpmext/internal/sm3"
)

// Algorithm is a TPM 2.0 hash algorithm identifier (TPM_ALG_ID), the value a
// TPM reports for each PCR bank.
type Algorithm uint16

// The hash algorithms a TPM bank can use. SHA1 to SM3_256 are the banks the
// kernel's tpm2_hash_map knows (drivers/char/tpm/tpm2-cmd.c); the SHA-3 ids are
// banks a TPM may report but the kernel does not map ("unmapped" banks, which
// IMA fills with a padded SHA-1 digest).
const (
	SHA1     Algorithm = 0x0004
	SHA256   Algorithm = 0x000B
	SHA384   Algorithm = 0x000C
	SHA512   Algorithm = 0x000D
	SM3_256  Algorithm = 0x0012
	SHA3_256 Algorithm = 0x0027
	SHA3_384 Algorithm = 0x0028
	SHA3_512 Algorithm = 0x0029
)

type algInfo struct {
	name string
	size int
	new  func() hash.Hash
}

var algs = map[Algorithm]algInfo{
	SHA1:     {"sha1", 20, sha1.New},
	SHA256:   {"sha256", 32, sha256.New},
	SHA384:   {"sha384", 48, sha512.New384},
	SHA512:   {"sha512", 64, sha512.New},
	SM3_256:  {"sm3_256", 32, sm3.New},
	SHA3_256: {"sha3_256", 32, func() hash.Hash { return sha3.New256() }},
	SHA3_384: {"sha3_384", 48, func() hash.Hash { return sha3.New384() }},
	SHA3_512: {"sha3_512", 64, func() hash.Hash { return sha3.New512() }},
}

// Known reports whether the algorithm id is one this package can size and hash.
func (a Algorithm) Known() bool {
	_, ok := algs[a]
	return ok
}

// Size returns the digest size in bytes, or 0 for an unknown algorithm.
func (a Algorithm) Size() int { return algs[a].size }

// New returns a new hash.Hash for the algorithm, or nil when it is unknown.
func (a Algorithm) New() hash.Hash {
	if info, ok := algs[a]; ok {
		return info.new()
	}
	return nil
}

// Sum hashes data with the algorithm. It returns nil for an unknown algorithm.
func (a Algorithm) Sum(data ...[]byte) []byte {
	h := a.New()
	if h == nil {
		return nil
	}
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// String returns the lower-case TPM name ("sha1", "sha256", "sm3_256",
// "sha3_256"), or "alg_0x…" for an unknown id.
func (a Algorithm) String() string {
	if info, ok := algs[a]; ok {
		return info.name
	}
	return fmt.Sprintf("alg_%#04x", uint16(a))
}

// ParseAlgorithm accepts a TPM name as String prints it, the kernel's names
// ("sm3", "sha3-256") and a numeric id ("0x000b").
func ParseAlgorithm(s string) (Algorithm, error) {
	n := strings.ToLower(strings.TrimSpace(s))
	switch n {
	case "sm3", "sm3-256":
		return SM3_256, nil
	case "sha3-256":
		return SHA3_256, nil
	case "sha3-384":
		return SHA3_384, nil
	case "sha3-512":
		return SHA3_512, nil
	}
	for a, info := range algs {
		if info.name == n {
			return a, nil
		}
	}
	var id uint16
	if _, err := fmt.Sscanf(n, "0x%x", &id); err == nil && Algorithm(id).Known() {
		return Algorithm(id), nil
	}
	return 0, fmt.Errorf("tpmext: unknown hash algorithm %q", s)
}

// ParseBanks parses a comma-separated bank list such as "sha1,sha256".
func ParseBanks(s string) ([]Algorithm, error) {
	var banks []Algorithm
	for _, f := range strings.Split(s, ",") {
		a, err := ParseAlgorithm(f)
		if err != nil {
			return nil, err
		}
		banks = append(banks, a)
	}
	return banks, checkBanks(banks)
}

// DefaultBanks is the bank set of the go-tpm-tools simulator after
// manufacture: SHA1, SHA256, SHA384 and SHA512, in that order.
func DefaultBanks() []Algorithm { return []Algorithm{SHA1, SHA256, SHA384, SHA512} }

// checkBanks refuses an empty bank set, unknown algorithms and duplicates.
func checkBanks(banks []Algorithm) error {
	if len(banks) == 0 {
		return fmt.Errorf("tpmext: empty bank set")
	}
	seen := map[Algorithm]bool{}
	for _, a := range banks {
		if !a.Known() {
			return fmt.Errorf("tpmext: unknown bank algorithm %v", a)
		}
		if seen[a] {
			return fmt.Errorf("tpmext: bank %v listed twice", a)
		}
		seen[a] = true
	}
	return nil
}
