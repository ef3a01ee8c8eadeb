package template

import (
	"fmt"
	"strconv"

	"github.com/imasim/imasim/tpmext"
)

// Slot is one template-digest slot of an entry: a TPM bank, or one of the
// extra slots the kernel adds for SHA-1 and for the ima_hash algorithm when
// no bank has them.
type Slot struct {
	// Bank is the TPM algorithm id of the bank, for slots below
	// Layout.NumBanks; for an extra slot it is the TPM id of Algo when
	// tpm2_hash_map has one, else 0 (the kernel leaves alg_id 0 there).
	Bank tpmext.Algorithm
	// Algo is the kernel crypto id: HashAlgoLast for an unmapped bank.
	Algo HashAlgo
	// Hashed reports whether the slot is computed with its own algorithm
	// (the kernel's ima_algo_array[i].tfm != NULL). When false the slot
	// holds the SHA-1 template digest zero-padded to Size ("padded SHA-1").
	Hashed bool
	// Size is the slot's digest size: hash_digest_size[Algo], or the TPM
	// bank's digest size for an unmapped bank (see the package doc).
	Size int
	// IsBank reports whether the slot is a TPM bank (extended into the
	// TPM) rather than an extra slot.
	IsBank bool
}

// ListFile names the per-bank measurement-list files of one slot:
// ascii_runtime_measurements_<Suffix> and
// binary_runtime_measurements_<Suffix>.
type ListFile struct {
	Slot   int    // slot whose digest the files show
	Suffix string // "sha1", "sha256", "sm3", "tpm_alg_27"
}

// Layout is the record layout of one booted kernel: its digest slots (the
// TPM's banks and ima_hash) and its byte order. It is immutable and safe
// for concurrent use.
type Layout struct {
	slots    []Slot
	nrBanks  int
	sha1Idx  int
	hashIdx  int
	hashAlgo HashAlgo
	order    Order
	files    []ListFile
	// violation holds the extend digests of a violation, one per bank.
	violation []tpmext.Digest
}

