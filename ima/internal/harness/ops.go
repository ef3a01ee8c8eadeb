package harness

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/imasim/imasim/tpmext"
)

// source is where a sequence's choices come from: the fuzzer's bytes
// (byteSource) or a seeded random generator (randSource). The same
// generator turns either into operations, so a fuzz input and a seed
// describe sequences the same way.
type source interface {
	// intn returns a choice in [0, n), n <= 65536.
	intn(n int) int
	// done reports that the source ran out (a byteSource at the end of its
	// input); choices made after that are zero.
	done() bool
}

// byteSource decodes choices from bytes: one byte for n <= 256, two
// (big-endian) above, reduced modulo n.
type byteSource struct {
	data      []byte
	pos       int
	exhausted bool
}

// newByteSource returns a source reading data.
func newByteSource(data []byte) *byteSource { return &byteSource{data: data} }

func (s *byteSource) next() int {
	if s.pos >= len(s.data) {
		s.exhausted = true
		return 0
	}
	b := s.data[s.pos]
	s.pos++
	return int(b)
}

// intn implements source.
func (s *byteSource) intn(n int) int {
	if n <= 1 {
		return 0
	}
	if n <= 256 {
		return s.next() % n
	}
	v := s.next()<<8 | s.next()
	return v % n
}

// done implements source.
func (s *byteSource) done() bool { return s.exhausted }

// randSource draws choices from a seeded generator and records them as the
// bytes a byteSource would decode to the same choices, so that a failing
// seeded sequence can be replayed as a fuzz input.
type randSource struct {
	r     *rand.Rand
	bytes []byte
}

