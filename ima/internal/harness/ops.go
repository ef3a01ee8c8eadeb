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

// Source is where a sequence's choices come from: the fuzzer's bytes
// (ByteSource) or a seeded random generator (RandSource). The same
// generator turns either into operations, so a fuzz input and a seed
// describe sequences the same way.
type Source interface {
	// Intn returns a choice in [0, n), n <= 65536.
	Intn(n int) int
	// Done reports that the source ran out (a ByteSource at the end of its
	// input); choices made after that are zero.
	Done() bool
}

// ByteSource decodes choices from bytes: one byte for n <= 256, two
// (big-endian) above, reduced modulo n.
type ByteSource struct {
	data []byte
	pos  int
	done bool
}

// NewByteSource returns a source reading data.
func NewByteSource(data []byte) *ByteSource { return &ByteSource{data: data} }

func (s *ByteSource) next() int {
	if s.pos >= len(s.data) {
		s.done = true
		return 0
	}
	b := s.data[s.pos]
	s.pos++
	return int(b)
}

// Intn implements Source.
func (s *ByteSource) Intn(n int) int {
	if n <= 1 {
		return 0
	}
	if n <= 256 {
		return s.next() % n
	}
	v := s.next()<<8 | s.next()
	return v % n
}

// Done implements Source.
func (s *ByteSource) Done() bool { return s.done }

// RandSource draws choices from a seeded generator and records them as the
// bytes a ByteSource would decode to the same choices, so that a failing
// seeded sequence can be replayed as a fuzz input.
type RandSource struct {
	r     *rand.Rand
	Bytes []byte
}

