package scenario

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestParseErrors checks that every kind of bad line is refused with an
// *Error naming the file and the line.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		msg  string // part of the message
	}{
		{"unknown command", "boot\nfrobnicate x\n", 2, `unknown command "frobnicate"`},
		{"output without command", "> 1\n", 1, "must follow its command"},
		{"output after blank", "boot\n\n> 1\n", 3, "must follow its command"},
		{"output after comment", "cat violations\n# c\n> 0\n", 3, "must follow its command"},
		{"errno without command", "! EBUSY\n", 1, "must follow its command"},
		{"unknown errno", "cat violations\n! EWHATEVER\n", 2, `unknown errno "EWHATEVER"`},
		{"errno twice", "cat violations\n! EBUSY\n! EPERM\n", 3, "second expected error"},
		{"errno with junk", "cat violations\n! EBUSY now\n", 2, `"! ERRNO"`},
		{"output without space", "cat violations\n>0\n", 2, `starts with "> "`},
		{"unterminated quote", "boot\nmeasure /a 'x\n", 2, "unterminated single quote"},
		{"unterminated double quote", "measure /a \"x\n", 1, "unterminated double quote"},
		{"pipe", "cat violations | wc\n", 1, `'|' is not supported`},
		{"dollar", "echo $X > violations\n", 1, `'$' is not supported`},
		{"expansion in quotes", "echo \"$X\" > violations\n", 1, "expansion is not supported"},
		{"trailing backslash", "echo A\\\n", 1, "backslash at the end"},
		{"boot key", "boot colour=blue\n", 1, `unknown key "colour"`},
		{"boot bool", "boot staging=maybe\n", 1, "want y or n"},
		{"boot bank", "boot banks=sha999\n", 1, "banks=sha999"},
		{"boot hash", "boot hash=crc32\n", 1, "hash=crc32"},
		{"boot template", "boot template=ima-xyz\n", 1, "not a builtin"},
		{"boot template_fmt", "boot template_fmt=d-ng|zz\n", 1, `'|' is not supported`},
		{"boot both templates", "boot template=ima-ng template_fmt='d-ng|n-ng'\n", 1, "exclude each other"},
		{"boot pcr range", "boot pcr=7\n", 1, "from 8 to 14"},
		{"boot key twice", "boot flush=y flush=n\n", 1, "flush given twice"},
		{"boot no value", "boot flush\n", 1, "want KEY=VALUE"},
		{"boot locking", "boot locking=loose\n", 1, "want model or kernel"},
		{"boot locking fix", "boot locking=kernel+faster\n", 1, `unknown fix "faster"`},
		{"boot model fix", "boot locking=model+serialize\n", 1, "fixes go with locking=kernel"},
		{"at point", "at 'N: later' cat violations\n", 1, "usage: at POINT"},
		{"at command", "at 'N: walked' dance\n", 1, `unknown command "dance"`},
		{"measure usage", "measure /a\n", 1, "usage: measure"},
		{"measure option", "measure /a a colour=blue\n", 1, `unknown option "colour=blue"`},
		{"measure pcr", "measure /a a pcr=99\n", 1, "pcr=99"},
		{"measure mode", "measure /a a mode=999\n", 1, "not an octal mode"},
		{"measure template", "measure /a a template=nope\n", 1, "template=nope"},
		{"violation cause", "violation /a because\n", 1, `cause "because"`},
		{"redirect not at end", "echo A > x y\n", 1, "one file name after it"},
		{"redirect twice", "echo A > x > y\n", 1, "one file name after it"},
		{"redirect for cat", "cat violations > x\n", 1, "only supported for echo and printf"},
		{"printf verb", "printf '%x' 1\n", 1, "%x is not supported"},
		{"printf extra args", "printf A B\n", 1, "left over"},
		{"printf no format", "printf\n", 1, "usage: printf"},
		{"open mode", "open 3 violations rx\n", 1, `mode "rx"`},
		{"open fd", "open three violations r\n", 1, "not a file descriptor"},
		{"open usage", "open 3 violations\n", 1, "usage: open"},
		{"read count", "read 3 -1\n", 1, "read: count"},
		{"write usage", "write 3\n", 1, "usage: write"},
		{"seek offset", "seek 3 x\n", 1, "seek: offset"},
		{"close usage", "close\n", 1, "usage: close"},
		{"as usage", "as 2\n", 1, "usage: as"},
		{"as tid", "as 0 cat violations\n", 1, "positive integer"},
		{"as option", "as 2:root cat violations\n", 1, `unknown option "root"`},
		{"as capability", "as 2:cap=sys_boot cat violations\n", 1, `unknown capability "sys_boot"`},
		{"as twice", "as 2 as 3 cat violations\n", 1, `"as" given twice`},
		{"as for measure", "as 2 measure /a a\n", 1, "does not run as a task"},
		{"old twice", "old old cat violations\n", 1, `"old" given twice`},
		{"old for boot", "old boot\n", 1, "cannot run on the old kernel"},
		{"old for read", "old read 3\n", 1, "cannot run on the old kernel"},
		{"kexec usage", "kexec -x\n", 1, "usage: kexec"},
		{"pcr number", "pcr 24\n", 1, "want 0 to 23"},
		{"pcr bank", "pcr 10 md9\n", 1, "md9"},
		{"save usage", "save all\n", 1, "save:"},
		{"no args", "replay now\n", 1, "takes no arguments"},
		{"ls usage", "ls -a\n", 1, "usage: ls"},
		{"later line", "boot\ncat violations\n> 0\n\n# ok\nmeasure\n", 6, "usage: measure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("case.txt", []byte(tt.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) = %v, want an *Error", tt.src, err)
			}
			if e.File != "case.txt" || e.Line != tt.line {
				t.Errorf("error at %s:%d, want case.txt:%d (%v)", e.File, e.Line, tt.line, err)
			}
			prefix := "case.txt:" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// TestParseAccepts checks lines that must parse, and what they hold.
