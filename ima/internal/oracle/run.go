package oracle

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// Banks are the TPM's PCR banks on both machines (swtpm_setup --pcr-banks
// sha1,sha256).
var Banks = []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}

// MeasurePCR is CONFIG_IMA_MEASURE_PCR_IDX of the built kernel.
const MeasurePCR = 10

// Machine is what a script drives: the real kernel in the guest, or the
// model.
type Machine interface {
	// Do runs fn as task t: on the real machine, on a thread of its own
	// with t's credentials.
	Do(t Task, fn func(fsys staging.FS) error) error
	// Measure makes the kernel measure a file at path holding content;
	// with violation, it does so while the file is open for write.
	Measure(path string, content []byte, violation bool) error
	// ReadDir lists the IMA securityfs directory.
	ReadDir() ([]staging.DirEntry, error)
	// ReadPCR reads one PCR of one bank.
	ReadPCR(pcr int, bank tpmext.Algorithm) ([]byte, error)
	// Close closes f in the context of task t, which drops the last
	// reference: the kernel's release runs there, whoever opened f.
	Close(t Task, f staging.File) error
}

// runner is one run of a script on a machine.
type runner struct {
	m     Machine
	fds   map[int]openFD
	saved map[tpmext.Algorithm][]byte
}

type openFD struct {
	f    staging.File
	task Task
	name string
}

// Run runs the script on m and writes its transcript to w: a header line
// naming the boot aggregate's digests (for Normalize) and saying whether
// the kernel's boot aggregate is the model's formula over the machine's
// PCRs 0-9, then every line of the script, each command followed by what
// it printed ("> " lines) and the errno it failed with ("! ERRNO"). A step
// that fails in another way prints "!! " and its error; the run goes on.
func Run(s *Script, m Machine, w io.Writer) {
	r := &runner{m: m, fds: map[int]openFD{}, saved: map[tpmext.Algorithm][]byte{}}
	fmt.Fprintf(w, "# script %s\n", s.Name)
	r.header(w, s.HashAlgo)
	for _, l := range s.lines {
		fmt.Fprintln(w, l.text)
		if l.step == nil {
			continue
		}
		var out bytes.Buffer
		err := r.exec(l.step, &out)
		writeLines(w, out.String())
		var errno syscall.Errno
		switch {
		case err == nil:
		case errors.As(err, &errno):
			fmt.Fprintf(w, "! %s\n", errnoName(errno))
		default:
			fmt.Fprintf(w, "!! %v\n", err)
		}
	}
	for fd, of := range r.fds { // an fd the script left open
		m.Close(of.task, of.f)
		delete(r.fds, fd)
	}
}

// header prints the boot aggregate line.
func (r *runner) header(w io.Writer, hash template.HashAlgo) {
	var parts []string
	var field []byte // the kernel's d-ng (or d) field
	for _, bank := range Banks {
		data, err := r.readAll(Task{TID: 1}, listFile(bank, false))
		if err != nil {
			fmt.Fprintf(w, "# boot_aggregate: cannot read the %v list: %v\n", bank, err)
			return
		}
		e, _, err := firstEntry(data, bank)
		if err != nil || entryName(e) != template.BootAggregateName {
			fmt.Fprintf(w, "# boot_aggregate: the %v list does not start with it (%v)\n", bank, err)
			return
		}
		parts = append(parts, fmt.Sprintf("%v=%x", bank, e.Digests[0].Value))
		field = e.Fields[0]
	}
	lay, err := template.NewLayout(Banks, hash, template.LittleEndian)
	if err != nil {
		fmt.Fprintf(w, "# boot_aggregate: %v\n", err)
		return
	}
	pcrs := tpmext.PCRValues{}
	for _, bank := range Banks {
		for p := 0; p < 10; p++ {
			v, err := r.m.ReadPCR(p, bank)
			if err != nil {
				fmt.Fprintf(w, "# boot_aggregate: PCR %d %v: %v\n", p, bank, err)
				return
			}
			pcrs[bank] = append(pcrs[bank], v)
		}
	}
	ev, err := lay.BootAggregateEvent(pcrs)
	if err != nil || len(ev.Digest) > len(field) {
		fmt.Fprintf(w, "# boot_aggregate: %v (field %x)\n", err, field)
		return
	}
	kernelDigest := field[len(field)-len(ev.Digest):]
	parts = append(parts, fmt.Sprintf("digest=%x", kernelDigest))
	fmt.Fprintf(w, "# boot_aggregate %s\n", strings.Join(parts, " "))
	if bytes.Equal(ev.Digest, kernelDigest) {
		fmt.Fprintf(w, "# boot_aggregate is the model's %v over PCRs 0-9\n", ev.HashAlgo)
	} else {
		fmt.Fprintf(w, "# boot_aggregate differs from the model's %x over PCRs 0-9\n", ev.Digest)
	}
}