// NewRandSource returns a source seeded with seed.
func NewRandSource(seed uint64) *RandSource {
	return &RandSource{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Intn implements Source.
func (s *RandSource) Intn(n int) int {
	if n <= 1 {
		return 0
	}
	v := s.r.IntN(n)
	if n <= 256 {
		s.Bytes = append(s.Bytes, byte(v))
	} else {
		s.Bytes = append(s.Bytes, byte(v>>8), byte(v))
	}
	return v
}

// Done implements Source.
func (s *RandSource) Done() bool { return false }

// OpKind is the kind of an operation of a sequence.
type OpKind uint8

const (
	OpMeasureFile     OpKind = iota // a file measurement
	OpMeasureBuffer                 // a buffer measurement (ima-buf)
	OpViolation                     // a violation
	OpOpen                          // open a file as a task
	OpWrite                         // write bytes to an open file
	OpRead                          // read from an open file
	OpSeek                          // lseek an open file
	OpClose                         // close an open file, as its task or another
	OpCat                           // open, read to EOF, close
	OpEcho                          // open O_WRONLY|O_CREAT|O_TRUNC, write once, close
	OpKexecLoad                     // kexec_file_load
	OpKexec                         // kexec into a new kernel
	OpReboot                        // reboot
	OpCollect                       // one collector cycle
	OpCollectorSwitch               // point the collector at the running kernel
	OpFailAlloc                     // make the next hash-table allocation fail
	numOpKinds
)

// Op is one operation. Which fields matter depends on Kind.
type Op struct {
	Kind OpKind
	// Task is an index into Tasks (open, cat, echo); CloseAs is the task
	// a close runs as, -1 for the file's own task.
	Task    int
	CloseAs int
	// File is a name in the securityfs directory; Flag the open flags.
	File string
	Flag int
	// FD selects an open file (see System.pickFile).
	FD int
	// Data is what a write or echo sends; with NRel it is instead the
	// number of records in the current list plus NDelta, as "N\n".
	Data   []byte
	NRel   bool
	NDelta int
	// Size is a read's buffer size; Offset and Whence a seek's.
	Size   int
	Offset int64
	Whence int
	// Measurements: path or buffer name, content or buffer, pcr= (-1 is
	// none: the default, 10), template= ("" is the boot template), buf_hash,
	// violation cause.
	Path     string
	Content  []byte
	PCR      int
	Template string
	Hash     bool
	Cause    string
	// Prompt selects the collector's flavour; Follow makes the collector
	// switch to the new kernel right after a kexec or reboot.
	Prompt bool
	Follow bool
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
	// Requests: valid ones, and the edges of the grammar of docs/SPEC.md §3.4.
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
	tableKinds   = func() []OpKind {
		weights := [numOpKinds]int{
			OpMeasureFile: 14, OpMeasureBuffer: 4, OpViolation: 4, OpOpen: 12, OpWrite: 16, OpRead: 14,
			OpSeek: 4, OpClose: 7, OpCat: 6, OpEcho: 8, OpKexecLoad: 1, OpKexec: 3, OpReboot: 1,
			OpCollect: 6, OpCollectorSwitch: 1, OpFailAlloc: 1,
		}
		var t []OpKind
		for k, w := range weights {
			for range w {
				t = append(t, OpKind(k))
			}
		}
		return t
	}()
)

func pick[T any](s Source, from []T) T { return from[s.Intn(len(from))] }

// GenConfig chooses a kernel configuration: banks sha1, sha1+sha256 or
// sha256 only, ima_hash sha1 or sha256, and the knobs.
func GenConfig(s Source) Config {
	banks := [][]tpmext.Algorithm{{tpmext.SHA1}, {tpmext.SHA1, tpmext.SHA256}, {tpmext.SHA256}}
	c := Config{
		Banks:          pick(s, banks),
		HashAlgo:       pick(s, []string{"sha1", "sha256"}),
		Template:       pick(s, []string{"", "", "", "ima-sig"}),
		BigEndian:      s.Intn(5) == 0,
		Staging:        s.Intn(8) != 0,
		FlushHtable:    s.Intn(3) == 0,
		HtableDisabled: s.Intn(6) == 0,
		Kexec:          s.Intn(4) != 0,
		CriticalData:   s.Intn(3) == 0,
		PageSize:       pick(s, []int{0, 0, 0, 256, 64}),
	}
	c.NDeleteNeedsStaging = !c.Staging && s.Intn(2) == 0
	return c
}

// GenOp chooses one operation.
func GenOp(s Source) Op {
	op := Op{Kind: pick(s, tableKinds), CloseAs: -1}
	switch op.Kind {
	case OpMeasureFile:
		op.Path = pick(s, filePaths)
		op.Content = []byte(pick(s, fileContents))
		op.PCR = pick(s, policyPCRs)
		op.Template = pick(s, templates)
	case OpMeasureBuffer:
		op.Path = pick(s, bufNames)
		op.Content = []byte(pick(s, bufContents))
		op.PCR = pick(s, policyPCRs)
		op.Hash = s.Intn(4) == 0
	case OpViolation:
		op.Path = pick(s, violPaths)
		op.Cause = pick(s, causes)
	case OpOpen:
		op.Task = pick(s, openTasks)
		op.File = pick(s, fileNames)
		op.Flag = pick(s, openFlags)
	case OpWrite, OpEcho:
		if op.Kind == OpWrite {
			op.FD = s.Intn(256)
		} else {
			op.Task = pick(s, openTasks)
			op.File = pick(s, fileNames[:8])
		}
		switch c := s.Intn(10); {
		case c < 4:
			op.Data = []byte(pick(s, []string{"A\n", "D\n"}))
		case c < 7:
			op.Data = []byte(pick(s, requests))
		case c < 9:
			op.NRel, op.NDelta = true, s.Intn(3)-1
		default:
			n := s.Intn(24)
			op.Data = make([]byte, n)
			for i := range op.Data {
				op.Data[i] = junkAlphabet[s.Intn(len(junkAlphabet))]
			}
		}
	case OpRead:
		op.FD = s.Intn(256)
		if s.Intn(3) == 0 {
			op.Size = 1 + s.Intn(8192)
		} else {
			op.Size = pick(s, readSizes)
		}
	case OpSeek:
		op.FD = s.Intn(256)
		switch c := s.Intn(20); {
		case c < 12:
			op.Whence = io.SeekStart
			op.Offset = int64(pick(s, []int{0, 0, 1, 50, 100, 101, 202, 1000, 5000}))
			if s.Intn(2) == 0 {
				op.Offset = int64(s.Intn(3000))
			}
		case c < 19:
			op.Whence = io.SeekCurrent
			op.Offset = int64(s.Intn(201) - 100)
		default:
			op.Whence = pick(s, []int{io.SeekEnd, io.SeekEnd, seekData, seekHole})
			op.Offset = int64(s.Intn(10) - 3)
		}
	case OpClose:
		op.FD = s.Intn(256)
		if s.Intn(5) == 0 {
			op.CloseAs = s.Intn(len(Tasks))
		}
	case OpCat:
		op.Task = pick(s, openTasks)
		op.File = pick(s, fileNames)
		op.Size = pick(s, []int{4096, 4096, 100, 1, 8192})
	case OpKexec, OpReboot:
		op.Follow = s.Intn(5) != 0
	case OpCollect:
		op.Prompt = s.Intn(2) == 0
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
func (op Op) describe(fd int, data []byte) string {
	fdName := "fd?"
	if fd > 0 {
		fdName = fmt.Sprintf("fd%d", fd)
	}
	switch op.Kind {
	case OpMeasureFile:
		t := ""
		if op.Template != "" {
			t = " template=" + op.Template
		}
		return fmt.Sprintf("measure file %s content %q%s%s", op.Path, op.Content, pcrString(op.PCR), t)
	case OpMeasureBuffer:
		h := ""
		if op.Hash {
			h = " buf_hash"
		}
		return fmt.Sprintf("measure buffer %s %q%s%s", op.Path, op.Content, pcrString(op.PCR), h)
	case OpViolation:
		return fmt.Sprintf("violation %s %s", op.Path, op.Cause)
	case OpOpen:
		return fmt.Sprintf("as %d: open %s %s", Tasks[op.Task].TID, op.File, flagString(op.Flag))
	case OpWrite:
		return fmt.Sprintf("%s: write %q", fdName, data)
	case OpRead:
		return fmt.Sprintf("%s: read %d", fdName, op.Size)
	case OpSeek:
		return fmt.Sprintf("%s: seek %d %s", fdName, op.Offset, whenceString(op.Whence))
	case OpClose:
		if op.CloseAs >= 0 {
			return fmt.Sprintf("as %d: close %s", Tasks[op.CloseAs].TID, fdName)
		}
		return fmt.Sprintf("close %s", fdName)
	case OpCat:
		return fmt.Sprintf("as %d: cat %s (reads of %d)", Tasks[op.Task].TID, op.File, op.Size)
	case OpEcho:
		return fmt.Sprintf("as %d: echo %q > %s", Tasks[op.Task].TID, data, op.File)
	case OpKexecLoad:
		return "kexec load"
	case OpKexec, OpReboot:
		name := "kexec"
		if op.Kind == OpReboot {
			name = "reboot"
		}
		if op.Follow {
			return name + " (the collector follows)"
		}
		return name + " (the collector stays on the old kernel)"
	case OpCollect:
		if op.Prompt {
			return "collector cycle prompt"
		}
		return "collector cycle n"
	case OpCollectorSwitch:
		return "collector switch to the running kernel"
	case OpFailAlloc:
		return "make the next hash-table allocation fail"
	}
	return fmt.Sprintf("op %d", op.Kind)
}

// Script is a sequence's readable transcript: the configuration, then one
// line per operation with its result.
type Script struct {
	Config string
	Lines  []string
	// Input is the fuzz input that replays the sequence, when known.
	Input []byte
}

func (s *Script) add(line string) { s.Lines = append(s.Lines, line) }

// String renders the script, with the fuzz corpus entry that replays it.
func (s *Script) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# config: %s\n", s.Config)
	for _, l := range s.Lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if s.Input != nil {
		fmt.Fprintf(&b, "# replay: save as testdata/fuzz/FuzzSystem/<name>:\n# go test fuzz v1\n# []byte(%q)\n", s.Input)
	}
	return b.String()
}