// NewLayout builds the digest slots for a TPM with the given banks (in the
// order the TPM reports them; nil or empty for no TPM) and the ima_hash
// algorithm, with integers in the given byte order.
//
// Mirrors security/integrity/ima/ima_crypto.c:ima_init_crypto() and
// ima_queue.c:ima_init_digests().
//
// Differences from Linux:
//   - Every algorithm a bank can map to has an implementation here, so only
//     unmapped banks get padded SHA-1; the kernel also pads banks whose
//     algorithm it was built without.
//   - A bank tpmext does not know (its size is unknown), a bank listed
//     twice, or an ima_hash algorithm without an implementation (MD4,
//     RIPEMD, Whirlpool, Tiger, Streebog) is refused; the kernel would fail
//     to allocate the last one and fall back to CONFIG_IMA_DEFAULT_HASH.
func NewLayout(banks []tpmext.Algorithm, hashAlgo HashAlgo, order Order) (*Layout, error) {
	if !hashAlgo.Available() {
		return nil, fmt.Errorf("template: ima_hash algorithm %v has no implementation", hashAlgo)
	}
	if order != LittleEndian && order != BigEndian {
		return nil, fmt.Errorf("template: invalid byte order %d", order)
	}
	l := &Layout{nrBanks: len(banks), sha1Idx: -1, hashIdx: -1, hashAlgo: hashAlgo, order: order}
	seen := make(map[tpmext.Algorithm]bool, len(banks))
	for i, b := range banks {
		if !b.Known() {
			return nil, fmt.Errorf("template: TPM bank %d: unknown algorithm %v", i, b)
		}
		if seen[b] {
			return nil, fmt.Errorf("template: TPM bank %v listed twice", b)
		}
		seen[b] = true
		algo := HashAlgoFromTPM(b)
		s := Slot{Bank: b, Algo: algo, IsBank: true, Size: b.Size()}
		if algo != HashAlgoLast {
			s.Hashed = algo.Available()
			s.Size = algo.Size()
			if algo == HashSHA1 {
				l.sha1Idx = i
			}
			if algo == hashAlgo {
				l.hashIdx = i
			}
		}
		l.slots = append(l.slots, s)
	}
	extra := func(a HashAlgo) int {
		tpm, _ := a.TPM()
		l.slots = append(l.slots, Slot{Bank: tpm, Algo: a, Hashed: true, Size: a.Size()})
		return len(l.slots) - 1
	}
	if l.sha1Idx < 0 {
		l.sha1Idx = extra(HashSHA1)
		if hashAlgo == HashSHA1 {
			l.hashIdx = l.sha1Idx
		}
	}
	if l.hashIdx < 0 {
		l.hashIdx = extra(hashAlgo)
	}

	// ima_fs.c:create_securityfs_measurement_lists(): the banks, plus the
	// SHA-1 slot when it is an extra one; never the extra ima_hash slot.
	count := l.nrBanks
	if l.sha1Idx >= l.nrBanks {
		count++
	}
	for i := 0; i < count; i++ {
		s := l.slots[i]
		suffix := ""
		if s.Algo == HashAlgoLast {
			suffix = "tpm_alg_" + strconv.FormatUint(uint64(s.Bank), 16)
		} else {
			suffix = s.Algo.String()
		}
		l.files = append(l.files, ListFile{Slot: i, Suffix: suffix})
	}

	// ima_queue.c:ima_init_digests(): 0xFF over each bank's size, or over
	// the first 20 bytes only for an unmapped bank.
	for _, s := range l.slots[:l.nrBanks] {
		v := make([]byte, s.Bank.Size())
		ff := len(v)
		if s.Algo == HashAlgoLast {
			ff = sha1Size
		}
		for j := 0; j < ff; j++ {
			v[j] = 0xff
		}
		l.violation = append(l.violation, tpmext.Digest{Alg: s.Bank, Value: v})
	}
	return l, nil
}

const sha1Size = 20

// NumSlots returns the number of slots: NR_BANKS + ima_extra_slots.
func (l *Layout) NumSlots() int { return len(l.slots) }

// NumBanks returns the number of TPM banks (0 without a TPM).
func (l *Layout) NumBanks() int { return l.nrBanks }

// Slot returns slot i.
func (l *Layout) Slot(i int) Slot { return l.slots[i] }

// Banks returns the TPM banks in the TPM's order.
func (l *Layout) Banks() []tpmext.Algorithm {
	out := make([]tpmext.Algorithm, l.nrBanks)
	for i := range out {
		out[i] = l.slots[i].Bank
	}
	return out
}

// SHA1Index returns ima_sha1_idx: the slot holding the SHA-1 template
// digest (the one the legacy files, the kexec dump and evmctl use).
func (l *Layout) SHA1Index() int { return l.sha1Idx }

// HashIndex returns ima_hash_algo_idx: the slot of the ima_hash algorithm,
// whose digest keys the duplicate-detection hash table.
func (l *Layout) HashIndex() int { return l.hashIdx }

// HashAlgo returns ima_hash_algo.
func (l *Layout) HashAlgo() HashAlgo { return l.hashAlgo }

// Order returns the byte order of the kernel's records.
func (l *Layout) Order() Order { return l.order }

// HasTPM reports whether the layout has TPM banks (false is the kernel's
// "TPM-bypass").
func (l *Layout) HasTPM() bool { return l.nrBanks > 0 }

// ListFiles returns the slots that get per-bank securityfs list files and
// their name suffixes, in the kernel's creation order.
//
// Mirrors security/integrity/ima/ima_fs.c:create_securityfs_measurement_lists()
// (with the tpm_alg_<id> naming of upstream commit d7bd8cf0b348).
func (l *Layout) ListFiles() []ListFile { return append([]ListFile(nil), l.files...) }
