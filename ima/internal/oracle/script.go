package oracle

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
)

// Task is the thread a step runs as: root with every capability (thread 1)
// unless the script says "as TID[:nocap | :uid=N]".
type Task struct {
	TID int
	// NoCap drops CAP_SYS_ADMIN from the effective set (the other
	// capabilities stay).
	NoCap bool
	// UID, when not zero, is the uid and gid (no capabilities, as for any
	// non-root process).
	UID uint32
}

// stagingTask is t as the model's task.
func (t Task) stagingTask() staging.Task {
	if t.UID != 0 {
		return staging.Task{TID: t.TID, UID: t.UID, GID: t.UID}
	}
	st := staging.Root(t.TID)
	st.CapSysAdmin = !t.NoCap
	return st
}

// Script is a parsed script: its boot options and steps.
type Script struct {
	Name string
	// Flush is the ima_flush_htable boot parameter ("boot flush=y").
	Flush bool
	// HashAlgo is ima_hash= ("boot hash=sha1"; default sha256).
	HashAlgo template.HashAlgo
	// Template and TemplateFmt are ima_template= and ima_template_fmt=
	// ("boot template=ima-sig", "boot template_fmt='d-ng|n-ng|iuid'");
	// neither means ima-ng.
	Template, TemplateFmt string
	lines                 []line
}

// line is a line of the script: a step, or a comment or blank (step nil)
// that the transcript repeats.
type line struct {
	text string
	step *step
}

// step is one command, run as task.
type step struct {
	task Task
	cmd  string
	args []string
}

// Parse reads a script. The first command must be "boot [flush=y|n]
// [hash=ALGO] [template=NAME | template_fmt=FMT]"; the others are:
//
//	measure PATH CONTENT       a file measurement (see the package doc)
//	violation PATH CONTENT     an open_writers violation, then the measurement
//	echo [-n] WORD... > FILE   open O_WRONLY|O_CREATE|O_TRUNC, one write, close
//	printf FORMAT > FILE       the same, with \n \t \\ \0 \xHH escapes
//	cat FILE...                open O_RDONLY, read to EOF, close
//	ls -l                      the directory
//	open FD FILE r|w|rw        open(2)
//	read FD [N]                read to EOF, or one read(2) of N bytes (the
//	                           count, then the bytes: in hex from a binary
//	                           list, else quoted)
//	seek FD OFFSET             lseek(2) with SEEK_SET; prints the new offset
//	write FD TEXT              one write(2), with printf's escapes
//	close FD                   close(2), in the context of the step's task
//	save [N]                   append every bank's staged records (or the
//	                           first N records of its list) to the saved log
//	replay                     saved ++ staged ++ current, per bank, against PCR 10
//	as TID[:nocap|:uid=N] COMMAND
//
// Words are split at blanks; 'single quotes' group words.
func Parse(name string, src []byte) (*Script, error) {
	s := &Script{Name: name, HashAlgo: template.HashSHA256}
	booted := false
	for i, text := range strings.Split(strings.TrimRight(string(src), "\n"), "\n") {
		l := line{text: text}
		trimmed := strings.TrimSpace(text)
		if trimmed != "" && trimmed[0] != '#' {
			words, err := splitWords(trimmed)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, i+1, err)
			}
			st, err := parseStep(words)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, i+1, err)
			}
			if st.cmd == "boot" {
				if booted || len(s.lines) > 0 && hasStep(s.lines) {
					return nil, fmt.Errorf("%s:%d: boot must be the first command, once", name, i+1)
				}
				booted = true
				for _, a := range st.args {
					if err := s.bootOption(a); err != nil {
						return nil, fmt.Errorf("%s:%d: boot: %v", name, i+1, err)
					}
				}
			} else {
				if !booted {
					return nil, fmt.Errorf("%s:%d: the first command must be boot", name, i+1)
				}
				l.step = st
			}
		}
		s.lines = append(s.lines, l)
	}
	if !booted {
		return nil, fmt.Errorf("%s: no boot command", name)
	}
	return s, nil
}