// newRandSource returns a source seeded with seed.
func newRandSource(seed uint64) *randSource {
	return &randSource{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// intn implements source.
func (s *randSource) intn(n int) int {
	if n <= 1 {
		return 0
	}
	v := s.r.IntN(n)
	if n <= 256 {
		s.bytes = append(s.bytes, byte(v))
	} else {
		s.bytes = append(s.bytes, byte(v>>8), byte(v))
	}
	return v
}

// done implements source.
func (s *randSource) done() bool { return false }

// opKind is the kind of an operation of a sequence.
type opKind uint8

const (
	opMeasureFile     opKind = iota // a file measurement
	opMeasureBuffer                 // a buffer measurement (ima-buf)
	opViolation                     // a violation
	opOpen                          // open a file as a task
	opWrite                         // write bytes to an open file
	opRead                          // read from an open file
	opSeek                          // lseek an open file
	opClose                         // close an open file, as its task or another
	opCat                           // open, read to EOF, close
	opEcho                          // open O_WRONLY|O_CREAT|O_TRUNC, write once, close
	opKexecLoad                     // kexec_file_load
	opKexec                         // kexec into a new kernel
	opReboot                        // reboot
	opCollect                       // one collector cycle
	opCollectorSwitch               // point the collector at the running kernel
	opFailAlloc                     // make the next hash-table allocation fail
	numOpKinds
)

// op is one operation. Which fields matter depends on kind.
type op struct {
	kind opKind
	// task is an index into tasks (open, cat, echo); closeAs is the task
	// a close runs as, -1 for the file's own task.
	task    int
	closeAs int
	// file is a name in the securityfs directory; flag the open flags.
	file string
	flag int
	// fd selects an open file (see system.pickFile).
	fd int
	// data is what a write or echo sends; with nRel it is instead the
	// number of records in the current list plus nDelta, as "N\n".
	data   []byte
	nRel   bool
	nDelta int
	// Size is a read's buffer size; offset and whence a seek's.
	Size   int
	offset int64
	whence int
	// Measurements: path or buffer name, content or buffer, pcr= (-1 is
	// none: the default, 10), template= ("" is the boot template), buf_hash,
	// violation cause.
	path     string
	content  []byte
	pcr      int
	template string
	hash     bool
	cause    string
	// prompt selects the collector's flavour; follow makes the collector
	// switch to the new kernel right after a kexec or reboot.
	prompt bool
	follow bool
}

var (
	filePaths    = []string{"/usr/bin/a", "/usr/bin/b", "/etc/c"}
	fileContents = []string{"", "x", "hello", "hello\n"}
	policyPCRs   = []int{-1, -1, -1, -1, 11, 9, 0}
	templates    = []string{"", "", "", "ima-sig", "ima-ng"}
	bufNames     = []string{"kernel_version", "key1", "cmdline"}
	bufContents  = []string{"7.2.0", "a", "bb"}
	violPaths    = []string{"/tmp/v", "/usr/bin/a"}
	causes       = []string{"open_writers", "ToMToU"}
	openTasks    = []int{0, 0, 0, 0, 1, 1, 2, 3, 4}
	fileNames    = []string{
		"binary_runtime_measurements_staged", "binary_runtime_measurements_staged", "binary_runtime_measurements_staged",
		"binary_runtime_measurements", "binary_runtime_measurements", "binary_runtime_measurements",
		"ascii_runtime_measurements_staged", "ascii_runtime_measurements",
		"binary_runtime_measurements_sha1", "binary_runtime_measurements_sha256",
		"ascii_runtime_measurements_sha1", "ascii_runtime_measurements_sha256",
		"binary_runtime_measurements_sha1_staged", "binary_runtime_measurements_sha256_staged",
		"ascii_runtime_measurements_sha1_staged", "ascii_runtime_measurements_sha256_staged",
		"runtime_measurements_count", "violations", "policy", "binary_runtime_measurements_sha384",
	}
	openFlags = []int{
		os.O_RDONLY, os.O_RDONLY, os.O_RDONLY, os.O_RDONLY, os.O_RDONLY,
		os.O_RDWR, os.O_RDWR, os.O_RDWR, os.O_RDWR, os.O_RDWR, os.O_RDWR, os.O_RDWR, os.O_RDWR,
		os.O_WRONLY, os.O_WRONLY, os.O_WRONLY | os.O_CREATE | os.O_TRUNC, os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
		os.O_RDWR | os.O_APPEND, os.O_WRONLY | os.O_CREATE | os.O_EXCL, 3,
	}
	// requests: valid ones, and the edges of the grammar of docs/SPEC.md §3.4.
	requests = []string{
		"A\n", "A\n", "A\n", "A\n", "D\n", "D\n", "D\n", "D\n",
		"1\n", "1\n", "2\n", "3\n", "5\n", "+2\n", "002\n", "2\n\n", "2\x00junk\n",
		"0\n", "-1\n", " 1\n", "1 \n", "0x1\n", "++1\n", "1\n\n\n",
		"18446744073709551615\n", "18446744073709551616\n", "99999999999999999999x\n",
		"000000000000000000001\n", "0000000000000000000001\n",
		"A", "D", "A\n\n", "D\n\n", "AD\n", "a\n", "d\n", "\n", "\x00\n", "A\x00", "", "x",
	}
	junkAlphabet = "AD0123456789\n\x00 +-x"
	readSizes    = []int{1, 2, 3, 7, 16, 20, 64, 100, 101, 128, 255, 256, 4095, 4096, 8192}
	tableKinds   = func() []opKind {
		weights := [numOpKinds]int{
			opMeasureFile: 14, opMeasureBuffer: 4, opViolation: 4, opOpen: 12, opWrite: 16, opRead: 14,
			opSeek: 4, opClose: 7, opCat: 6, opEcho: 8, opKexecLoad: 1, opKexec: 3, opReboot: 1,
			opCollect: 6, opCollectorSwitch: 1, opFailAlloc: 1,
		}
		var t []opKind
		for k, w := range weights {
			for range w {
				t = append(t, opKind(k))
			}
		}
		return t
	}()
)

func pick[T any](s source, from []T) T { return from[s.intn(len(from))] }

// genConfig chooses a kernel configuration: banks sha1, sha1+sha256 or
// sha256 only, ima_hash sha1 or sha256, and the knobs.
func genConfig(s source) config {
	banks := [][]tpmext.Algorithm{{tpmext.SHA1}, {tpmext.SHA1, tpmext.SHA256}, {tpmext.SHA256}}
	c := config{
		banks:          pick(s, banks),
		hashAlgo:       pick(s, []string{"sha1", "sha256"}),
		template:       pick(s, []string{"", "", "", "ima-sig"}),
		bigEndian:      s.intn(5) == 0,
		staging:        s.intn(8) != 0,
		flushHtable:    s.intn(3) == 0,
		htableDisabled: s.intn(6) == 0,
		kexec:          s.intn(4) != 0,
		criticalData:   s.intn(3) == 0,
		pageSize:       pick(s, []int{0, 0, 0, 256, 64}),
	}
	c.nDeleteNeedsStaging = !c.staging && s.intn(2) == 0
	return c
}

// genOp chooses one operation.
func genOp(s source) op {
	op := op{kind: pick(s, tableKinds), closeAs: -1}
	switch op.kind {
	case opMeasureFile:
		op.path = pick(s, filePaths)
		op.content = []byte(pick(s, fileContents))
		op.pcr = pick(s, policyPCRs)
		op.template = pick(s, templates)
	case opMeasureBuffer:
		op.path = pick(s, bufNames)
		op.content = []byte(pick(s, bufContents))
		op.pcr = pick(s, policyPCRs)
		op.hash = s.intn(4) == 0
	case opViolation:
		op.path = pick(s, violPaths)
		op.cause = pick(s, causes)
	case opOpen:
		op.task = pick(s, openTasks)
		op.file = pick(s, fileNames)
		op.flag = pick(s, openFlags)
	case opWrite, opEcho:
		if op.kind == opWrite {
			op.fd = s.intn(256)
		} else {
			op.task = pick(s, openTasks)
			op.file = pick(s, fileNames[:8])
		}
		switch c := s.intn(10); {
		case c < 4:
			op.data = []byte(pick(s, []string{"A\n", "D\n"}))
		case c < 7:
			op.data = []byte(pick(s, requests))
		case c < 9:
			op.nRel, op.nDelta = true, s.intn(3)-1
		default:
			n := s.intn(24)
			op.data = make([]byte, n)
			for i := range op.data {
				op.data[i] = junkAlphabet[s.intn(len(junkAlphabet))]
			}
		}
	case opRead:
		op.fd = s.intn(256)
		if s.intn(3) == 0 {
			op.Size = 1 + s.intn(8192)
		} else {
			op.Size = pick(s, readSizes)
		}
	case opSeek:
		op.fd = s.intn(256)
		switch c := s.intn(20); {
		case c < 12:
			op.whence = io.SeekStart
			op.offset = int64(pick(s, []int{0, 0, 1, 50, 100, 101, 202, 1000, 5000}))
			if s.intn(2) == 0 {
				op.offset = int64(s.intn(3000))
			}
		case c < 19:
			op.whence = io.SeekCurrent
			op.offset = int64(s.intn(201) - 100)
		default:
			op.whence = pick(s, []int{io.SeekEnd, io.SeekEnd, seekData, seekHole})
			op.offset = int64(s.intn(10) - 3)
		}
	case opClose:
		op.fd = s.intn(256)
		if s.intn(5) == 0 {
			op.closeAs = s.intn(len(tasks))
		}
	case opCat:
		op.task = pick(s, openTasks)
		op.file = pick(s, fileNames)
		op.Size = pick(s, []int{4096, 4096, 100, 1, 8192})
	case opKexec, opReboot:
		op.follow = s.intn(5) != 0
	case opCollect:
		op.prompt = s.intn(2) == 0
	}
	return op
}

func flagString(flag int) string {
	var s string
	switch flag & 3 {
	case os.O_RDONLY:
		s = "r"
	case os.O_WRONLY:
		s = "w"
	case os.O_RDWR:
		s = "rw"
	default:
		s = "accmode3"
	}
	for _, f := range []struct {
		bit  int
		name string
	}{{os.O_CREATE, "creat"}, {os.O_TRUNC, "trunc"}, {os.O_EXCL, "excl"}, {os.O_APPEND, "append"}} {
		if flag&f.bit != 0 {
			s += "|" + f.name
		}
	}
	return s
}

func whenceString(w int) string {
	switch w {
	case io.SeekStart:
		return "set"
	case io.SeekCurrent:
		return "cur"
	case io.SeekEnd:
		return "end"
	case seekData:
		return "data"
	case seekHole:
		return "hole"
	}
	return strconv.Itoa(w)
}

func pcrString(pcr int) string {
	if pcr < 0 {
		return ""
	}
	return fmt.Sprintf(" pcr=%d", pcr)
}

// describe renders an operation as a script line, without its result;
// fd is the resolved file's number (0 if none) and data the resolved bytes
// of a write.
func (op op) describe(fd int, data []byte) string {
	fdName := "fd?"
	if fd > 0 {
		fdName = fmt.Sprintf("fd%d", fd)
	}
	switch op.kind {
	case opMeasureFile:
		t := ""
		if op.template != "" {
			t = " template=" + op.template
		}
		return fmt.Sprintf("measure file %s content %q%s%s", op.path, op.content, pcrString(op.pcr), t)
	case opMeasureBuffer:
		h := ""
		if op.hash {
			h = " buf_hash"
		}
		return fmt.Sprintf("measure buffer %s %q%s%s", op.path, op.content, pcrString(op.pcr), h)
	case opViolation:
		return fmt.Sprintf("violation %s %s", op.path, op.cause)
	case opOpen:
		return fmt.Sprintf("as %d: open %s %s", tasks[op.task].TID, op.file, flagString(op.flag))
	case opWrite:
		return fmt.Sprintf("%s: write %q", fdName, data)
	case opRead:
		return fmt.Sprintf("%s: read %d", fdName, op.Size)
	case opSeek:
		return fmt.Sprintf("%s: seek %d %s", fdName, op.offset, whenceString(op.whence))
	case opClose:
		if op.closeAs >= 0 {
			return fmt.Sprintf("as %d: close %s", tasks[op.closeAs].TID, fdName)
		}
		return fmt.Sprintf("close %s", fdName)
	case opCat:
		return fmt.Sprintf("as %d: cat %s (reads of %d)", tasks[op.task].TID, op.file, op.Size)
	case opEcho:
		return fmt.Sprintf("as %d: echo %q > %s", tasks[op.task].TID, data, op.file)
	case opKexecLoad:
		return "kexec load"
	case opKexec, opReboot:
		name := "kexec"
		if op.kind == opReboot {
			name = "reboot"
		}
		if op.follow {
			return name + " (the collector follows)"
		}
		return name + " (the collector stays on the old kernel)"
	case opCollect:
		if op.prompt {
			return "collector cycle prompt"
		}
		return "collector cycle n"
	case opCollectorSwitch:
		return "collector switch to the running kernel"
	case opFailAlloc:
		return "make the next hash-table allocation fail"
	}
	return fmt.Sprintf("op %d", op.kind)
}

// script is a sequence's readable transcript: the configuration, then one
// line per operation with its result.
type script struct {
	config string
	lines  []string
	// input is the fuzz input that replays the sequence, when known.
	input []byte
}

func (s *script) add(line string) { s.lines = append(s.lines, line) }

// String renders the script, with the fuzz corpus entry that replays it.
func (s *script) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# config: %s\n", s.config)
	for _, l := range s.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if s.input != nil {
		fmt.Fprintf(&b, "# replay: save as testdata/fuzz/FuzzSystem/<name>:\n# go test fuzz v1\n# []byte(%q)\n", s.input)
	}
	return b.String()
}