func TestParseAccepts(t *testing.T) {
	src := `# a comment
boot banks=sha1,sha256,sha384 hash=sha384 template=ima-sig staging=n kexec=n flush=y htable=n criticaldata=y pcr=11 pagesize=16384 kexec_extra_kb=64 ndelete_needs_staging=y bigendian=y canonical=y
boot banks=none template_fmt='d-ng|n-ng|buf'
   measure "/usr/bin/with space" 'it''s' pcr=12 uid=1 gid=2 mode=0755 template=ima-sig   # trailing comment
measure /a a=b
measure-buffer kernel_version 7.2.0 pcr=10
violation /tmp/x open_writers
echo -n -e 'A\n' >/sys/kernel/security/ima/binary_runtime_measurements_staged
echo D>>/sys/kernel/security/integrity/ima/binary_runtime_measurements_staged
echo hello world
> hello world
printf '%s\n%d%%\x41\101' 10 20 > binary_runtime_measurements
open 3 binary_runtime_measurements_staged rw
write 3 "A\n"
> 2
read 3
read 3 4096
seek 3 0
as 7:uid=1000,gid=1000,groups=0+4,cap=sys_admin+cap_dac_override close 3
as 2:nocap old cat binary_runtime_measurements
old as 2 echo A > binary_runtime_measurements_staged
! EACCES
ls
ls -l
kexec -l
kexec -e
kexec
reboot
pcr
pcr 10
pcr 10 sha256
counters
save
save 3
discard
replay
cat violations
>
> x
`
	s, err := Parse("ok.txt", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Len(), 33; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	var last *step
	for _, it := range s.items {
		if it.step != nil {
			last = it.step
		}
	}
	if got := strings.Join(last.want, "|"); got != "|x" {
		t.Errorf("last command's expectations = %q, want %q", got, "|x")
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want string // words joined by "·", operators in brackets
	}{
		{`echo A > f`, `echo·A·[>]·f`},
		{`echo A>f`, `echo·A·[>]·f`},
		{`echo A>>f`, `echo·A·[>>]·f`},
		{`echo 'A > f'`, `echo·A > f`},
		{`echo "A \"q\" \\ \n"`, `echo·A "q" \ \n`},
		{`echo a\ b`, `echo·a b`},
		{`echo a\>b`, `echo·a>b`},
		{`echo ''`, `echo·`},
		{`echo a'b'"c"`, `echo·abc`},
		{`echo a#b # comment`, `echo·a#b`},
		{"echo\ta  \t b", `echo·a·b`},
	}
	for _, tt := range tests {
		ws, err := splitWords(tt.in)
		if err != nil {
			t.Errorf("splitWords(%q): %v", tt.in, err)
			continue
		}
		var parts []string
		for _, w := range ws {
			if w.op {
				parts = append(parts, "["+w.text+"]")
			} else {
				parts = append(parts, w.text)
			}
		}
		if got := strings.Join(parts, "·"); got != tt.want {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`A\n`, "A\n"},
		{`\t\\\a\b\f\r\v\"\'`, "\t\\\a\b\f\r\v\"'"},
		{`5\0junk\n`, "5\x00junk\n"},
		{`\101\1012`, "AA2"},
		{`\x41\x4`, "A\x04"},
		{`\xZ`, `\xZ`},
		{`\q`, `\q`},
		{`end\`, `end\`},
		{`\0400`, "\x200"},
	}
	for _, tt := range tests {
		if got := unescape(tt.in); got != tt.want {
			t.Errorf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPrintfFormat(t *testing.T) {
	tests := []struct {
		format string
		args   []string
		want   string
		err    bool
	}{
		{`%s\n`, []string{"10"}, "10\n", false},
		{`%s%s\n`, []string{"A"}, "A\n", false},
		{`%d\n`, []string{"+5"}, "+5\n", false},
		{`%d`, []string{"x"}, "", true},
		{`%b`, []string{`A\n`}, "A\n", false},
		{`100%%`, nil, "100%", false},
		{`%`, nil, "", true},
		{`%s`, []string{"a", "b"}, "", true},
	}
	for _, tt := range tests {
		got, err := printfFormat(tt.format, tt.args)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("printfFormat(%q, %q) = %q, %v; want %q, error %v", tt.format, tt.args, got, err, tt.want, tt.err)
		}
	}
}

func TestParseTask(t *testing.T) {
	tk, err := parseTask("7:uid=1000")
	if err != nil {
		t.Fatal(err)
	}
	if tk.TID != 7 || tk.UID != 1000 || tk.GID != 1000 || tk.CapSysAdmin || tk.CapDACOverride || tk.CapDACReadSearch {
		t.Errorf("7:uid=1000 = %+v, want uid and gid 1000 without capabilities", tk)
	}
	tk, _ = parseTask("3:nocap")
	if tk.UID != 0 || tk.CapSysAdmin || tk.CapDACOverride {
		t.Errorf("3:nocap = %+v, want uid 0 without capabilities", tk)
	}
	tk, _ = parseTask("3:uid=5,gid=0,cap=sys_admin")
	if tk.GID != 0 || !tk.CapSysAdmin || tk.CapDACOverride {
		t.Errorf("3:uid=5,gid=0,cap=sys_admin = %+v", tk)
	}
	tk, _ = parseTask("1")
	if !tk.CapSysAdmin || !tk.CapDACOverride || !tk.CapDACReadSearch {
		t.Errorf("1 = %+v, want root with every capability", tk)
	}
}

func TestErrnoNames(t *testing.T) {
	for _, name := range []string{"EINVAL", "EEXIST", "ENOENT", "EACCES", "EPERM", "EBUSY", "ESTALE", "ERANGE", "ENODEV", "ENOMEM", "ENFILE", "EBADF"} {
		e, ok := errnoByName(name)
		if !ok || errnoName(e) != name {
			t.Errorf("errno %s does not round-trip (%v, %v)", name, e, ok)
		}
	}
	if got := errnoName(syscall.Errno(4000)); got != "errno(4000)" {
		t.Errorf("errnoName(4000) = %q", got)
	}
}
