package collector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// The store is a directory (mode 0700, owned by the collector's user, not
// writable by its group or others) holding a manifest, MANIFEST, and
// append-only segment files (mode 0600) named seg-NNNNNNNN.log. Every file
// is opened relative to the locked directory, never through a symlink.
//
// Segments hold frames:
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
//	            is durable: u64 count, u8 flavour (0 prompt: the whole
//	            staged list, deleted with D; 1 N: the head of the current
//	            list, deleted with N)
//	frameCommit the kernel deleted the last sealed batch
//	frameAbort  the kernel kept the last sealed batch (it is still in its
//	            lists, or kexec carried it): its records are not part of
//	            the log
//	frameLink   the first frame of every segment but the first: u64 size
//	            of the previous segment when this one was started, so
//	            that a truncated or missing segment is detected
//
// INDEX lists where every committed record of every log is, in order: per
// record, u32 segment number and u64 offset of its frame (little-endian,
// indexEntry bytes). Record i of the newest log is entry base+i, where
// base counts the committed records of the older logs; serving from record
// N reads only its entries and frames. INDEX is derived: it is written
// after the manifest, never fsynced, checked against the segments by every
// recovery and rewritten from the first entry that differs. The manifest
// stays the source of truth.
//
// MANIFEST makes the end of the store verifiable. It holds two slots of
// manifestSlot bytes, written in turn (sequence number modulo 2) and
// fsynced, so that a torn write leaves the other slot whole:
//
//	[8]byte "IMASIMMF"
//	u32     format version (formatVersion)
//	u32     segment number of the durable end
//	u64     sequence number
//	u64     durable end: the size of that segment
//	u64     committed records of the newest log at that point
//	u64     records of the sealed batch awaiting its answer, or 0
//	[12]byte zero
//	u32     CRC-32C of the bytes before it
//
// Every durable point (a seal before the kernel is asked to delete, a
// commit or abort, a new log or kernel, a new segment) fsyncs the segment
// and then writes the manifest. Everything up to the durable end must be
// there, whole: a segment shorter than that, a missing segment, or a
// record count that differs is damage (a CorruptError), never a torn write.
// What lies after the durable end was never acted on (unsealed records, a
// seal whose manifest write did not finish, so the kernel was never asked,
// or a commit the restart decides again from the kernel) and recovery cuts
// it. Records are numbered from the start of their log, counting committed
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
	linkFrameSize   = frameHeader + 8
	manifestName    = "MANIFEST"
	indexName       = "INDEX"
	indexEntry      = 12
	manifestSlot    = 64
	manifestMagic   = "IMASIMMF"
	// formatVersion is the store format. Version 1 had no manifest (and
	// a LOCK file); it is refused.
	formatVersion = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CorruptError reports store damage that recovery cannot repair: a frame
// whose checksum is wrong; a length that is impossible or runs past the
// end of its segment; a segment shorter than the next one's link or the
// manifest says, or missing; a manifest that is unreadable or disagrees
// with the segments; or frames in an impossible order. Nothing is skipped
// silently: only what lies after the manifest's durable end (never acted
// on) is cut.
type CorruptError struct {
	Segment string // file name (a segment, or MANIFEST)
	Offset  int64  // byte offset of the bad frame in the segment, or where its data stops
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
	// committed is the number of committed records of the log. They stay
	// on disk: INDEX gives the location of each (see indexName).
	committed int
	// base is the INDEX position of the log's first record: the committed
	// records of the older logs.
	base int64
	// pending holds the records of a sealed batch awaiting its kernel's
	// answer, pendingLoc where they are, and pendingFlavour how it was
	// taken; unsealed and unsealedLoc the records written after the last
	// seal.
	pending        [][]byte
	pendingLoc     []loc
	pendingFlavour Flavour
	state          batchState
	unsealed       [][]byte
	unsealedLoc    []loc
	// newlyCommitted holds the locations of the records the last applied
	// frame committed, for the caller to add to INDEX.
	newlyCommitted []loc
}

// loc is where a frame starts: its segment and offset.
type loc struct {
	seg int
	off int64
}

