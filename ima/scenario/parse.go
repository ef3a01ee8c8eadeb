package scenario

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// Script is a parsed scenario script.
type Script struct {
	name  string
	items []item
}

// item is one source line that is not an expectation: a comment or blank
// line (step nil), or a command with its expectations.
type item struct {
	text string
	step *step
}

// step is a command and what it must do.
type step struct {
	line    int    // 1-based line of the command
	text    string // the command as written, trimmed
	run     action
	want    []string      // expected output lines
	wantErr syscall.Errno // 0: the command must succeed
}

// action runs a parsed command.
type action func(x *execCtx) error

// Name returns the name the script was parsed with.
func (s *Script) Name() string { return s.name }

// Len returns the number of commands.
func (s *Script) Len() int {
	n := 0
	for _, it := range s.items {
		if it.step != nil {
			n++
		}
	}
	return n
}

// Parse parses a script. name is used in error messages (a file name).
// Every line is checked: a syntax error, an unknown command or key, bad
// arguments, or an expectation without a command is an *Error naming the
// file and line.
func Parse(name string, src []byte) (*Script, error) {
	s := &Script{name: name}
	lines := strings.Split(string(src), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	var last *step // the command expectations may still attach to
	for i, raw := range lines {
		lineNo := i + 1
		text := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		errf := func(format string, args ...any) error {
			return &Error{File: name, Line: lineNo, Command: text, Msg: fmt.Sprintf(format, args...)}
		}
		switch {
		case text == "" || text[0] == '#':
			s.items = append(s.items, item{text: strings.TrimRight(raw, " \t\r")})
			last = nil
		case text[0] == '>':
			if last == nil {
				return nil, errf("expected output must follow its command directly (no blank line or comment in between)")
			}
			switch {
			case text == ">":
				last.want = append(last.want, "")
			case text[1] == ' ':
				last.want = append(last.want, strings.TrimRight(text[2:], " \t"))
			default:
				return nil, errf(`an expected output line starts with "> " (or is ">" alone for an empty line)`)
			}
		case text[0] == '!':
			if last == nil {
				return nil, errf("an expected error must follow its command directly (no blank line or comment in between)")
			}
			if last.wantErr != 0 {
				return nil, errf("a second expected error for the command at line %d", last.line)
			}
			f := strings.Fields(text[1:])
			if len(f) != 1 {
				return nil, errf(`an expected error is "! ERRNO", e.g. "! EBUSY"`)
			}
			e, ok := errnoByName(f[0])
			if !ok {
				return nil, errf("unknown errno %q (write a name such as EBUSY, ENOENT, EINVAL)", f[0])
			}
			last.wantErr = e
		default:
			words, err := splitWords(text)
			if err != nil {
				return nil, errf("%v", err)
			}
			if len(words) == 0 { // only a trailing comment
				s.items = append(s.items, item{text: strings.TrimRight(raw, " \t\r")})
				last = nil
				continue
			}
			run, err := parseCommand(words, false, false)
			if err != nil {
				return nil, errf("%v", err)
			}
			st := &step{line: lineNo, text: text, run: run}
			s.items = append(s.items, item{text: strings.TrimRight(raw, " \t\r"), step: st})
			last = st
		}
	}
	return s, nil
}

// verb describes a command: how to parse its arguments, and whether the
// "as" and "old" prefixes make sense for it.
type verb struct {
	parse func(args []word) (action, error)
	task  bool // "as TASK" allowed
	old   bool // "old" allowed
}

// verbs are the commands, by name.
var verbs = map[string]verb{
	"boot":           {parse: parseBoot},
	"reboot":         {parse: noArgs(doReboot)},
	"kexec":          {parse: parseKexec},
	"measure":        {parse: parseMeasure, old: true},
	"measure-buffer": {parse: parseMeasureBuffer, old: true},
	"violation":      {parse: parseViolation, old: true},
	"echo":           {parse: parseEcho, task: true, old: true},
	"printf":         {parse: parsePrintf, task: true, old: true},
	"cat":            {parse: parseCat, task: true, old: true},
	"ls":             {parse: parseLs, old: true},
	"open":           {parse: parseOpen, task: true, old: true},
	"read":           {parse: parseRead, task: true},
	"write":          {parse: parseWrite, task: true},
	"seek":           {parse: parseSeek, task: true},
	"close":          {parse: parseClose, task: true},
	"pcr":            {parse: parsePCR},
	"counters":       {parse: noArgs(doCounters), old: true},
	"save":           {parse: parseSave, task: true},
	"discard":        {parse: noArgs(doDiscard)},
	"replay":         {parse: noArgs(doReplay)},
	"collect":        {parse: parseCollect},
	"fail-alloc":     {parse: noArgs(doFailAlloc)},
}

// "at" parses the command it arms, so it joins verbs after initialisation.
func init() { verbs["at"] = verb{parse: parseAt} }

// parseCommand parses a command with its "as" and "old" prefixes.
func parseCommand(words []word, hasTask, hasOld bool) (action, error) {
	if words[0].op {
		return nil, fmt.Errorf("a command cannot start with %q", words[0].text)
	}
	name := words[0].text
	switch name {
	case "as":
		if hasTask {
			return nil, errors.New(`"as" given twice`)
		}
		if len(words) < 3 || words[1].op {
			return nil, errors.New(`usage: as TID[:uid=N,gid=N,groups=G+G,nocap,cap=NAME+NAME] COMMAND...`)
		}
		t, err := parseTask(words[1].text)
		if err != nil {
			return nil, err
		}
		inner, err := parseCommand(words[2:], true, hasOld)
		if err != nil {
			return nil, err
		}
		return func(x *execCtx) error {
			x.task, x.explicitTask = t, true
			return inner(x)
		}, nil
	case "old":
		if hasOld {
			return nil, errors.New(`"old" given twice`)
		}
		if len(words) < 2 {
			return nil, errors.New("usage: old COMMAND...")
		}
		inner, err := parseCommand(words[1:], hasTask, true)
		if err != nil {
			return nil, err
		}
		return func(x *execCtx) error {
			x.old = true
			return inner(x)
		}, nil
	}
	v, ok := verbs[name]
	if !ok {
		return nil, fmt.Errorf("unknown command %q", name)
	}
	if hasTask && !v.task {
		return nil, fmt.Errorf("%s does not run as a task: drop the \"as\" prefix", name)
	}
	if hasOld && !v.old {
		return nil, fmt.Errorf("%s cannot run on the old kernel: drop the \"old\" prefix", name)
	}
	return v.parse(words[1:])
}

// plain returns the words' texts, refusing redirections.
func plain(args []word) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		if a.op {
			return nil, fmt.Errorf("redirection %q is only supported for echo and printf", a.text)
		}
		out[i] = a.text
	}
	return out, nil
}

