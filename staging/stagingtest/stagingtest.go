// Package stagingtest is a reference model of the rules package staging
// applies to the IMA list files, for tests, in the manner of testing/fstest:
// the write grammar of the staging series ("[PATCH v7 00/12] ima: Exporting
// and deleting IMA measurement records from kernel memory", Linux 7.2) with
// its errno order, the permission check of an open, and the one-writer
// bookkeeping of ima_measure_lock(). The queue it drives is the reference
// queue of measlist/measlisttest, so a test can hold a whole reference
// kernel as one measlisttest.Model and one Users value.
//
// It is written from docs/SPEC.md §3 without looking at package staging's
// code, and as plainly as it can be (the number of a request is parsed with
// math/big); it uses staging only for its data types (Task, MeasureState),
// so that a test compares like with like. The whole-system harness of
// imasim and staging's own fuzz test of the write grammar both use it.
//
// No kernel counterpart as code: each function names the kernel function
// whose rules it states.
package stagingtest

import (
	"bytes"
	"math/big"
	"slices"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/imasim/imasim/staging"
)

// Op is what a write to a list file asks of the queue.
type Op int

// The three requests of the series.
const (
	// Stage is "A\n" on a _staged file: move the current list to staged.
	Stage Op = iota + 1
	// DeleteStaged is "D\n" on a _staged file: delete what is staged.
	DeleteStaged
	// DeletePartial is "N\n" on an original file: delete the N oldest
	// records of the current list.
	DeletePartial
)

// Request is one write(2) to a list file that the grammar accepted.
type Request struct {
	Op Op
	// N is the count of DeletePartial, at least 1.
	N uint64
}

// maxRequest is STAGED_REQ_LENGTH: ULONG_MAX's 20 digits and a newline.
const maxRequest = 21

// ParseRequest applies the checks of _ima_measurements_write() that look
// only at the bytes written and at the file, in the kernel's order:
//
//  1. 2 to 21 bytes, the last one '\n' (else EINVAL); what precedes a NUL
//     byte is the request;
//  2. 'A' or 'D' first: exactly "A\n" or "D\n", on a _staged file (else
//     EINVAL);
//  3. anything else is N: refused on a _staged file, and while the hash
//     table is flushed on D (flush is ima_flush_htable in effect) (EINVAL);
//  4. N is kstrtoul(s, 10) (ParseUlong): ERANGE or EINVAL;
//  5. N is at least 1 (EINVAL).
//
// What the queue then answers (ENOENT, EEXIST, EACCES, ESTALE, ENOMEM) is
// Apply's.
//
// Mirrors the rules of security/integrity/ima/ima_fs.c:
// _ima_measurements_write() ([PATCH v7 09/12, 11/12]).
func ParseRequest(p []byte, staged, flush bool) (Request, error) {
	if len(p) < 2 || len(p) > maxRequest || p[len(p)-1] != '\n' {
		return Request{}, syscall.EINVAL
	}
	s := p[:len(p)-1] // the kernel's copy ends in a NUL where the '\n' was
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	switch p[0] {
	case 'A', 'D':
		if len(p) != 2 || !staged {
			return Request{}, syscall.EINVAL
		}
		if p[0] == 'A' {
			return Request{Op: Stage}, nil
		}
		return Request{Op: DeleteStaged}, nil
	}
	if staged || flush {
		return Request{}, syscall.EINVAL
	}
	n, err := ParseUlong(s)
	if err != nil {
		return Request{}, err
	}
	if n == 0 {
		return Request{}, syscall.EINVAL
	}
	return Request{Op: DeletePartial, N: n}, nil
}

// ParseUlong is kstrtoul(s, 10) on a 64-bit kernel: one optional '+', the
// longest run of decimal digits (a value above 2⁶⁴−1 there is ERANGE,
// whatever follows), one optional '\n', then the end; no digits, or
// anything else after them, is EINVAL.
//
// Mirrors the rules of lib/kstrtox.c:kstrtoull() and _parse_integer_limit().
func ParseUlong(s []byte) (uint64, error) {
	s = bytes.TrimPrefix(s, []byte("+"))
	end := 0
	for end < len(s) && '0' <= s[end] && s[end] <= '9' {
		end++
	}
	v, _ := new(big.Int).SetString(string(s[:end]), 10)
	if v != nil && !v.IsUint64() {
		return 0, syscall.ERANGE
	}
	if end == 0 || len(bytes.TrimPrefix(s[end:], []byte("\n"))) > 0 {
		return 0, syscall.EINVAL
	}
	return v.Uint64(), nil
}