// manifest is one slot of MANIFEST.
type manifest struct {
	seq      uint64
	seg      int
	offset   int64
	records  uint64
	pending  uint64
	haveSlot bool
}

func (m manifest) encode() []byte {
	b := make([]byte, manifestSlot)
	copy(b, manifestMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(m.seg))
	binary.LittleEndian.PutUint64(b[16:], m.seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(m.offset))
	binary.LittleEndian.PutUint64(b[32:], m.records)
	binary.LittleEndian.PutUint64(b[40:], m.pending)
	binary.LittleEndian.PutUint32(b[60:], crc32.Checksum(b[:60], castagnoli))
	return b
}

// decodeManifestSlot returns the slot in b, ok false if it is not a whole
// slot of this format, or an error for another format version.
func decodeManifestSlot(b []byte) (m manifest, ok bool, err error) {
	if len(b) < manifestSlot || string(b[:8]) != manifestMagic ||
		binary.LittleEndian.Uint32(b[60:]) != crc32.Checksum(b[:60], castagnoli) {
		return m, false, nil
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return m, false, fmt.Errorf("collector: store format version %d is not supported (this collector reads version %d)", v, formatVersion)
	}
	m = manifest{seg: int(binary.LittleEndian.Uint32(b[12:])), seq: binary.LittleEndian.Uint64(b[16:]),
		offset: int64(binary.LittleEndian.Uint64(b[24:])), records: binary.LittleEndian.Uint64(b[32:]),
		pending: binary.LittleEndian.Uint64(b[40:]), haveSlot: true}
	if m.seg < 1 || m.offset < 0 {
		return m, false, nil
	}
	return m, true, nil
}

// store is an open store directory.
type store struct {
	dir  string
	dirf *os.File // the store directory, flocked while open
	manf *os.File // MANIFEST
	idx  *os.File // INDEX
	// ib, from recovery to finishRecovery, holds INDEX as the segments
	// say it should be.
	ib *indexBuilder
	// idxBacklog holds the entries of the last committed records that
	// INDEX does not have yet (its write failed: a full disk).
	idxBacklog []loc
	man        manifest // the manifest last written
	seg        *os.File // the segment being appended to
	segN       int
	size       int64
	// durable is the size of the current segment at its last durable
	// point: what a crash or power loss leaves, and what the manifest
	// says.
	durable int64
	buf     []byte // frame scratch
	log     logState
	// truncated reports what recovery cut off after the durable end.
	truncated int64
	// recovering is set from recover to finishRecovery: tail holds the
	// records found after the durable end, still in the segment, and
	// newerSegment says a segment was being started after it.
	recovering   bool
	tail         [][]byte
	newerSegment bool
	// failed is set when a failed write could not be undone: the store
	// must be reopened (recovery cuts what the manifest does not cover).
	failed error
	// writeHook, if set, replaces the segment writes. No kernel
	// counterpart; exists so that tests can make a write fail half-way.
	writeHook func(f *os.File, b []byte) (int, error)
}