func noArgs(run action) func([]word) (action, error) {
	return func(args []word) (action, error) {
		if len(args) != 0 {
			return nil, errors.New("takes no arguments")
		}
		return run, nil
	}
}

// parseTask parses TID[:OPT,...].
func parseTask(spec string) (staging.Task, error) {
	tidStr, opts, _ := strings.Cut(spec, ":")
	tid, err := strconv.Atoi(tidStr)
	if err != nil || tid <= 0 {
		return staging.Task{}, fmt.Errorf("task %q: the thread id must be a positive integer", spec)
	}
	t := staging.Root(tid)
	if opts == "" {
		return t, nil
	}
	var caps []string
	capsGiven, gidGiven := false, false
	for _, o := range strings.Split(opts, ",") {
		k, v, hasV := strings.Cut(o, "=")
		switch {
		case k == "nocap" && !hasV:
			capsGiven = true
		case k == "cap" && hasV:
			capsGiven = true
			caps = append(caps, strings.Split(v, "+")...)
		case k == "uid" && hasV:
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return t, fmt.Errorf("task %q: uid %q: not a number", spec, v)
			}
			t.UID = uint32(n)
		case k == "gid" && hasV:
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return t, fmt.Errorf("task %q: gid %q: not a number", spec, v)
			}
			t.GID, gidGiven = uint32(n), true
		case k == "groups" && hasV:
			for _, g := range strings.Split(v, "+") {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return t, fmt.Errorf("task %q: group %q: not a number", spec, g)
				}
				t.Groups = append(t.Groups, uint32(n))
			}
		default:
			return t, fmt.Errorf("task %q: unknown option %q (want uid=N, gid=N, groups=G+G, nocap or cap=NAME+NAME)", spec, o)
		}
	}
	// A user's process runs with the user's own group, unless told
	// otherwise, and has no capabilities unless given some.
	if t.UID != 0 && !gidGiven {
		t.GID = t.UID
	}
	if capsGiven || t.UID != 0 {
		t.CapSysAdmin, t.CapDACOverride, t.CapDACReadSearch = false, false, false
	}
	for _, c := range caps {
		switch strings.TrimPrefix(strings.ToLower(c), "cap_") {
		case "sys_admin":
			t.CapSysAdmin = true
		case "dac_override":
			t.CapDACOverride = true
		case "dac_read_search":
			t.CapDACReadSearch = true
		default:
			return t, fmt.Errorf("task %q: unknown capability %q (want sys_admin, dac_override or dac_read_search)", spec, c)
		}
	}
	return t, nil
}