// Normalize replaces the boot aggregate's digests, named by the header
// line Run prints, by placeholders: the one part of a transcript that
// depends on the firmware rather than on the kernel.
func Normalize(transcript string) string {
	for _, l := range strings.Split(transcript, "\n") {
		rest, ok := strings.CutPrefix(l, "# boot_aggregate ")
		if !ok || !strings.Contains(rest, "=") {
			continue
		}
		var pairs []string
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			if len(v) >= 16 {
				pairs = append(pairs, v, "<boot_aggregate "+k+">")
			}
		}
		return strings.NewReplacer(pairs...).Replace(transcript)
	}
	return transcript
}

func (r *runner) exec(st *step, out *bytes.Buffer) error {
	a := st.args
	switch st.cmd {
	case "measure", "violation":
		return r.m.Measure(a[0], []byte(a[1]), st.cmd == "violation")
	case "echo", "printf":
		var data []byte
		if st.cmd == "echo" {
			words, nl := a[:len(a)-2], "\n"
			if len(words) > 0 && words[0] == "-n" {
				words, nl = words[1:], ""
			}
			data = []byte(strings.Join(words, " ") + nl)
		} else {
			var err error
			if data, err = unescape(a[0]); err != nil {
				return err
			}
		}
		return r.m.Do(st.task, func(fsys staging.FS) error { return staging.WriteFile(fsys, a[len(a)-1], data) })
	case "cat":
		for _, name := range a {
			data, err := r.readAll(st.task, name)
			render(out, name, data)
			if err != nil {
				return err
			}
		}
		return nil
	case "ls":
		return r.ls(out)
	case "open":
		fd, err := strconv.Atoi(a[0])
		if err != nil {
			return err
		}
		flag, err := openFlag(a[2])
		if err != nil {
			return err
		}
		if _, busy := r.fds[fd]; busy {
			return fmt.Errorf("open: fd %d is open", fd)
		}
		return r.m.Do(st.task, func(fsys staging.FS) error {
			f, err := fsys.OpenFile(a[1], flag)
			if err == nil {
				r.fds[fd] = openFD{f: f, task: st.task, name: a[1]}
			}
			return err
		})
	case "read", "seek", "write", "close":
		fd, err := strconv.Atoi(a[0])
		if err != nil {
			return err
		}
		of, ok := r.fds[fd]
		if !ok {
			return syscall.EBADF
		}
		if st.cmd == "close" {
			delete(r.fds, fd)
			return r.m.Close(st.task, of.f)
		}
		return r.m.Do(st.task, func(staging.FS) error { return r.fdOp(st, of, out) })
	case "save":
		n := -1
		if len(a) == 1 {
			var err error
			if n, err = strconv.Atoi(a[0]); err != nil {
				return err
			}
		}
		return r.save(n)
	case "replay":
		return r.replay(out)
	}
	return fmt.Errorf("unknown command %q", st.cmd)
}

