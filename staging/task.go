package staging

// Task is the caller of a securityfs operation: a thread, with its
// credentials. The kernel's one-writer rule is per task (thread), so two
// goroutines standing for two threads of one process are two tasks.
type Task struct {
	// TID is the thread id; it is what the kernel's measure_writer
	// compares (the task_struct pointer).
	TID int
	// UID and GID are the filesystem uid and gid; Groups are the
	// supplementary groups.
	UID, GID uint32
	Groups   []uint32
	// CapSysAdmin is CAP_SYS_ADMIN, required to open a list file for write.
	CapSysAdmin bool
	// CapDACOverride is CAP_DAC_OVERRIDE: read and write permission
	// checks always pass.
	CapDACOverride bool
	// CapDACReadSearch is CAP_DAC_READ_SEARCH: read permission checks
	// always pass.
	CapDACReadSearch bool
}

// Root returns a root task (uid 0, gid 0, every capability) with thread id
// tid, as a process run by root has.
func Root(tid int) Task {
	return Task{TID: tid, CapSysAdmin: true, CapDACOverride: true, CapDACReadSearch: true}
}

// User returns an unprivileged task (no capabilities) with thread id tid
// and filesystem uid and gid: it may not open the list files at all unless
// uid is 0 or gid is 0, and never for writing (no CAP_SYS_ADMIN).
func User(tid int, uid, gid uint32) Task {
	return Task{TID: tid, UID: uid, GID: gid}
}

func (t Task) inGroup(gid uint32) bool {
	if t.GID == gid {
		return true
	}
	for _, g := range t.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// mayOpen reports whether t passes the permission check for a file of
// mode perm owned by root:root, for read and/or write.
//
// Mirrors fs/namei.c:generic_permission() for a regular file: owner bits
// for uid 0, group bits for members of gid 0, other bits otherwise; then
// CAP_DAC_OVERRIDE overrides read and write, CAP_DAC_READ_SEARCH read.
func (t Task) mayOpen(perm uint32, read, write bool) bool {
	var bits uint32
	switch {
	case t.UID == 0:
		bits = perm >> 6
	case t.inGroup(0):
		bits = perm >> 3
	default:
		bits = perm
	}
	ok := (!read || bits&4 != 0) && (!write || bits&2 != 0)
	if ok || t.CapDACOverride {
		return true
	}
	return !write && t.CapDACReadSearch
}