// bootSpec is what boot's keys configure.
type bootSpec struct {
	banks []tpmext.Algorithm // nil: no TPM
	cfg   ima.Config
}

func parseBoot(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	b := bootSpec{
		banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256},
		cfg:   ima.Config{HashAlgo: "sha256", Template: "ima-ng", Staging: true, Kexec: true},
	}
	seen := map[string]bool{}
	for _, kv := range a {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("boot: %q: want KEY=VALUE", kv)
		}
		if seen[k] {
			return nil, fmt.Errorf("boot: %s given twice", k)
		}
		seen[k] = true
		boolVal := func(dst *bool) error {
			switch v {
			case "y", "yes", "1", "true":
				*dst = true
			case "n", "no", "0", "false":
				*dst = false
			default:
				return fmt.Errorf("boot: %s=%s: want y or n", k, v)
			}
			return nil
		}
		intVal := func(dst *int, lo, hi int) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("boot: %s=%s: want an integer from %d to %d", k, v, lo, hi)
			}
			*dst = n
			return nil
		}
		switch k {
		case "banks":
			if v == "none" {
				b.banks = nil
				break
			}
			if b.banks, err = tpmext.ParseBanks(v); err != nil {
				return nil, fmt.Errorf("boot: banks=%s: %v", v, err)
			}
		case "hash":
			if _, err := template.ParseHashAlgo(v); err != nil {
				return nil, fmt.Errorf("boot: hash=%s: %v", v, err)
			}
			b.cfg.HashAlgo = v
		case "template":
			if template.Builtin(v) == nil {
				return nil, fmt.Errorf("boot: template=%s: not a builtin template (use template_fmt= for a format)", v)
			}
			b.cfg.Template = v
		case "template_fmt":
			if _, err := template.ParseFmt(v); err != nil {
				return nil, fmt.Errorf("boot: template_fmt=%s: %v", v, err)
			}
			b.cfg.TemplateFmt = v
		case "staging":
			err = boolVal(&b.cfg.Staging)
		case "kexec":
			err = boolVal(&b.cfg.Kexec)
		case "flush":
			err = boolVal(&b.cfg.FlushHtable)
		case "htable":
			var on bool
			err = boolVal(&on)
			b.cfg.HtableDisabled = !on
		case "criticaldata":
			err = boolVal(&b.cfg.CriticalData)
		case "ndelete_needs_staging":
			err = boolVal(&b.cfg.NDeleteNeedsStaging)
		case "bigendian":
			err = boolVal(&b.cfg.BigEndian)
		case "canonical":
			err = boolVal(&b.cfg.CanonicalFmt)
		case "pcr":
			err = intVal(&b.cfg.MeasurePCR, 8, 14) // the Kconfig range
		case "pagesize":
			// Small pages make seq_file grow its buffer; 64 KiB is
			// the largest common PAGE_SIZE.
			err = intVal(&b.cfg.PageSize, 16, 1<<16)
		case "kexec_extra_kb":
			err = intVal(&b.cfg.KexecExtraMemoryKB, 0, 1<<16)
		case "locking":
			b.cfg.Locking, err = parseLocking(v)
		default:
			return nil, fmt.Errorf("boot: unknown key %q (see the package documentation for the keys)", k)
		}
		if err != nil {
			return nil, err
		}
	}
	if seen["template_fmt"] {
		if seen["template"] {
			return nil, errors.New("boot: template= and template_fmt= exclude each other")
		}
		b.cfg.Template = ""
	}
	return func(x *execCtx) error { return x.m.boot(b) }, nil
}