// bootOption sets one KEY=VALUE option of boot.
func (s *Script) bootOption(opt string) error {
	k, v, _ := strings.Cut(opt, "=")
	switch {
	case k == "flush" && (v == "y" || v == "n"):
		s.Flush = v == "y"
	case k == "hash":
		h, err := template.ParseHashAlgo(v)
		if err != nil {
			return err
		}
		s.HashAlgo = h
	case k == "template" && v != "":
		s.Template = v
	case k == "template_fmt" && v != "":
		s.TemplateFmt = v
	default:
		return fmt.Errorf("unknown option %q (flush=y|n, hash=, template=, template_fmt=)", opt)
	}
	return nil
}

func hasStep(ls []line) bool {
	for _, l := range ls {
		if l.step != nil {
			return true
		}
	}
	return false
}

// usage gives each command's argument count: at least min, at most max
// (-1: any).
var usage = map[string][2]int{
	"boot": {0, 4}, "measure": {2, 2}, "violation": {2, 2}, "echo": {2, -1},
	"printf": {3, 3}, "cat": {1, -1}, "ls": {1, 1}, "open": {3, 3}, "read": {1, 2},
	"write": {2, 2}, "seek": {2, 2}, "close": {1, 1}, "save": {0, 1}, "replay": {0, 0},
}

func parseStep(words []string) (*step, error) {
	st := &step{task: Task{TID: 1}}
	if words[0] == "as" {
		if len(words) < 3 {
			return nil, errors.New("usage: as TID[:nocap|:uid=N] COMMAND")
		}
		t, err := parseTask(words[1])
		if err != nil {
			return nil, err
		}
		st.task, words = t, words[2:]
	}
	st.cmd, st.args = words[0], words[1:]
	u, ok := usage[st.cmd]
	if !ok {
		return nil, fmt.Errorf("unknown command %q", st.cmd)
	}
	if len(st.args) < u[0] || u[1] >= 0 && len(st.args) > u[1] {
		return nil, fmt.Errorf("%s: wrong number of arguments", st.cmd)
	}
	if st.cmd == "echo" || st.cmd == "printf" {
		if st.args[len(st.args)-2] != ">" {
			return nil, fmt.Errorf("%s: needs a redirection > FILE", st.cmd)
		}
	}
	return st, nil
}

func parseTask(s string) (Task, error) {
	tid, opt, _ := strings.Cut(s, ":")
	n, err := strconv.Atoi(tid)
	if err != nil || n < 1 {
		return Task{}, fmt.Errorf("as: bad thread id %q", tid)
	}
	t := Task{TID: n}
	switch {
	case opt == "":
	case opt == "nocap":
		t.NoCap = true
	case strings.HasPrefix(opt, "uid="):
		u, err := strconv.ParseUint(opt[4:], 10, 32)
		if err != nil || u == 0 {
			return Task{}, fmt.Errorf("as: bad uid in %q", opt)
		}
		t.UID = uint32(u)
	default:
		return Task{}, fmt.Errorf("as: unknown option %q (nocap, uid=N)", opt)
	}
	return t, nil
}

// splitWords splits a line at blanks; 'single quotes' are literal.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			in, quoted = !in, true
		case (r == ' ' || r == '\t') && !in:
			if cur.Len() > 0 || quoted {
				words = append(words, cur.String())
			}
			cur.Reset()
			quoted = false
		default:
			cur.WriteRune(r)
		}
	}
	if in {
		return nil, errors.New("unterminated quote")
	}
	if cur.Len() > 0 || quoted {
		words = append(words, cur.String())
	}
	return words, nil
}

// unescape expands printf's escapes: \n \t \\ \0 \xHH.
func unescape(s string) ([]byte, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case '\\':
			b = append(b, '\\')
		case '0':
			b = append(b, 0)
		case 'x':
			if i+3 > len(s) {
				return nil, fmt.Errorf("bad \\x escape in %q", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad \\x escape in %q", s)
			}
			b = append(b, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return b, nil
}

// openFlag is open's mode argument.
func openFlag(mode string) (int, error) {
	switch mode {
	case "r":
		return os.O_RDONLY, nil
	case "w":
		return os.O_WRONLY, nil
	case "rw":
		return os.O_RDWR, nil
	}
	return 0, fmt.Errorf("open: mode %q is not r, w or rw", mode)
}

// writeLines writes a step's output to w as the transcript's "> " lines.
func writeLines(w io.Writer, out string) {
	if out == "" {
		return
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		fmt.Fprintln(w, strings.TrimRight("> "+l, " "))
	}
}
