package collector

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"os"
)

// CHECKPOINT lets recovery start where the last resolved batch ends
// instead of at the first segment. No kernel counterpart. It is derived,
// like INDEX: written after the manifest at every durable point where no
// batch is pending or unsealed, never fsynced, and used only when it is
// whole (its checksum), points at or before the manifest's durable end,
// INDEX holds every committed record it counts (the last of them checked),
// and each segment up to it starts with a link that matches the previous
// one's size. Anything else, or a scan from it that fails, falls back to
// scanning every segment.
//
//	[8]byte "IMASIMCP"
//	u32     segment, u64 offset: where the scan resumes
//	u64     base: INDEX position of the newest log's first record
//	u64     committed records of the newest log
//	u32     number of boot ids, then each: u32 length, bytes
//	u32     CRC-32C of the bytes before it
const (
	checkpointName  = "CHECKPOINT"
	checkpointMagic = "IMASIMCP"
	maxCheckpoint   = 1 << 20
)

type checkpointState struct {
	at        loc
	base      int64
	committed int
	bootIDs   []string
}

func (cp checkpointState) encode() []byte {
	b := []byte(checkpointMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(cp.at.seg))
	b = binary.LittleEndian.AppendUint64(b, uint64(cp.at.off))
	b = binary.LittleEndian.AppendUint64(b, uint64(cp.base))
	b = binary.LittleEndian.AppendUint64(b, uint64(cp.committed))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(cp.bootIDs)))
	for _, id := range cp.bootIDs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(id)))
		b = append(b, id...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeCheckpoint(b []byte) (cp checkpointState, ok bool) {
	if len(b) < 8+4+8+8+8+4+4 || string(b[:8]) != checkpointMagic ||
		binary.LittleEndian.Uint32(b[len(b)-4:]) != crc32.Checksum(b[:len(b)-4], castagnoli) {
		return cp, false
	}
	b = b[8 : len(b)-4]
	cp.at = loc{int(binary.LittleEndian.Uint32(b)), int64(binary.LittleEndian.Uint64(b[4:]))}
	cp.base = int64(binary.LittleEndian.Uint64(b[12:]))
	committed := binary.LittleEndian.Uint64(b[20:])
	n := binary.LittleEndian.Uint32(b[28:])
	b = b[32:]
	if cp.at.off < 0 || cp.base < 0 || committed > math.MaxInt32 || uint64(n) > uint64(len(b))/4 {
		return cp, false
	}
	cp.committed = int(committed)
	for i := uint32(0); i < n; i++ {
		if len(b) < 4 {
			return cp, false
		}
		l := binary.LittleEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return cp, false
		}
		cp.bootIDs = append(cp.bootIDs, string(b[4:4+l]))
		b = b[4+l:]
	}
	return cp, len(b) == 0 && len(cp.bootIDs) > 0 || len(b) == 0 && cp.committed == 0 && cp.base == 0
}

// checkpoint records the current durable end as the checkpoint, if no
// batch is pending or unsealed. Failures are ignored: the next recovery
// scans more.
func (s *store) checkpoint() {
	st := &s.log
	if st.state != batchNone || len(st.unsealed) > 0 || s.size != s.durable {
		return
	}
	cp := checkpointState{at: loc{s.segN, s.size}, base: st.base, committed: st.committed, bootIDs: st.bootIDs}
	f, err := s.openFile(checkpointName, os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return
	}
	defer f.Close()
	b := cp.encode()
	if _, err := f.WriteAt(b, 0); err == nil {
		f.Truncate(int64(len(b)))
	}
}

// usableCheckpoint returns the checkpoint if recovery may start from it
// (see checkpointName).
func (s *store) usableCheckpoint(end manifest, ib *indexBuilder) (checkpointState, bool) {
	f, err := s.openFile(checkpointName, os.O_RDONLY)
	if err != nil {
		return checkpointState{}, false
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCheckpoint))
	f.Close()
	if err != nil {
		return checkpointState{}, false
	}
	cp, ok := decodeCheckpoint(b)
	if !ok || cp.at.seg < 1 || cp.at.seg > end.seg || cp.at.seg == end.seg && cp.at.off > end.offset {
		return cp, false
	}
	n := cp.base + int64(cp.committed)
	if n > 0 {
		if ib.old == nil {
			return cp, false
		}
		var e [indexEntry]byte
		if _, err := ib.old.ReadAt(e[:], (n-1)*indexEntry); err != nil {
			return cp, false
		}
		if s.checkRecordFrame(decodeLoc(e[:])) != nil {
			return cp, false
		}
	}
	for seg := 2; seg <= cp.at.seg; seg++ {
		if !s.linkMatches(seg) {
			return cp, false
		}
	}
	return cp, true
}

// skipTo takes the first n entries of INDEX as they are.
func (b *indexBuilder) skipTo(n int64) {
	b.n = n
	if b.old != nil {
		b.r = bufio.NewReaderSize(io.NewSectionReader(b.old, n*indexEntry, math.MaxInt64-n*indexEntry), 1<<16)
	}
}

// readFrameAt reads the frame at l.
func (s *store) readFrameAt(l loc) (typ byte, payload []byte, err error) {
	f, err := s.openFile(segName(l.seg), os.O_RDONLY)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	var hdr [frameHeader]byte
	if _, err := f.ReadAt(hdr[:], l.off); err != nil {
		return 0, nil, err
	}
	length := binary.LittleEndian.Uint32(hdr[:])
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	if int64(length) > fi.Size()-l.off-frameHeader {
		return 0, nil, io.ErrUnexpectedEOF
	}
	payload = make([]byte, length)
	if _, err := f.ReadAt(payload, l.off+frameHeader); err != nil {
		return 0, nil, err
	}
	if crc32.Update(crc32.Checksum(hdr[8:9], castagnoli), castagnoli, payload) != binary.LittleEndian.Uint32(hdr[4:]) {
		return 0, nil, io.ErrUnexpectedEOF
	}
	return hdr[8], payload, nil
}

// checkRecordFrame checks that a whole record frame starts at l.
func (s *store) checkRecordFrame(l loc) error {
	typ, _, err := s.readFrameAt(l)
	if err == nil && typ != frameRecord {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// linkMatches reports whether segment n starts with a link that gives the
// size segment n-1 has.
func (s *store) linkMatches(n int) bool {
	typ, payload, err := s.readFrameAt(loc{n, 0})
	return err == nil && typ == frameLink && len(payload) == 8 &&
		int64(binary.LittleEndian.Uint64(payload)) == s.fileSize(n-1)
}