// fdOp is read, seek or write on an open fd, run on the step's task.
func (r *runner) fdOp(st *step, of openFD, out *bytes.Buffer) error {
	switch st.cmd {
	case "read":
		if len(st.args) == 2 {
			n, err := strconv.Atoi(st.args[1])
			if err != nil {
				return err
			}
			buf := make([]byte, n)
			got, err := of.f.Read(buf)
			if err == io.EOF {
				err = nil
			}
			if err == nil {
				fmt.Fprintln(out, got)
				if _, binary := bankOf(of.name); binary && got > 0 {
					fmt.Fprintf(out, "  %x\n", buf[:got])
				} else if got > 0 {
					fmt.Fprintf(out, "  %q\n", buf[:got])
				}
			}
			return err
		}
		data, err := io.ReadAll(of.f)
		render(out, of.name, data)
		return err
	case "seek":
		off, err := strconv.ParseInt(st.args[1], 10, 64)
		if err != nil {
			return err
		}
		sk, ok := of.f.(io.Seeker)
		if !ok {
			return fmt.Errorf("seek: %T cannot seek", of.f)
		}
		pos, err := sk.Seek(off, io.SeekStart)
		if err == nil {
			fmt.Fprintln(out, pos)
		}
		return err
	}
	data, err := unescape(st.args[1])
	if err != nil {
		return err
	}
	n, err := of.f.Write(data)
	if err == nil {
		fmt.Fprintln(out, n)
	}
	return err
}

func (r *runner) readAll(t Task, name string) ([]byte, error) {
	var data []byte
	err := r.m.Do(t, func(fsys staging.FS) error {
		var err error
		data, err = staging.ReadFile(fsys, name)
		return err
	})
	return data, err
}

func (r *runner) ls(out *bytes.Buffer) error {
	entries, err := r.m.ReadDir()
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	for _, e := range entries {
		fmt.Fprintln(out, e.LongLine())
	}
	return nil
}

// save appends each bank's staged records (n < 0) or the first n records
// of its list to the saved log.
func (r *runner) save(n int) error {
	for _, bank := range Banks {
		data, err := r.readAll(Task{TID: 1}, listFile(bank, n < 0))
		if err != nil {
			return err
		}
		if n >= 0 {
			if data, err = firstRecords(data, bank, n); err != nil {
				return err
			}
		}
		r.saved[bank] = append(r.saved[bank], data...)
	}
	return nil
}

// replay replays saved ++ staged ++ current of each bank and compares the
// result with the machine's PCR 10.
func (r *runner) replay(out *bytes.Buffer) error {
	for _, bank := range Banks {
		log := bytes.Clone(r.saved[bank])
		for _, staged := range []bool{true, false} {
			data, err := r.readAll(Task{TID: 1}, listFile(bank, staged))
			if err != nil {
				return err
			}
			log = append(log, data...)
		}
		el, err := eventlog.ParseEventLog(log, eventlog.Options{Order: template.LittleEndian, ColumnAlg: bank})
		if err != nil {
			fmt.Fprintf(out, "%v: does not parse: %v\n", bank, err)
			continue
		}
		st, err := el.Replay(eventlog.ReplayOptions{Banks: []tpmext.Algorithm{bank}, Workers: 1})
		if err != nil {
			fmt.Fprintf(out, "%v: does not replay: %v\n", bank, err)
			continue
		}
		pcr, err := r.m.ReadPCR(MeasurePCR, bank)
		if err != nil {
			return err
		}
		if bytes.Equal(st.PCRs[bank][MeasurePCR], pcr) {
			fmt.Fprintf(out, "%v: %d records replay to PCR %d\n", bank, el.Len(), MeasurePCR)
		} else {
			fmt.Fprintf(out, "%v: %d records do not replay to PCR %d\n", bank, el.Len(), MeasurePCR)
		}
	}
	return nil
}

// listFile names a bank's binary list file.
func listFile(bank tpmext.Algorithm, staged bool) string {
	name := staging.BinaryRuntimeMeasurements + "_" + bank.String()
	if staged {
		name += "_staged"
	}
	return name
}