// Apply carries out an accepted request on the reference queue. It returns
// the records a deletion took from the kernel's lists (with ENOMEM, the
// records a failed flush lost).
//
// Mirrors the calls of security/integrity/ima/ima_fs.c:
// _ima_measurements_write() into ima_queue.c ([PATCH v7 09/12, 11/12]).
func Apply(m *measlisttest.Model, r Request) ([]*template.Entry, error) {
	switch r.Op {
	case Stage:
		return nil, m.Stage()
	case DeleteStaged:
		return m.DeleteStaged()
	case DeletePartial:
		return m.DeletePartial(r.N)
	}
	return nil, syscall.EINVAL
}

// Write is one write(2) of p to a list file (staged is true for a _staged
// file) of the kernel m: ParseRequest, then Apply. A successful write
// consumes all of p.
func Write(m *measlisttest.Model, p []byte, staged bool) ([]*template.Entry, error) {
	r, err := ParseRequest(p, staged, m.FlushHtable())
	if err != nil {
		return nil, err
	}
	return Apply(m, r)
}

// MayOpen reports whether task t may open a root:root file of mode perm
// for reading and/or writing: the owner's bits for uid 0, the group's for a
// member of group 0 (its gid or a supplementary group), the others' bits
// otherwise; then CAP_DAC_OVERRIDE allows anything and CAP_DAC_READ_SEARCH
// a read.
//
// Mirrors the rules of fs/namei.c:generic_permission() and
// acl_permission_check().
func MayOpen(t staging.Task, perm uint32, read, write bool) bool {
	shift := 0
	switch {
	case t.UID == 0:
		shift = 6
	case t.GID == 0 || slices.Contains(t.Groups, 0):
		shift = 3
	}
	bits := perm >> shift & 7
	if (!read || bits&4 != 0) && (!write || bits&2 != 0) {
		return true
	}
	return t.CapDACOverride || (!write && t.CapDACReadSearch)
}

// Users is the list files' reader/writer bookkeeping of one kernel:
// ima_measure_users (readers count up, the writer is -1), measure_writer
// and measure_writer_extra_writes. The zero value is a kernel with no file
// open.
type Users struct {
	state staging.MeasureState
}

// State returns the bookkeeping, as staging.SecurityFS.MeasureState shows
// it. Writer keeps the last writer's task after it is gone, as
// measure_writer does; only HasWriter says whether there is one.
func (u *Users) State() staging.MeasureState { return u.state }

// Lock admits a reader, or the writer (task tid): EBUSY against a writer
// or, for a writer, against any reader or another writer; ENFILE when the
// reader count would overflow; a second write open by the writer's own
// task is an extra write, admitted.
//
// Mirrors the rules of security/integrity/ima/ima_fs.c:ima_measure_lock()
// ([PATCH v7 06/12]).
func (u *Users) Lock(write bool, tid int) error {
	s := &u.state
	switch {
	case !write && s.Users == 1<<63-1:
		return syscall.ENFILE
	case write && s.HasWriter && s.Writer == tid:
		s.ExtraWrites++
	case write && s.Users != 0, !write && s.Users < 0:
		return syscall.EBUSY
	case write:
		s.Users, s.Writer, s.HasWriter = -1, tid, true
	default:
		s.Users++
	}
	return nil
}

// Unlock releases what Lock admitted, in the context of the releasing task
// tid (which need not be the opener): the writer's own task first gives
// back an extra write.
//
// Mirrors the rules of security/integrity/ima/ima_fs.c:ima_measure_unlock()
// ([PATCH v7 06/12]).
func (u *Users) Unlock(write bool, tid int) {
	s := &u.state
	switch {
	case write && s.HasWriter && s.Writer == tid && s.ExtraWrites > 0:
		s.ExtraWrites--
	case write:
		s.Users++
		s.HasWriter = false
	default:
		s.Users--
	}
}

// Open applies the checks an open(2) of an existing file goes through once
// the lookup found it, in the kernel's order: the permission check
// (EACCES), then for a list file (list true) CAP_SYS_ADMIN for a write
// (EPERM) and ima_measure_lock() (EBUSY, ENFILE).
//
// Mirrors the rules of fs/namei.c:may_open() and
// security/integrity/ima/ima_fs.c:_ima_measurements_open() ([PATCH v7
// 06/12]).
func Open(u *Users, t staging.Task, perm uint32, read, write, list bool) error {
	if !MayOpen(t, perm, read, write) {
		return syscall.EACCES
	}
	if !list {
		return nil
	}
	if write && !t.CapSysAdmin {
		return syscall.EPERM
	}
	return u.Lock(write, t.TID)
}