// openStore opens or creates the store in dir, takes its lock (one
// collector per store), and recovers: what lies after the manifest's
// durable end is cut off (the kernel was never asked to delete it).
//
// The lock is an flock on the store directory itself, opened
// O_DIRECTORY|O_NOFOLLOW: there is no lock file to remove or replace
// under a running collector. A directory owned by another user, or
// writable by its group or by others, is refused: whoever can write it can
// swap segments under the collector.
func openStore(dir string, verify bool) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			err = syscall.ELOOP // O_DIRECTORY answers ENOTDIR for a symlink
		}
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	dirf := os.NewFile(uintptr(fd), dir)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		dirf.Close()
		return nil, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	if uid := os.Geteuid(); st.Uid != uint32(uid) {
		dirf.Close()
		return nil, fmt.Errorf("collector: store directory %s is owned by uid %d, not by this collector's uid %d", dir, st.Uid, uid)
	}
	if st.Mode&0o022 != 0 {
		dirf.Close()
		return nil, fmt.Errorf("collector: store directory %s has mode %04o: writable by its group or others", dir, st.Mode&0o7777)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		dirf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("collector: store %s is in use by another collector: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("collector: locking store %s: %w", dir, err)
	}
	if st.Mode&0o7777 != 0o700 {
		if err := dirf.Chmod(0o700); err != nil {
			dirf.Close()
			return nil, err
		}
	}
	s := &store{dir: dir, dirf: dirf}
	if err := s.recover(verify); err != nil {
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
	if s.manf != nil {
		s.manf.Close()
		s.manf = nil
	}
	if s.idx != nil {
		s.idx.Close()
		s.idx = nil
	}
	if s.ib != nil {
		s.ib.discard()
		s.ib = nil
	}
	if s.dirf != nil {
		s.dirf.Close() // releases the flock
		s.dirf = nil
	}
	return err
}

// openFile opens name in the store directory, never through a symlink.
func (s *store) openFile(name string, flag int) (*os.File, error) {
	fd, err := syscall.Openat(int(s.dirf.Fd()), name, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(s.dir, name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(s.dir, name)), nil
}

func segName(n int) string { return fmt.Sprintf("seg-%08d.log", n) }

// segments lists the segment numbers in order, and whether MANIFEST exists.
func (s *store) segments() (ns []int, haveManifest bool, err error) {
	if _, err := s.dirf.Seek(0, io.SeekStart); err != nil {
		return nil, false, err
	}
	ents, err := s.dirf.ReadDir(-1)
	if err != nil {
		return nil, false, err
	}
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "seg-%08d.log", &n); err == nil && e.Name() == segName(n) {
			ns = append(ns, n)
		}
		haveManifest = haveManifest || e.Name() == manifestName
	}
	sort.Ints(ns)
	return ns, haveManifest, nil
}

// readManifest opens MANIFEST and returns its newest whole slot.
func (s *store) readManifest() error {
	f, err := s.openFile(manifestName, os.O_RDWR)
	if err != nil {
		return err
	}
	s.manf = f
	b := make([]byte, 2*manifestSlot)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return err
	}
	var best manifest
	for i := 0; i < 2; i++ {
		m, ok, err := decodeManifestSlot(b[i*manifestSlot : n])
		if err != nil {
			return err
		}
		if ok && (!best.haveSlot || m.seq > best.seq) {
			best = m
		}
		if (i+1)*manifestSlot > n {
			break
		}
	}
	if !best.haveSlot {
		return &CorruptError{Segment: manifestName, Reason: "no whole manifest slot"}
	}
	s.man = best
	return nil
}

// writeManifest records the current durable end: the current segment's
// size and the log's counts, in the slot the sequence number selects.
func (s *store) writeManifest(st *logState) error {
	m := manifest{seq: s.man.seq + 1, seg: s.segN, offset: s.size, records: uint64(st.committed), haveSlot: true}
	if st.state == batchPending {
		m.pending = uint64(len(st.pending))
	}
	if _, err := s.manf.WriteAt(m.encode(), int64(m.seq%2)*manifestSlot); err != nil {
		return err
	}
	if err := s.manf.Sync(); err != nil {
		return err
	}
	s.man = m
	return nil
}