// parseLocking parses locking=: "model" (the default), or "kernel" with
// fixes added by "+serialize", "+synchronize" and "+readers-hold-rcu".
func parseLocking(v string) (measlist.Locking, error) {
	var l measlist.Locking
	parts := strings.Split(v, "+")
	switch parts[0] {
	case "model":
		if len(parts) > 1 {
			return l, fmt.Errorf("boot: locking=%s: fixes go with locking=kernel", v)
		}
		return l, nil
	case "kernel":
		l.KernelExact = true
	default:
		return l, fmt.Errorf("boot: locking=%s: want model or kernel[+serialize][+synchronize][+readers-hold-rcu]", v)
	}
	for _, fix := range parts[1:] {
		switch fix {
		case "serialize":
			l.SerializeRequests = true
		case "synchronize":
			l.SynchronizeBeforeFree = true
		case "readers-hold-rcu":
			l.ReadersHoldRCU = true
		default:
			return l, fmt.Errorf("boot: locking=%s: unknown fix %q", v, fix)
		}
	}
	return l, nil
}

func parseKexec(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(a) == 0 || len(a) == 1 && a[0] == "-e":
		return doKexec, nil
	case len(a) == 1 && a[0] == "-l":
		return doKexecLoad, nil
	}
	return nil, errors.New("usage: kexec [-l | -e]")
}

// options splits a command's arguments into its npos positional ones, which
// come first (and may contain '='), and KEY=VALUE options after them.
func options(a []string, npos int, allowed ...string) (pos []string, opts map[string]string, err error) {
	if len(a) < npos {
		return nil, nil, fmt.Errorf("want %d arguments before the options", npos)
	}
	pos, opts = a[:npos], map[string]string{}
	for _, w := range a[npos:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok || !isAllowed(k, allowed) {
			return nil, nil, fmt.Errorf("unknown option %q (want %s)", w, strings.Join(allowed, "=, ")+"=")
		}
		if _, dup := opts[k]; dup {
			return nil, nil, fmt.Errorf("option %s given twice", k)
		}
		opts[k] = v
	}
	return pos, opts, nil
}

func isAllowed(k string, allowed []string) bool {
	for _, a := range allowed {
		if a == k {
			return true
		}
	}
	return false
}

func pcrOption(opts map[string]string) (ima.RulePCR, error) {
	s, ok := opts["pcr"]
	if !ok {
		return ima.RulePCR{}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= tpmext.NumPCRs {
		return ima.RulePCR{}, fmt.Errorf("pcr=%s: want 0 to %d", s, tpmext.NumPCRs-1)
	}
	return ima.PCR(uint32(n)), nil
}

func parseMeasure(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	pos, opts, err := options(a, 2, "pcr", "uid", "gid", "mode", "template")
	if err != nil {
		return nil, fmt.Errorf("measure: %v; usage: measure PATH CONTENT [pcr=N] [uid=N] [gid=N] [mode=OCTAL] [template=NAME]", err)
	}
	f := ima.NewFile(pos[0], []byte(pos[1]))
	f.Template = opts["template"]
	if f.PCR, err = pcrOption(opts); err != nil {
		return nil, fmt.Errorf("measure: %v", err)
	}
	for _, k := range []string{"uid", "gid"} {
		if s, ok := opts[k]; ok {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("measure: %s=%s: not a number", k, s)
			}
			if k == "uid" {
				f.File.UID = uint32(n)
			} else {
				f.File.GID = uint32(n)
			}
		}
	}
	if s, ok := opts["mode"]; ok {
		n, err := strconv.ParseUint(s, 8, 16)
		if err != nil {
			return nil, fmt.Errorf("measure: mode=%s: not an octal mode", s)
		}
		f.File.Mode = uint16(n)
	}
	if f.Template != "" {
		if _, err := template.LookupOrParse(f.Template); err != nil {
			return nil, fmt.Errorf("measure: template=%s: %v", f.Template, err)
		}
	}
	return func(x *execCtx) error {
		k, err := x.kernel()
		if err != nil {
			return err
		}
		return k.Measure(f)
	}, nil
}

