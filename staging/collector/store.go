package collector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// The store is a directory (mode 0700) of append-only segment files (mode
// 0600) named seg-NNNNNNNN.log, holding frames:
//
//	u32 payload length (little-endian)
//	u32 CRC-32C (Castagnoli) of the type byte and the payload
//	u8  type
//	payload
//
// Frame types and payloads:
//
//	frameLog    a new log begins (a cold boot): the boot id
//	frameKernel a new kernel instance continues the log (a kexec): the boot id
//	frameRecord one measurement record, as binary_runtime_measurements
//	            shows it (SHA-1 column, the kernel's byte order)
//	frameSeal   the records written since the last seal form a batch that
//	            is durable: u64 count
//	frameCommit the kernel deleted the last sealed batch
//	frameAbort  the kernel kept the last sealed batch (it is still in its
//	            lists, or kexec carried it): its records are not part of
//	            the log
//	frameLink   the first frame of every segment but the first: u64 size
//	            of the previous segment when this one was started, so
//	            that a truncated or missing segment is detected
//
// A batch is written, sealed and fsynced (file and directory) before the
// kernel is asked to delete it; the commit follows the kernel's answer.
// Records are numbered from the start of their log, counting committed
// batches only.
const (
	frameLog    byte = 1
	frameKernel byte = 2
	frameRecord byte = 3
	frameSeal   byte = 4
	frameCommit byte = 5
	frameAbort  byte = 6
	frameLink   byte = 7
)