// create makes a new store: the manifest (segment 1, empty) first, so
// that a store with segments always has one.
func (s *store) create() error {
	f, err := s.openFile(manifestName, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	s.manf = f
	s.segN = 1
	if err := s.writeManifest(&logState{}); err != nil {
		return err
	}
	return s.dirf.Sync()
}

// recover checks the store against its manifest, rebuilds the newest
// log's state, cuts what lies after the durable end, and opens the
// durable end's segment for appending.
//
// Unless verify is set, a checkpoint (see checkpointName) lets it start
// at the end of the last resolved batch instead of the first segment:
// opening then costs the same for any size of store, and a damaged frame
// before the checkpoint is found when it is served instead.
func (s *store) recover(verify bool) error {
	ns, haveManifest, err := s.segments()
	if err != nil {
		return err
	}
	if !haveManifest {
		if len(ns) > 0 {
			return fmt.Errorf("collector: store %s has segments but no %s: store format version 1 is not supported (this collector reads version %d)", s.dir, manifestName, formatVersion)
		}
		if err := s.create(); err != nil {
			return err
		}
		if s.idx, err = s.openFile(indexName, os.O_RDWR|os.O_CREATE|os.O_TRUNC); err != nil {
			return err
		}
		return s.openSegment(1)
	}
	if err := s.readManifest(); err != nil {
		return err
	}
	ib, err := s.newIndexBuilder()
	if err != nil {
		return err
	}
	s.ib = ib
	end, last := s.man, 0
	if len(ns) > 0 {
		last = ns[len(ns)-1]
	}
	var st logState
	start := loc{seg: 1}
	if !verify {
		if cp, ok := s.usableCheckpoint(end, ib); ok {
			st = logState{bootIDs: cp.bootIDs, base: cp.base, committed: cp.committed}
			start = cp.at
			ib.skipTo(cp.base + int64(cp.committed))
		}
	}
	err = s.scan(ns, end, &st, ib, start)
	if err == nil && start != (loc{seg: 1}) {
		err = st.matches(end)
	}
	if err != nil && start != (loc{seg: 1}) {
		// The checkpoint led nowhere: the whole scan says why.
		ib.discard()
		if ib, err = s.newIndexBuilder(); err != nil {
			return err
		}
		s.ib, st = ib, logState{}
		err = s.scan(ns, end, &st, ib, loc{seg: 1})
	}
	if err != nil {
		return err
	}
	switch {
	case last < end.seg && !(end.seg == 1 && end.offset == 0):
		return &CorruptError{Segment: segName(end.seg), Record: st.committed,
			Reason: fmt.Sprintf("segment missing: the manifest says %d bytes of it are durable", end.offset)}
	case last > end.seg+1:
		return &CorruptError{Segment: segName(end.seg + 2), Record: st.committed,
			Reason: fmt.Sprintf("segment is newer than the manifest (whose durable end is in %s)", segName(end.seg))}
	case last == end.seg+1:
		// A crash while a segment was being started, before the
		// manifest moved to it: it holds at most its link.
		if size := s.fileSize(last); size > linkFrameSize {
			return &CorruptError{Segment: segName(last), Record: st.committed,
				Reason: fmt.Sprintf("segment of %d bytes is newer than the manifest (whose durable end is in %s)", size, segName(end.seg))}
		}
	}
	if err := st.matches(end); err != nil {
		return err
	}
	s.log = st
	s.recovering, s.newerSegment = true, last == end.seg+1
	if last >= end.seg {
		s.tail, err = s.tailRecords(end)
	}
	return err
}

// matches checks the state found at the durable end against the manifest.
func (st *logState) matches(end manifest) error {
	if uint64(st.committed) != end.records || st.state == batchPending != (end.pending > 0) ||
		st.state == batchPending && uint64(len(st.pending)) != end.pending || len(st.unsealed) > 0 {
		return &CorruptError{Segment: segName(end.seg), Offset: end.offset, Record: st.committed,
			Reason: fmt.Sprintf("the segments hold %d committed records, %d pending and %d unsealed at the durable end; the manifest says %d committed and %d pending",
				st.committed, len(st.pending), len(st.unsealed), end.records, end.pending)}
	}
	return nil
}

// scan applies the frames from start to the durable end to st, checking
// each segment's link to the previous one, and checks or rebuilds INDEX
// with ib.
func (s *store) scan(ns []int, end manifest, st *logState, ib *indexBuilder, start loc) error {
	prev := int64(-1) // the previous segment's size
	for i, n := range ns {
		if n != i+1 {
			return &CorruptError{Segment: segName(i + 1), Record: st.next(),
				Reason: fmt.Sprintf("segment missing (the next one is %s)", segName(n))}
		}
		if n > end.seg {
			break
		}
		if n < start.seg {
			prev = s.fileSize(n)
			continue
		}
		from := int64(0)
		if n == start.seg {
			from = start.off
		}
		size, err := s.scanSegment(n, prev, from, st, end, ib)
		if err != nil {
			return err
		}
		prev = size
	}
	return ib.flush()
}

// tailRecords returns the records of the whole frames that follow the
// durable end: records written and perhaps sealed, whose seal the
// manifest does not cover, so the kernel was never asked to delete them.
func (s *store) tailRecords(end manifest) ([][]byte, error) {
	f, err := s.openFile(segName(end.seg), os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, end.offset, maxFramePayload))
	if err != nil {
		return nil, err
	}
	var recs [][]byte
	for len(b) >= frameHeader {
		length := int(binary.LittleEndian.Uint32(b))
		if length > len(b)-frameHeader {
			break
		}
		typ, payload := b[8], b[frameHeader:frameHeader+length]
		if crc32.Update(crc32.Checksum([]byte{typ}, castagnoli), castagnoli, payload) != binary.LittleEndian.Uint32(b[4:]) {
			break
		}
		if typ == frameRecord {
			recs = append(recs, payload)
		}
		b = b[frameHeader+length:]
	}
	return recs, nil
}