func parseMeasureBuffer(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	pos, opts, err := options(a, 2, "pcr")
	if err != nil {
		return nil, fmt.Errorf("measure-buffer: %v; usage: measure-buffer NAME DATA [pcr=N]", err)
	}
	pcr, err := pcrOption(opts)
	if err != nil {
		return nil, fmt.Errorf("measure-buffer: %v", err)
	}
	return func(x *execCtx) error {
		k, err := x.kernel()
		if err != nil {
			return err
		}
		return k.MeasureBuffer(pos[0], []byte(pos[1]), ima.BufferOptions{PCR: pcr})
	}, nil
}

func parseViolation(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) < 1 || len(a) > 2 {
		return nil, errors.New("usage: violation PATH [ToMToU | open_writers]")
	}
	cause := ima.CauseToMToU
	if len(a) == 2 {
		switch a[1] {
		case ima.CauseToMToU, ima.CauseOpenWriters:
			cause = a[1]
		default:
			return nil, fmt.Errorf("violation: cause %q: want %s or %s", a[1], ima.CauseToMToU, ima.CauseOpenWriters)
		}
	}
	return func(x *execCtx) error {
		k, err := x.kernel()
		if err != nil {
			return err
		}
		return k.Violation(a[0], nil, cause)
	}, nil
}

// redirect splits "WORDS... > FILE" into the words and the target.
func redirect(args []word) (words []string, flag int, file string, err error) {
	for i, a := range args {
		if !a.op {
			continue
		}
		if i != len(args)-2 || args[i+1].op {
			return nil, 0, "", fmt.Errorf("%s needs one file name after it, at the end of the command", a.text)
		}
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if a.text == ">>" {
			flag = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		for _, w := range args[:i] {
			words = append(words, w.text)
		}
		return words, flag, args[i+1].text, nil
	}
	for _, w := range args {
		words = append(words, w.text)
	}
	return words, 0, "", nil
}

// parseEcho parses bash's builtin echo: leading words made only of -n, -e
// and -E are options; the rest are joined by spaces and end with a
// newline unless -n.
func parseEcho(args []word) (action, error) {
	words, flag, file, err := redirect(args)
	if err != nil {
		return nil, err
	}
	newline, escapes := true, false
	for len(words) > 0 && isEchoOption(words[0]) {
		for _, c := range words[0][1:] {
			switch c {
			case 'n':
				newline = false
			case 'e':
				escapes = true
			case 'E':
				escapes = false
			}
		}
		words = words[1:]
	}
	s := strings.Join(words, " ")
	if escapes {
		s = unescape(s)
	}
	if newline {
		s += "\n"
	}
	return writeAction([]byte(s), flag, file), nil
}

func isEchoOption(w string) bool {
	return len(w) > 1 && w[0] == '-' && strings.Trim(w[1:], "neE") == ""
}

func parsePrintf(args []word) (action, error) {
	words, flag, file, err := redirect(args)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errors.New("usage: printf FORMAT [ARG...] [> FILE]")
	}
	s, err := printfFormat(words[0], words[1:])
	if err != nil {
		return nil, err
	}
	return writeAction([]byte(s), flag, file), nil
}

func parseCat(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) == 0 {
		return nil, errors.New("usage: cat FILE...")
	}
	for i := range a {
		a[i] = fileName(a[i])
	}
	return func(x *execCtx) error { return x.cat(a) }, nil
}