// bankOf returns the bank whose template digests a binary list file
// shows, and false for every other file. The links without a bank suffix
// point at the SHA-1 files.
func bankOf(name string) (tpmext.Algorithm, bool) {
	rest, ok := strings.CutPrefix(name, staging.BinaryRuntimeMeasurements)
	if !ok {
		return 0, false
	}
	rest = strings.TrimPrefix(strings.TrimSuffix(rest, "_staged"), "_")
	if rest == "" {
		return tpmext.SHA1, true
	}
	bank, err := tpmext.ParseAlgorithm(rest)
	return bank, err == nil
}

func decoder(data []byte, bank tpmext.Algorithm) (*template.Decoder, error) {
	return template.NewDecoder(bytes.NewReader(data), template.DecodeOptions{
		Order: template.LittleEndian, DigestSize: bank.Size(), Alg: bank})
}

func firstEntry(data []byte, bank tpmext.Algorithm) (*template.Entry, int64, error) {
	d, err := decoder(data, bank)
	if err != nil {
		return nil, 0, err
	}
	e, err := d.Next()
	return e, d.Offset(), err
}

// firstRecords returns the first n records of a binary list.
func firstRecords(data []byte, bank tpmext.Algorithm, n int) ([]byte, error) {
	d, err := decoder(data, bank)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		if _, err := d.Next(); err != nil {
			return nil, fmt.Errorf("save %d: record %d: %v", n, i, err)
		}
	}
	return data[:d.Offset()], nil
}

// render prints what was read from a file: a binary list as one line
// "PCR TEMPLATE NAME" per record and the record's bytes in hex, anything
// else as it is.
func render(w io.Writer, name string, data []byte) {
	bank, ok := bankOf(name)
	if !ok {
		w.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			io.WriteString(w, "(no newline at the end)\n")
		}
		return
	}
	d, err := decoder(data, bank)
	if err != nil {
		fmt.Fprintf(w, "(cannot decode: %v)\n", err)
		return
	}
	for {
		start := d.Offset()
		e, err := d.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Fprintf(w, "(%d bytes that are not a whole record: %v)\n", int64(len(data))-start, err)
			return
		}
		fmt.Fprintf(w, "%d %s %s\n  %s\n", e.PCR, e.Desc.DisplayName(), entryName(e), hex.EncodeToString(data[start:d.Offset()]))
	}
}

// entryName is the n-ng (or n) field of a record, "-" without one.
func entryName(e *template.Entry) string {
	for i, f := range e.Desc.Fields() {
		if f == template.FieldN || f == template.FieldNNG {
			return string(bytes.TrimRight(e.Fields[i], "\x00"))
		}
	}
	return "-"
}

// errnoName is the symbolic name of errno (EBUSY), or its number.
func errnoName(errno syscall.Errno) string {
	for name, e := range errnoNames {
		if e == errno {
			return name
		}
	}
	return fmt.Sprintf("errno %d", int(errno))
}

var errnoNames = map[string]syscall.Errno{
	"EPERM": syscall.EPERM, "ENOENT": syscall.ENOENT, "EIO": syscall.EIO, "EBADF": syscall.EBADF,
	"ENOMEM": syscall.ENOMEM, "EACCES": syscall.EACCES, "EFAULT": syscall.EFAULT, "EBUSY": syscall.EBUSY,
	"EEXIST": syscall.EEXIST, "ENODEV": syscall.ENODEV, "EINVAL": syscall.EINVAL, "ENFILE": syscall.ENFILE,
	"ENOSPC": syscall.ENOSPC, "ESPIPE": syscall.ESPIPE, "ERANGE": syscall.ERANGE, "ESTALE": syscall.ESTALE,
	"EOVERFLOW": syscall.EOVERFLOW, "ENOTTY": syscall.ENOTTY, "EISDIR": syscall.EISDIR,
}