const (
	frameHeader     = 9
	maxFramePayload = 64 << 20 // far above any record; bounds allocation on corrupt input
	segmentLimit    = 64 << 20 // a new segment starts past this size
	lockName        = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CorruptError reports store damage that recovery cannot repair: a frame
// whose checksum is wrong; a length that is impossible, or runs past the
// end of a segment other than the last, or past the end of the last with
// whole frames after it; a segment shorter than the next one's link says,
// or missing; or frames in an impossible order. Nothing is skipped
// silently: only a short last frame of the last segment (a torn write) is
// cut.
type CorruptError struct {
	Segment string // file name
	Offset  int64  // byte offset of the bad frame in the segment
	// Record is the number, within its log, the next record would have
	// had: the first record that cannot be trusted.
	Record int
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("collector: store corrupt at %s offset %d (record %d): %s", e.Segment, e.Offset, e.Record, e.Reason)
}

// batchState is the state of the last sealed batch.
type batchState int

const (
	batchNone    batchState = iota // no batch, or the last one was resolved
	batchPending                   // sealed, neither committed nor aborted
)

// logState is what recovery learns about the newest log in the store.
type logState struct {
	bootIDs []string // boot ids of the log's kernels, oldest first
	// records are the committed records of the log, in order. Kept in
	// memory: they are what the collector serves.
	records [][]byte
	// pending holds the records of a sealed batch awaiting its kernel's
	// answer, and unsealed the records written after the last seal.
	pending  [][]byte
	state    batchState
	unsealed [][]byte
}

// store is an open store directory.
type store struct {
	dir  string
	lock *os.File
	seg  *os.File // the segment being appended to
	segN int
	size int64
	// durable is the size of the current segment at its last fsync:
	// what a power loss would leave.
	durable int64
	buf     []byte // frame scratch
	log     logState
	// truncated reports what recovery cut off at the torn tail.
	truncated int64
}

// openStore opens or creates the store in dir, takes its lock (one
// collector per store), and recovers: a torn frame at the end of the last
// segment and records written after the last seal are cut off (they were
// never sealed, so the kernel was never asked to delete them).
func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("collector: store %s is in use by another collector: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("collector: locking store %s: %w", dir, err)
	}
	s := &store{dir: dir, lock: lock}
	if err := s.recover(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// ErrLocked is returned when another collector holds the store.
var ErrLocked = errors.New("store locked")

func (s *store) close() error {
	var err error
	if s.seg != nil {
		err = s.seg.Close()
		s.seg = nil
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
	return err
}

func segName(n int) string { return fmt.Sprintf("seg-%08d.log", n) }

// segments lists the segment numbers in order.
func (s *store) segments() ([]int, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var ns []int
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "seg-%08d.log", &n); err == nil && e.Name() == segName(n) {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	return ns, nil
}

// recover reads every segment, rebuilds the newest log's state, cuts a torn
// tail, and opens the last segment for appending.
func (s *store) recover() error {
	ns, err := s.segments()
	if err != nil {
		return err
	}
	var st logState
	// Where the unsealed records of the last segment start, to cut them.
	cutSeg, cutOff := -1, int64(0)
	torn := int64(-1) // where the last segment's torn tail starts
	prev := int64(-1) // the previous segment's size
	for i, n := range ns {
		if n != i+1 {
			return &CorruptError{Segment: segName(i + 1), Record: st.next(),
				Reason: fmt.Sprintf("segment missing (the next one is %s)", segName(n))}
		}
		last := i == len(ns)-1
		end, size, err := s.scanSegment(n, prev, &st, last, &cutSeg, &cutOff)
		if err != nil {
			return err
		}
		if last {
			torn = end
		}
		prev = size
	}
	// Repair only once the whole store has been checked: a store with
	// damage is left as it is.
	if len(st.unsealed) > 0 && cutSeg != ns[len(ns)-1] {
		return &CorruptError{Segment: segName(cutSeg), Offset: cutOff, Record: len(st.records),
			Reason: "unsealed records are followed by another segment"}
	}
	if torn >= 0 {
		n := ns[len(ns)-1]
		s.truncated += s.fileSize(n) - torn
		if err := os.Truncate(filepath.Join(s.dir, segName(n)), torn); err != nil {
			return err
		}
	}
	if len(st.unsealed) > 0 {
		s.truncated += s.fileSize(cutSeg) - cutOff
		if err := os.Truncate(filepath.Join(s.dir, segName(cutSeg)), cutOff); err != nil {
			return err
		}
		st.unsealed = nil
	}
	s.log = st
	if len(ns) == 0 {
		return s.openSegment(1)
	}
	return s.openSegment(ns[len(ns)-1])
}

func (s *store) fileSize(n int) int64 {
	fi, err := os.Stat(filepath.Join(s.dir, segName(n)))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// scanSegment applies the frames of segment n to st; prev is the previous
// segment's size (-1 for the first). It returns the segment's size and,
// for the last segment, the offset to truncate a torn tail at, or -1.
func (s *store) scanSegment(n int, prev int64, st *logState, last bool, cutSeg *int, cutOff *int64) (torn, size int64, err error) {
	name := segName(n)
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return -1, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return -1, 0, err
	}
	size = fi.Size()
	r := bufio.NewReaderSize(f, 1<<16)
	var off int64
	var hdr [frameHeader]byte
	corrupt := func(reason string) error {
		return &CorruptError{Segment: name, Offset: off, Record: st.next(), Reason: reason}
	}
	for off < size {
		if size-off < frameHeader {
			if last {
				return off, size, nil // torn header
			}
			return -1, size, corrupt("truncated frame header")
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return -1, size, err
		}
		length := int64(binary.LittleEndian.Uint32(hdr[0:]))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		typ := hdr[8]
		if length > maxFramePayload {
			return -1, size, corrupt(fmt.Sprintf("frame length %d is impossible", length))
		}
		if off+frameHeader+length > size {
			if !last {
				return -1, size, corrupt("frame runs past the end of the segment")
			}
			// A torn payload, unless whole frames follow: then the
			// length field is damaged, and cutting here would drop
			// records that are durable (and perhaps deleted from the
			// kernel).
			rest, err := io.ReadAll(r)
			if err != nil {
				return -1, size, err
			}
			if p := nextFrame(rest); p >= 0 {
				return -1, size, corrupt(fmt.Sprintf("frame length %d runs past the end of the segment, and a whole frame follows at offset %d", length, off+frameHeader+int64(p)))
			}
			return off, size, nil
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return -1, size, err
		}
		crc := crc32.Update(crc32.Checksum([]byte{typ}, castagnoli), castagnoli, payload)
		if crc != sum {
			return -1, size, corrupt("checksum mismatch")
		}
		if off == 0 && prev >= 0 {
			// The link to the previous segment.
			if typ != frameLink || len(payload) != 8 {
				return -1, size, corrupt("segment does not start with its link to the previous one")
			}
			if want := int64(binary.LittleEndian.Uint64(payload)); want != prev {
				return -1, size, &CorruptError{Segment: segName(n - 1), Offset: min(want, prev), Record: st.next(),
					Reason: fmt.Sprintf("segment is %d bytes, %s says it was %d", prev, name, want)}
			}
		} else if typ == frameLink {
			return -1, size, corrupt("segment link inside a segment")
		} else if err := st.apply(typ, payload); err != nil {
			return -1, size, corrupt(err.Error())
		}
		if typ == frameRecord && len(st.unsealed) == 1 {
			*cutSeg, *cutOff = n, off
		}
		off += frameHeader + length
	}
	return -1, size, nil
}

// nextFrame returns the offset of the first whole frame with a valid
// checksum in b, or -1.
func nextFrame(b []byte) int {
	for p := 0; p+frameHeader <= len(b); p++ {
		length := int64(binary.LittleEndian.Uint32(b[p:]))
		typ := b[p+8]
		if typ < frameLog || typ > frameLink || length > int64(len(b)-p-frameHeader) {
			continue
		}
		payload := b[p+frameHeader : p+frameHeader+int(length)]
		if crc32.Update(crc32.Checksum([]byte{typ}, castagnoli), castagnoli, payload) == binary.LittleEndian.Uint32(b[p+4:]) {
			return p
		}
	}
	return -1
}

// next is the number, in its log, of the next record frame: the first
// record a damaged frame makes untrustworthy.
func (st *logState) next() int { return len(st.records) + len(st.unsealed) }

// apply updates the log state with one frame.
func (st *logState) apply(typ byte, payload []byte) error {
	switch typ {
	case frameLog:
		if len(st.unsealed) > 0 || st.state == batchPending {
			return errors.New("a new log starts inside a batch")
		}
		*st = logState{bootIDs: []string{string(payload)}}
	case frameKernel:
		if len(st.unsealed) > 0 || st.state == batchPending {
			return errors.New("a new kernel starts inside a batch")
		}
		st.bootIDs = append(st.bootIDs, string(payload))
	case frameRecord:
		if len(st.bootIDs) == 0 {
			return errors.New("record before any log")
		}
		if st.state == batchPending {
			return errors.New("record after an unresolved batch")
		}
		st.unsealed = append(st.unsealed, payload)
	case frameSeal:
		if len(payload) != 8 || binary.LittleEndian.Uint64(payload) != uint64(len(st.unsealed)) {
			return fmt.Errorf("seal does not match the %d records before it", len(st.unsealed))
		}
		if st.state == batchPending {
			return errors.New("seal after an unresolved batch")
		}
		st.pending, st.unsealed, st.state = st.unsealed, nil, batchPending
	case frameCommit, frameAbort:
		if st.state != batchPending {
			return errors.New("commit or abort without a sealed batch")
		}
		if typ == frameCommit {
			st.records = append(st.records, st.pending...)
		}
		st.pending, st.state = nil, batchNone
	default:
		return fmt.Errorf("unknown frame type %d", typ)
	}
	return nil
}

func (s *store) openSegment(n int) error {
	if s.seg != nil {
		s.seg.Close()
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segName(n)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.seg, s.segN, s.size, s.durable = f, n, fi.Size(), fi.Size()
	if s.size == 0 && n > 1 {
		// A new segment starts with the size of the previous one.
		var size [8]byte
		binary.LittleEndian.PutUint64(size[:], uint64(s.fileSize(n-1)))
		if _, err := f.Write(appendFrame(nil, frame{frameLink, size[:]})); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		s.size, s.durable = fi.Size(), fi.Size()
	}
	return syncDir(s.dir)
}

// appendFrame appends f, framed, to b.
func appendFrame(b []byte, f frame) []byte {
	var hdr [frameHeader]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(f.payload)))
	crc := crc32.Update(crc32.Checksum([]byte{f.typ}, castagnoli), castagnoli, f.payload)
	binary.LittleEndian.PutUint32(hdr[4:], crc)
	hdr[8] = f.typ
	b = append(b, hdr[:]...)
	return append(b, f.payload...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// appendFrames writes frames as one write to the current segment (a new
// one when the current one is past its limit), applies them to the state,
// and, when durable is set, fsyncs the segment and the directory.
func (s *store) appendFrames(durable bool, frames ...frame) error {
	if s.size > segmentLimit {
		if err := s.openSegment(s.segN + 1); err != nil {
			return err
		}
	}
	b := s.buf[:0]
	for _, f := range frames {
		b = appendFrame(b, f)
	}
	s.buf = b
	if _, err := s.seg.Write(b); err != nil {
		return err
	}
	s.size += int64(len(b))
	for _, f := range frames {
		if err := s.log.apply(f.typ, f.payload); err != nil {
			return fmt.Errorf("collector: internal: %w", err)
		}
	}
	if durable {
		return s.sync()
	}
	return nil
}

type frame struct {
	typ     byte
	payload []byte
}

// startLog begins a new log (a cold boot) for bootID.
func (s *store) startLog(bootID string) error {
	return s.appendFrames(true, frame{frameLog, []byte(bootID)})
}

// continueLog records that bootID, a kexec'd kernel, continues the log.
func (s *store) continueLog(bootID string) error {
	return s.appendFrames(true, frame{frameKernel, []byte(bootID)})
}

// writeRecords writes records and their seal, then, if beforeSync lets it,
// fsyncs the segment and the directory. Until then a power loss may drop
// or tear the batch, which recovery cuts off.
func (s *store) writeRecords(records [][]byte, beforeSync func() error) error {
	frames := make([]frame, 0, len(records)+1)
	for _, r := range records {
		frames = append(frames, frame{frameRecord, r})
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(records)))
	frames = append(frames, frame{frameSeal, n[:]})
	if err := s.appendFrames(false, frames...); err != nil {
		return err
	}
	if beforeSync != nil {
		if err := beforeSync(); err != nil {
			return err
		}
	}
	return s.sync()
}

// sync makes everything written durable.
func (s *store) sync() error {
	if err := s.seg.Sync(); err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.durable = s.size
	return nil
}

// resolve commits or aborts the pending batch.
func (s *store) resolve(commit bool) error {
	typ := frameAbort
	if commit {
		typ = frameCommit
	}
	return s.appendFrames(true, frame{typ, nil})
}

// currentBoot returns the newest kernel's boot id of the newest log, or "".
func (s *store) currentBoot() string {
	if n := len(s.log.bootIDs); n > 0 {
		return s.log.bootIDs[n-1]
	}
	return ""
}

// String describes the store for logs.
func (s *store) String() string {
	return fmt.Sprintf("store %s: %d records, boots %s", s.dir, len(s.log.records), strings.Join(s.log.bootIDs, ","))
}
