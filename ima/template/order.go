package template

import "encoding/binary"

// Order is the byte order of every integer a record carries: the PCR, name
// and data lengths of the binary record, the field length prefixes (in the
// records and in the template-hash input), and the integer fields iuid,
// igid, imode and xattrlengths.
//
// The kernel writes them in CPU order, or little-endian when
// ima_canonical_fmt is set (which only has an effect on big-endian kernels).
// So LittleEndian stands for every little-endian kernel and for any kernel
// booted with ima_canonical_fmt; BigEndian for a big-endian kernel without it.
type Order uint8

const (
	// LittleEndian is the order of little-endian kernels and of
	// ima_canonical_fmt. It is the zero value.
	LittleEndian Order = iota
	// BigEndian is the order of a big-endian kernel without
	// ima_canonical_fmt.
	BigEndian
)

// String returns "little-endian" or "big-endian".
func (o Order) String() string {
	if o == BigEndian {
		return "big-endian"
	}
	return "little-endian"
}

// The one byte-order helper of the module: every integer of a record, a
// kexec header or a template field is read and written through these.
// No kernel counterpart as such; they stand for the kernel's
// cpu_to_le32()/le32_to_cpu() under ima_canonical_fmt (and plain CPU-order
// access without it).

// AppendUint16 appends v in order o.
func (o Order) AppendUint16(dst []byte, v uint16) []byte {
	if o == BigEndian {
		return binary.BigEndian.AppendUint16(dst, v)
	}
	return binary.LittleEndian.AppendUint16(dst, v)
}

// AppendUint32 appends v in order o.
func (o Order) AppendUint32(dst []byte, v uint32) []byte {
	if o == BigEndian {
		return binary.BigEndian.AppendUint32(dst, v)
	}
	return binary.LittleEndian.AppendUint32(dst, v)
}

// AppendUint64 appends v in order o.
func (o Order) AppendUint64(dst []byte, v uint64) []byte {
	if o == BigEndian {
		return binary.BigEndian.AppendUint64(dst, v)
	}
	return binary.LittleEndian.AppendUint64(dst, v)
}

// Uint16 reads the first 2 bytes of b in order o.
func (o Order) Uint16(b []byte) uint16 {
	if o == BigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

// Uint32 reads the first 4 bytes of b in order o.
func (o Order) Uint32(b []byte) uint32 {
	if o == BigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// Uint64 reads the first 8 bytes of b in order o.
func (o Order) Uint64(b []byte) uint64 {
	if o == BigEndian {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}