// finishRecovery cuts what lies after the durable end (see tailRecords)
// and opens the store for appending. Open calls it once it has checked
// that the kernel still holds the tail's records.
func (s *store) finishRecovery() error {
	if !s.recovering {
		return nil
	}
	s.recovering = false
	if err := s.installIndex(s.ib); err != nil {
		return err
	}
	s.ib = nil
	end := s.man
	if s.newerSegment {
		// A crash while a segment was being started, before the
		// manifest moved to it: it holds at most its link.
		if err := s.truncateFile(end.seg+1, 0); err != nil {
			return err
		}
	}
	if size := s.fileSize(end.seg); size > end.offset {
		s.truncated += size - end.offset
		if err := s.truncateFile(end.seg, end.offset); err != nil {
			return err
		}
	}
	s.tail = nil
	if err := s.openSegment(end.seg); err != nil {
		return err
	}
	if s.newerSegment {
		if err := s.openSegment(end.seg + 1); err != nil {
			return err
		}
	}
	s.checkpoint()
	return nil
}

func (s *store) fileSize(n int) int64 {
	f, err := s.openFile(segName(n), os.O_RDONLY)
	if err != nil {
		return 0
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (s *store) truncateFile(n int, size int64) error {
	f, err := s.openFile(segName(n), os.O_WRONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// scanSegment applies the frames of segment n to st; prev is the previous
// segment's size (-1 for the first). The segment of the durable end is
// read up to it only, and must reach it. It returns the segment's size.
func (s *store) scanSegment(n int, prev, from int64, st *logState, end manifest, ib *indexBuilder) (size int64, err error) {
	name := segName(n)
	f, err := s.openFile(name, os.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size = fi.Size()
	stop := size
	if n == end.seg {
		stop = end.offset
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, from, size-from), 1<<16)
	off := from
	var hdr [frameHeader]byte
	corrupt := func(reason string) error {
		return &CorruptError{Segment: name, Offset: off, Record: st.next(), Reason: reason}
	}
	for off < stop {
		if size-off < frameHeader {
			if off == size {
				return size, &CorruptError{Segment: name, Offset: off, Record: st.committed,
					Reason: fmt.Sprintf("segment ends at %d bytes; the manifest says %d are durable", size, end.offset)}
			}
			return size, corrupt("truncated frame header")
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return size, err
		}
		length := int64(binary.LittleEndian.Uint32(hdr[0:]))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		typ := hdr[8]
		if length > maxFramePayload {
			return size, corrupt(fmt.Sprintf("frame length %d is impossible", length))
		}
		if off+frameHeader+length > size {
			return size, corrupt(fmt.Sprintf("frame length %d runs past the end of the segment", length))
		}
		if off+frameHeader+length > stop {
			return size, corrupt(fmt.Sprintf("frame length %d runs past the durable end %d", length, stop))
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return size, err
		}
		crc := crc32.Update(crc32.Checksum([]byte{typ}, castagnoli), castagnoli, payload)
		if crc != sum {
			return size, corrupt("checksum mismatch")
		}
		if off == 0 && prev >= 0 {
			// The link to the previous segment.
			if typ != frameLink || len(payload) != 8 {
				return size, corrupt("segment does not start with its link to the previous one")
			}
			if want := int64(binary.LittleEndian.Uint64(payload)); want != prev {
				return size, &CorruptError{Segment: segName(n - 1), Offset: min(want, prev), Record: st.next(),
					Reason: fmt.Sprintf("segment is %d bytes, %s says it was %d", prev, name, want)}
			}
		} else if typ == frameLink {
			return size, corrupt("segment link inside a segment")
		} else if err := st.apply(typ, payload, loc{n, off}); err != nil {
			return size, corrupt(err.Error())
		}
		for _, l := range st.newlyCommitted {
			if err := ib.add(l); err != nil {
				return size, err
			}
		}
		st.newlyCommitted = nil
		off += frameHeader + length
	}
	return size, nil
}

// next is the number, in its log, of the next record frame: the first
// record a damaged frame makes untrustworthy.
func (st *logState) next() int { return st.committed + len(st.unsealed) }

// apply updates the log state with one frame, found at at.
func (st *logState) apply(typ byte, payload []byte, at loc) error {
	switch typ {
	case frameLog:
		if len(st.unsealed) > 0 || st.state == batchPending {
			return errors.New("a new log starts inside a batch")
		}
		*st = logState{bootIDs: []string{string(payload)}, base: st.base + int64(st.committed)}
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
		st.unsealedLoc = append(st.unsealedLoc, at)
	case frameSeal:
		if len(payload) != 9 || binary.LittleEndian.Uint64(payload) != uint64(len(st.unsealed)) {
			return fmt.Errorf("seal does not match the %d records before it", len(st.unsealed))
		}
		if payload[8] > byte(DeleteN) {
			return fmt.Errorf("seal of unknown flavour %d", payload[8])
		}
		if st.state == batchPending {
			return errors.New("seal after an unresolved batch")
		}
		st.pending, st.unsealed, st.state = st.unsealed, nil, batchPending
		st.pendingLoc, st.unsealedLoc = st.unsealedLoc, nil
		st.pendingFlavour = Flavour(payload[8])
	case frameCommit, frameAbort:
		if st.state != batchPending {
			return errors.New("commit or abort without a sealed batch")
		}
		if typ == frameCommit {
			st.committed += len(st.pending)
			st.newlyCommitted = st.pendingLoc
		}
		st.pending, st.pendingLoc, st.state = nil, nil, batchNone
	default:
		return fmt.Errorf("unknown frame type %d", typ)
	}
	return nil
}

// openSegment makes segment n the one appended to, creating it if need be.
// A new segment after the first starts with its link (the size of the
// previous one) and becomes the manifest's durable end. On failure the
// current segment stays as it was.
func (s *store) openSegment(n int) error {
	f, err := s.openFile(segName(n), os.O_WRONLY|os.O_CREATE|os.O_APPEND)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if fi.Size() > 0 || n == 1 {
		if s.seg != nil {
			s.seg.Close()
		}
		s.seg, s.segN, s.size, s.durable = f, n, fi.Size(), fi.Size()
		return s.dirf.Sync()
	}
	// A new segment starts with the size of the previous one.
	var size [8]byte
	binary.LittleEndian.PutUint64(size[:], uint64(s.size))
	link := appendFrame(nil, frame{frameLink, size[:]})
	oldSeg, oldN, oldSize := s.seg, s.segN, s.size
	s.seg, s.segN, s.size = f, n, 0
	err = s.write(link)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = s.dirf.Sync()
	}
	if err == nil {
		if err = s.writeManifest(&s.log); err != nil {
			// The manifest may or may not have moved to the new
			// segment, whose link is durable: either is a
			// consistent store, but this process cannot tell which.
			s.failed = fmt.Errorf("collector: store %s: writing %s failed (%v); reopen the store", s.dir, manifestName, err)
			if oldSeg != nil {
				oldSeg.Close()
			}
			return err
		}
	}
	if err != nil {
		// The manifest still ends in the previous segment: the new one
		// is emptied (recovery would do the same) and forgotten.
		f.Truncate(0)
		f.Close()
		s.seg, s.segN, s.size = oldSeg, oldN, oldSize
		return err
	}
	if oldSeg != nil {
		oldSeg.Close()
	}
	s.durable = s.size
	return nil
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

// write writes b to the current segment, advancing s.size by what was
// written.
func (s *store) write(b []byte) error {
	var n int
	var err error
	if s.writeHook != nil {
		n, err = s.writeHook(s.seg, b)
	} else {
		n, err = s.seg.Write(b)
	}
	s.size += int64(n)
	return err
}

// appendFrames writes frames as one write to the current segment (a new
// one when the current one is past its limit), runs beforeSync (a crash
// there leaves the frames written but not durable), and makes them
// durable: the segment fsynced, then the manifest moved past them. Only
// then are they applied to the log's state.
//
// A write or fsync that fails (a full disk, an I/O error) is undone: the
// segment is cut back to where it was, and the store is as it was before
// the call, so the caller does not ask the kernel to delete anything and
// can try again later. If even the cut fails, the store refuses every
// later write until reopened (recovery cuts what the manifest does not
// cover).
func (s *store) appendFrames(beforeSync func() error, frames ...frame) error {
	if s.failed != nil {
		return s.failed
	}
	if s.size > segmentLimit {
		if err := s.openSegment(s.segN + 1); err != nil {
			return err
		}
	}
	b := s.buf[:0]
	next := s.log // applied to a copy: s.log changes only once durable
	for _, f := range frames {
		at := loc{s.segN, s.size + int64(len(b))}
		b = appendFrame(b, f)
		if err := next.apply(f.typ, f.payload, at); err != nil {
			return fmt.Errorf("collector: internal: %w", err)
		}
	}
	s.buf = b
	start := s.size
	err := s.write(b)
	if err == nil && beforeSync != nil {
		if err := beforeSync(); err != nil {
			return err // a simulated crash: nothing is undone
		}
	}
	if err == nil {
		err = s.seg.Sync()
	}
	if err != nil {
		if terr := s.seg.Truncate(start); terr != nil {
			s.failed = fmt.Errorf("collector: store %s: a failed write (%v) could not be undone (%v); reopen the store", s.dir, err, terr)
		} else {
			s.size = start
		}
		return err
	}
	if err := s.writeManifest(&next); err != nil {
		// The frames are durable in the segment, the manifest may or
		// may not cover them: either is a consistent store (recovery
		// keeps or cuts them), but this process cannot tell which.
		s.failed = fmt.Errorf("collector: store %s: writing %s failed (%v); reopen the store", s.dir, manifestName, err)
		return err
	}
	s.idxBacklog = append(s.idxBacklog, next.newlyCommitted...)
	next.newlyCommitted = nil
	s.log = next
	s.flushIndex() // a failure (a full disk) is retried later
	s.durable = s.size
	s.checkpoint()
	return nil
}

type frame struct {
	typ     byte
	payload []byte
}

// startLog begins a new log (a cold boot) for bootID.
func (s *store) startLog(bootID string) error {
	return s.appendFrames(nil, frame{frameLog, []byte(bootID)})
}

// continueLog records that bootID, a kexec'd kernel, continues the log.
func (s *store) continueLog(bootID string) error {
	return s.appendFrames(nil, frame{frameKernel, []byte(bootID)})
}

// writeRecords writes records and their seal (with the flavour that took
// them), then, if beforeSync lets it, makes them durable. Until then a
// power loss may drop or tear the batch, which recovery cuts off.
func (s *store) writeRecords(records [][]byte, flav Flavour, beforeSync func() error) error {
	frames := make([]frame, 0, len(records)+1)
	for _, r := range records {
		frames = append(frames, frame{frameRecord, r})
	}
	var seal [9]byte
	binary.LittleEndian.PutUint64(seal[:], uint64(len(records)))
	seal[8] = byte(flav)
	frames = append(frames, frame{frameSeal, seal[:]})
	return s.appendFrames(beforeSync, frames...)
}

// resolve commits or aborts the pending batch.
func (s *store) resolve(commit bool) error {
	typ := frameAbort
	if commit {
		typ = frameCommit
	}
	return s.appendFrames(nil, frame{typ, nil})
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
	return fmt.Sprintf("store %s: %d records, boots %s", s.dir, s.log.committed, strings.Join(s.log.bootIDs, ","))
}
