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

func (o Order) appendU32(dst []byte, v uint32) []byte {
	if o == BigEndian {
		return binary.BigEndian.AppendUint32(dst, v)
	}
	return binary.LittleEndian.AppendUint32(dst, v)
}

func (o Order) appendU16(dst []byte, v uint16) []byte {
	if o == BigEndian {
		return binary.BigEndian.AppendUint16(dst, v)
	}
	return binary.LittleEndian.AppendUint16(dst, v)
}

func (o Order) u16(b []byte) uint16 {
	if o == BigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (o Order) u32(b []byte) uint32 {
	if o == BigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (o Order) u64(b []byte) uint64 {
	if o == BigEndian {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}