func parseLs(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(a) == 0:
		return func(x *execCtx) error { return x.ls(false) }, nil
	case len(a) == 1 && a[0] == "-l":
		return func(x *execCtx) error { return x.ls(true) }, nil
	}
	return nil, errors.New("usage: ls [-l]")
}

func parseFD(s string) (int, error) {
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 0 || fd > 1<<20 {
		return 0, fmt.Errorf("%q is not a file descriptor number", s)
	}
	return fd, nil
}

func parseOpen(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) != 3 {
		return nil, errors.New("usage: open FD FILE r|w|rw")
	}
	fd, err := parseFD(a[0])
	if err != nil {
		return nil, err
	}
	var flag int
	switch a[2] {
	case "r":
		flag = os.O_RDONLY
	case "w":
		flag = os.O_WRONLY
	case "rw":
		flag = os.O_RDWR
	default:
		return nil, fmt.Errorf("open: mode %q: want r, w or rw", a[2])
	}
	name := fileName(a[1])
	return func(x *execCtx) error { return x.open(fd, name, flag) }, nil
}

func parseRead(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) < 1 || len(a) > 2 {
		return nil, errors.New("usage: read FD [N]")
	}
	fd, err := parseFD(a[0])
	if err != nil {
		return nil, err
	}
	n := -1
	if len(a) == 2 {
		if n, err = strconv.Atoi(a[1]); err != nil || n < 0 || n > 1<<24 {
			return nil, fmt.Errorf("read: count %q: want 0 to %d", a[1], 1<<24)
		}
	}
	return func(x *execCtx) error { return x.read(fd, n) }, nil
}

func parseWrite(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) != 2 {
		return nil, errors.New(`usage: write FD TEXT (quote TEXT if it has blanks; \n is a newline)`)
	}
	fd, err := parseFD(a[0])
	if err != nil {
		return nil, err
	}
	data := []byte(unescape(a[1]))
	return func(x *execCtx) error { return x.write(fd, data) }, nil
}

func parseSeek(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) != 2 {
		return nil, errors.New("usage: seek FD OFFSET")
	}
	fd, err := parseFD(a[0])
	if err != nil {
		return nil, err
	}
	off, err := strconv.ParseInt(a[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("seek: offset %q: not a number", a[1])
	}
	return func(x *execCtx) error { return x.seek(fd, off) }, nil
}

func parseClose(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, errors.New("usage: close FD")
	}
	fd, err := parseFD(a[0])
	if err != nil {
		return nil, err
	}
	return func(x *execCtx) error { return x.close(fd) }, nil
}

func parsePCR(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	if len(a) > 2 {
		return nil, errors.New("usage: pcr [N [BANK]]")
	}
	pcr := -1
	if len(a) >= 1 {
		if pcr, err = strconv.Atoi(a[0]); err != nil || pcr < 0 || pcr >= tpmext.NumPCRs {
			return nil, fmt.Errorf("pcr: %q: want 0 to %d", a[0], tpmext.NumPCRs-1)
		}
	}
	var bank tpmext.Algorithm
	if len(a) == 2 {
		if bank, err = tpmext.ParseAlgorithm(a[1]); err != nil {
			return nil, fmt.Errorf("pcr: %v", err)
		}
	}
	return func(x *execCtx) error { return x.pcr(pcr, bank) }, nil
}

func parseSave(args []word) (action, error) {
	a, err := plain(args)
	if err != nil {
		return nil, err
	}
	switch len(a) {
	case 0:
		return func(x *execCtx) error { return x.save(-1) }, nil
	case 1:
		n, err := strconv.Atoi(a[0])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("save: %q: want a number of records", a[0])
		}
		return func(x *execCtx) error { return x.save(n) }, nil
	}
	return nil, errors.New("usage: save [N]")
}

// fileName drops a securityfs directory prefix.
func fileName(s string) string {
	for _, p := range []string{"/sys/kernel/security/integrity/ima/", staging.DefaultDir + "/"} {
		if strings.HasPrefix(s, p) {
			return s[len(p):]
		}
	}
	return s
}
