package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// config is the kernel configuration of one sequence: the TPM's banks and
// the kernel's build options and boot parameters that the staging series
// depends on.
type config struct {
	// banks are the software TPM's PCR banks, in the TPM's order.
	banks []tpmext.Algorithm
	// hashAlgo is ima_hash= ("sha1" or "sha256").
	hashAlgo string
	// template is ima_template= ("" is ima-ng).
	template string
	// bigEndian models a big-endian kernel without ima_canonical_fmt.
	bigEndian bool
	// staging is CONFIG_IMA_STAGING, flushHtable ima_flush_htable,
	// htableDisabled CONFIG_IMA_DISABLE_HTABLE, kexec CONFIG_IMA_KEXEC.
	staging, flushHtable, htableDisabled, kexec bool
	// nDeleteNeedsStaging makes the original list files read-only (0440,
	// no write operation) without CONFIG_IMA_STAGING, as the documentation
	// describes and the v7 code does not (docs/SPEC.md Q1).
	nDeleteNeedsStaging bool
	// criticalData is a policy that measures critical data: the
	// kernel_version record at boot and, with Kexec, the kexec_load and
	// kexec_execute records.
	criticalData bool
	// pageSize is PAGE_SIZE (seq_file buffers, kexec segments); 0 is 4096.
	pageSize int
}

func (c config) pageBytes() int { return measlist.PageSizeOr(c.pageSize) }

func (c config) templateName() string {
	if c.template == "" {
		return "ima-ng"
	}
	return c.template
}

// String describes the configuration on one line, for scripts.
func (c config) String() string {
	banks := make([]string, len(c.banks))
	for i, b := range c.banks {
		banks[i] = b.String()
	}
	s := []string{"banks=" + strings.Join(banks, ","), "ima_hash=" + c.hashAlgo, "template=" + c.templateName(),
		fmt.Sprintf("page=%d", c.pageBytes())}
	for _, k := range []struct {
		on   bool
		name string
	}{{c.staging, "IMA_STAGING"}, {c.flushHtable, "ima_flush_htable"}, {c.htableDisabled, "IMA_DISABLE_HTABLE"},
		{c.kexec, "IMA_KEXEC"}, {c.criticalData, "critical-data"}, {c.bigEndian, "big-endian"},
		{c.nDeleteNeedsStaging, "N-delete-needs-staging"}} {
		if k.on {
			s = append(s, k.name)
		}
	}
	return strings.Join(s, " ")
}

// tasks are the callers of the securityfs in a sequence, by index: two root
// processes, a uid-0 task without capabilities, an unprivileged user, and a
// member of group 0 with CAP_SYS_ADMIN only. The collector is task
// collectorTID, root.
var tasks = []staging.Task{
	staging.Root(1),
	staging.Root(2),
	{TID: 3},
	{TID: 4, UID: 1000, GID: 1000},
	{TID: 5, UID: 1000, GID: 1000, Groups: []uint32{0}, CapSysAdmin: true},
}

// collectorTID is the thread id of the collector's task.
const collectorTID = 100

// Indexes of the counters (enum binary_lists).
const (
	cBinary = iota
	cStaged
	cFull
)

// kexecHeaderSize is sizeof(struct ima_kexec_hdr).
const kexecHeaderSize = 24

// record is one measurement record as the model knows it: the entry built by
// the record layer, and the bytes every list file shows for it.
type record struct {
	// id numbers the records of a sequence in the order they were built.
	id int
	// what says what the record is, for scripts.
	what      string
	entry     *template.Entry
	pcr       uint32
	violation bool
	// key is the template digest in the ima_hash slot (zeros for a
	// violation): with PCR, the hash-table key.
	key []byte
	// Size is what get_binary_runtime_size() counts.
	Size uint64
	// views are the record as each list-file view shows it (binary or
	// ASCII, one digest slot); dump is the binary record with the SHA-1
	// column, as the kexec dump and the collector see it.
	views [][]byte
	dump  []byte
}

// view is one way a list file renders records.
type view struct {
	slot  int
	ascii bool
}

type nodeKind int

const (
	listNode nodeKind = iota
	counterNode
	symlinkNode
)

// node is one file of the securityfs directory.
type node struct {
	name     string
	kind     nodeKind
	perm     uint32
	target   string
	staged   bool
	view     int // index into model.views
	writable bool
	counter  int // 0 runtime_measurements_count, 1 violations
}

type htKey struct {
	digest string
	pcr    uint32
}

// mKernel is one booted kernel instance. Instances that rebooted or kexec'd
// stay (suspended) so that files opened on them still answer.
type mKernel struct {
	n              int
	current        []*record // ima_measurements
	staged         []*record // ima_measurements_staged
	num            [3]int64  // ima_num_records[]
	size           [3]uint64 // binary_runtime_size[] (with CONFIG_IMA_KEXEC)
	violations     int64     // ima_num_violations
	suspended      bool      // ima_measurements_suspended
	ht             map[htKey]bool
	htInserts      int
	users          int64 // ima_measure_users
	writer         int   // measure_writer (a TID) when hasWriter
	hasWriter      bool
	extra          int64 // measure_writer_extra_writes
	loaded         bool  // kexec_file_load done
	seg            uint64
	gone           bool
	leftByReboot   bool // this kernel ended with a reboot (not a kexec)
	carriedRecords int  // records restored at boot
}

// mFile is an open file description.
type mFile struct {
	num         int // the fd number in scripts
	k           *mKernel
	node        *node
	name        string
	task        int // index into tasks, or -1 for the collector
	read, write bool
	closed      bool
	pos         int64
	seq         seqState
}

// epoch is one log in the sense of "the list as if staging never happened":
// it starts at a cold boot, or at a kexec that carries nothing over.
type epoch struct {
	// log holds every record added since the epoch began, in order,
	// carried across kexecs; records a kexec failed to carry are removed.
	log []*record
	// deleted are the batches removed from the kernel by D or N (or lost
	// by a D that failed to flush), in the order of their removal.
	deleted [][]*record
	// gap is set when N removed records while older ones were staged: the
	// removal order is then not the log order (docs/SPEC.md §4.2).
	gap bool
	// noReplay is set when the log cannot be replayed from the TPM's reset
	// values: a kexec dropped records, or the epoch began at a kexec that
	// carried nothing over (the TPM keeps the old kernel's extends).
	noReplay bool
	// rawDeleted is set when something other than the collector deleted
	// records in this epoch; collectorAligned when the collector's log
	// began with this epoch (a cold boot).
	rawDeleted       bool
	collectorAligned bool
	// collectorWrong is set when the collector decided a pending batch
	// against what the kernel did (see knownBugs).
	collectorWrong bool
}

// Names of the collector's limitations the model detects and counts
// (model.knownBugs) instead of failing the sequence: cases where its rule
// for a pending batch (the batch is kept if its records appear, contiguous
// and in order, in staged ++ current) decides against what the kernel did.
const (
	// limitCollectorCommitsHeld: the kernel still holds some of the
	// batch's records, not as the whole run (a kexec carried part of it),
	// so the batch is committed and those records are served twice.
	limitCollectorCommitsHeld = "collector commits a batch whose records the kernel still holds in part"
	// limitCollectorAbortsDeleted: later records repeat a deleted batch
	// byte for byte (documented in collector/doc.go), so the batch is
	// taken as kept and its records are lost from the collector's log.
	limitCollectorAbortsDeleted = "collector aborts a deleted batch that later records repeat byte for byte"
)

// mCollector is the model of staging/collector with Retries 1 (an EBUSY
// open fails at once) and no hooks.
type mCollector struct {
	k         *mKernel // the kernel its file system is
	storeBoot *mKernel // the kernel of the store's last log or kernel frame
	committed []*record
	pending   []*record
	hasPend   bool
	stuck     bool // ErrPartlyCarried was reported
}

// model is the reference model of a simulated system: the kernel instances
// of one machine, its TPM, the open files, and the collector.
//
// All methods take mu; it is written for clarity, not speed.
type model struct {
	mu       sync.Mutex
	cfg      config
	layout   *template.Layout
	bootDesc *template.Descriptor
	order    template.Order
	views    []view
	nodes    map[string]*node
	names    []string // every name of the directory, sorted
	kernels  []*mKernel
	pcrs     map[tpmext.Algorithm][][]byte
	files    []*mFile
	nextID   int
	seen     []htKey // every hash-table key ever computed, in order
	seenSet  map[htKey]bool
	failNext bool // the next hash-table allocation fails
	coll     *mCollector
	ep       *epoch
	// knownBugs counts the occurrences of known bugs and limitations.
	knownBugs map[string]int
}

// newModel boots the model of a machine with cfg, as ima.New does on a
// fresh software TPM.
func newModel(cfg config) (*model, error) {
	m := &model{cfg: cfg, seenSet: map[htKey]bool{}, pcrs: map[tpmext.Algorithm][][]byte{}, knownBugs: map[string]int{}}
	algo, err := template.ParseHashAlgo(cfg.hashAlgo)
	if err != nil {
		return nil, err
	}
	m.bootDesc = template.Builtin(cfg.templateName())
	if m.bootDesc == nil {
		return nil, fmt.Errorf("harness: unknown template %q", cfg.template)
	}
	if cfg.bigEndian {
		m.order = template.BigEndian
	}
	if m.layout, err = template.NewLayout(cfg.banks, algo, m.order); err != nil {
		return nil, err
	}
	m.makeFiles()
	m.resetPCRs()
	m.ep = &epoch{collectorAligned: true}
	m.boot(nil)
	m.coll = &mCollector{k: m.cur(), storeBoot: m.cur()}
	return m, nil
}

// makeFiles lays out the directory as create_securityfs_measurement_lists()
// and ima_fs_init() do: per bank (and SHA-1 if no bank has it), binary and
// ASCII, original (0660, writable since patch 11 regardless of
// CONFIG_IMA_STAGING) and, with staging, _staged; the symlinks; the counters.
func (m *model) makeFiles() {
	m.nodes = map[string]*node{}
	type suffix struct {
		name string
		slot int
	}
	var sufs []suffix
	hasSHA1 := false
	for i, b := range m.cfg.banks {
		sufs = append(sufs, suffix{b.String(), i})
		hasSHA1 = hasSHA1 || b == tpmext.SHA1
	}
	if !hasSHA1 {
		sufs = append(sufs, suffix{"sha1", m.layout.SHA1Index()})
	}
	lists := func(staged bool) {
		for _, s := range sufs {
			for _, ascii := range []bool{false, true} {
				base := "binary_runtime_measurements_"
				if ascii {
					base = "ascii_runtime_measurements_"
				}
				name := base + s.name
				if staged {
					name += "_staged"
				}
				v := -1
				for i, w := range m.views {
					if w == (view{s.slot, ascii}) {
						v = i
					}
				}
				if v < 0 {
					m.views = append(m.views, view{s.slot, ascii})
					v = len(m.views) - 1
				}
				perm, writable := uint32(0o660), true
				if !staged && !m.cfg.staging && m.cfg.nDeleteNeedsStaging {
					perm, writable = 0o440, false
				}
				m.nodes[name] = &node{name: name, kind: listNode, perm: perm, staged: staged, view: v, writable: writable}
			}
		}
	}
	lists(false)
	link := func(name, target string) {
		m.nodes[name] = &node{name: name, kind: symlinkNode, perm: 0o777, target: target}
	}
	link("binary_runtime_measurements", "binary_runtime_measurements_sha1")
	link("ascii_runtime_measurements", "ascii_runtime_measurements_sha1")
	if m.cfg.staging {
		lists(true)
		link("binary_runtime_measurements_staged", "binary_runtime_measurements_sha1_staged")
		link("ascii_runtime_measurements_staged", "ascii_runtime_measurements_sha1_staged")
	}
	m.nodes["runtime_measurements_count"] = &node{name: "runtime_measurements_count", kind: counterNode, perm: 0o440}
	m.nodes["violations"] = &node{name: "violations", kind: counterNode, perm: 0o440, counter: 1}
	for n := range m.nodes {
		m.names = append(m.names, n)
	}
	sort.Strings(m.names)
}

// resetPCRs sets every PCR to its value after TPM2_Startup(CLEAR).
func (m *model) resetPCRs() {
	for _, b := range m.cfg.banks {
		v := make([][]byte, tpmext.NumPCRs)
		for i := range v {
			v[i] = tpmext.InitialPCRValue(i, b)
		}
		m.pcrs[b] = v
	}
}

func (m *model) pcrValues() tpmext.PCRValues {
	out := tpmext.PCRValues{}
	for b, v := range m.pcrs {
		out[b] = append([][]byte(nil), v...)
	}
	return out
}

func (m *model) cur() *mKernel { return m.kernels[len(m.kernels)-1] }

// newRecord wraps an entry built by the record layer.
func (m *model) newRecord(e *template.Entry, violation bool, what string) *record {
	r := &record{id: m.nextID, what: what, entry: e, pcr: e.PCR, violation: violation}
	m.nextID++
	algo := m.layout.HashAlgo()
	if violation {
		r.key = make([]byte, algo.Size())
	} else {
		d, err := e.TemplateDigest(algo, m.order)
		if err != nil {
			panic(fmt.Sprintf("harness: template digest: %v", err))
		}
		r.key = d
	}
	// get_binary_runtime_size(): pcr, the SHA-1 sized digest, the name's
	// length and the name, template_data_len and the data.
	r.Size = uint64(4 + 20 + 4 + len(e.Desc.Name()) + 4 + e.TemplateDataLen())
	for _, v := range m.views {
		var b []byte
		var err error
		if v.ascii {
			b, err = e.AppendASCII(nil, v.slot, m.order)
		} else {
			b, err = e.AppendBinary(nil, v.slot, m.order)
		}
		if err != nil {
			panic(fmt.Sprintf("harness: rendering: %v", err))
		}
		r.views = append(r.views, b)
	}
	dump, err := e.AppendBinary(nil, m.layout.SHA1Index(), m.order)
	if err != nil {
		panic(fmt.Sprintf("harness: rendering: %v", err))
	}
	r.dump = dump
	return r
}

func (m *model) noteKey(k htKey) {
	if !m.seenSet[k] {
		m.seenSet[k] = true
		m.seen = append(m.seen, k)
	}
}

// boot brings up a kernel instance with the records a kexec carried.
func (m *model) boot(carried []*record) *mKernel {
	k := &mKernel{n: len(m.kernels), ht: map[htKey]bool{}, carriedRecords: len(carried)}
	m.kernels = append(m.kernels, k)
	// ima_restore_measurement_entry(): no hash table, no extend.
	for _, r := range carried {
		k.current = append(k.current, r)
		k.num[cBinary]++
		k.num[cFull]++
		k.size[cBinary] += r.Size
		k.size[cFull] += r.Size
	}
	e, err := m.layout.NewBootAggregate(m.bootDesc, 10, m.pcrValues())
	if err != nil {
		panic(fmt.Sprintf("harness: boot aggregate: %v", err))
	}
	if err := m.add(k, m.newRecord(e, false, "boot_aggregate")); err != nil {
		panic(fmt.Sprintf("harness: boot aggregate: %v", err))
	}
	if m.cfg.criticalData {
		m.measureBufferOn(k, "kernel_version", []byte("7.2.0"), -1, false)
	}
	return k
}

// add is ima_add_template_entry(): the suspension check, the duplicate
// lookup (not for violations), the append with its counters and hash-table
// insertion, and the extend.
func (m *model) add(k *mKernel, r *record) error {
	key := htKey{string(r.key), r.pcr}
	m.noteKey(key)
	if k.suspended {
		return syscall.ENODEV
	}
	if !r.violation && !m.cfg.htableDisabled && k.ht[key] {
		return syscall.EEXIST
	}
	k.current = append(k.current, r)
	k.num[cBinary]++
	k.num[cFull]++
	k.size[cBinary] += r.Size
	k.size[cFull] += r.Size
	if !m.cfg.htableDisabled {
		k.ht[key] = true
		k.htInserts++
	}
	m.extend(r)
	m.ep.log = append(m.ep.log, r)
	return nil
}

// extend extends r's PCR in every bank: H_bank(template data), or 0xFF for
// a violation.
func (m *model) extend(r *record) {
	for _, b := range m.cfg.banks {
		old := m.pcrs[b][r.pcr]
		m.pcrs[b][r.pcr] = tpmext.ExtendValue(b, old, extendDigest(r, b, m.order))
	}
}

func extendDigest(r *record, b tpmext.Algorithm, o template.Order) []byte {
	if r.violation {
		return bytes.Repeat([]byte{0xff}, b.Size())
	}
	d, err := r.entry.TemplateDigest(template.HashAlgoFromTPM(b), o)
	if err != nil {
		panic(fmt.Sprintf("harness: template digest: %v", err))
	}
	return d
}

func (m *model) descFor(name string) *template.Descriptor {
	if name == "" {
		return m.bootDesc
	}
	d := template.Builtin(name)
	if d == nil {
		panic("harness: unknown template " + name)
	}
	return d
}

// measureFile is a file measurement on the running kernel.
func (m *model) measureFile(path string, content []byte, pcr int, tmpl string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev, err := template.NewFileEvent(path, &template.File{Content: content}, m.layout.HashAlgo(), nil)
	if err != nil {
		return err
	}
	e, err := m.layout.NewEntry(m.descFor(tmpl), pcrOr10(pcr), ev)
	if err != nil {
		return err
	}
	return m.add(m.cur(), m.newRecord(e, false, path))
}

func pcrOr10(pcr int) uint32 {
	if pcr < 0 {
		return 10
	}
	return uint32(pcr)
}

// measureBuffer is a buffer measurement (ima-buf) on the running kernel.
func (m *model) measureBuffer(name string, buf []byte, pcr int, hash bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.measureBufferOn(m.cur(), name, buf, pcr, hash)
}

func (m *model) measureBufferOn(k *mKernel, name string, buf []byte, pcr int, hash bool) error {
	e, err := m.layout.NewEntry(template.Builtin("ima-buf"), pcrOr10(pcr), m.layout.BufferEvent(name, buf, hash))
	if err != nil {
		return err
	}
	return m.add(k, m.newRecord(e, false, name))
}

// violation is ima_add_violation(): the counter moves first, then the
// record (boot template, PCR 10, zero digests) is added.
func (m *model) violation(path, cause string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.cur()
	k.violations++
	e, err := m.layout.NewEntry(m.bootDesc, 10, template.NewViolationEvent(path, nil, cause))
	if err != nil {
		return err
	}
	return m.add(k, m.newRecord(e, true, "violation "+path))
}

// armFailAlloc makes the next hash-table allocation fail.
func (m *model) armFailAlloc() {
	m.mu.Lock()
	m.failNext = true
	m.mu.Unlock()
}

// stage is ima_queue_stage().
func (m *model) stage(k *mKernel) error {
	switch {
	case len(k.staged) > 0:
		return syscall.EEXIST
	case len(k.current) == 0:
		return syscall.ENOENT
	case k.suspended:
		return syscall.EACCES
	}
	k.staged, k.current = k.current, nil
	k.num[cStaged], k.num[cBinary] = k.num[cBinary], 0
	k.size[cStaged], k.size[cBinary] = k.size[cBinary], 0
	return nil
}

// deleteStaged is ima_queue_staged_delete_all(), with the flush of patch
// 10 and its -ENOMEM path (docs/SPEC.md Q3: the records are already detached).
func (m *model) deleteStaged(k *mKernel, byCollector bool) error {
	switch {
	case len(k.staged) == 0:
		return syscall.ENOENT
	case k.suspended:
		return syscall.ESTALE
	}
	batch := k.staged
	k.staged = nil
	k.num[cStaged] = 0
	k.size[cStaged] = 0
	m.noteDeleted(k, batch, byCollector)
	if m.cfg.flushHtable && !m.cfg.htableDisabled {
		if m.failNext {
			m.failNext = false
			return syscall.ENOMEM
		}
		k.ht = map[htKey]bool{}
		k.htInserts = 0
	}
	return nil
}

// deletePartial is ima_queue_delete_partial().
func (m *model) deletePartial(k *mKernel, n uint64, byCollector bool) error {
	if uint64(len(k.current)) < n {
		return syscall.ENOENT
	}
	if k.suspended {
		return syscall.ESTALE
	}
	batch := k.current[:n:n]
	k.current = k.current[n:]
	k.num[cBinary] -= int64(n)
	for _, r := range batch {
		k.size[cBinary] -= r.Size
	}
	if len(k.staged) > 0 && k == m.cur() {
		m.ep.gap = true
	}
	m.noteDeleted(k, batch, byCollector)
	return nil
}

func (m *model) noteDeleted(k *mKernel, batch []*record, byCollector bool) {
	if k != m.cur() {
		return // a suspended kernel deletes nothing; unreachable
	}
	m.ep.deleted = append(m.ep.deleted, batch)
	if !byCollector {
		m.ep.rawDeleted = true
	}
}

// request is _ima_measurements_write() on a file of kernel k: the length
// and newline checks, then A, D or N.
func (m *model) request(k *mKernel, p []byte, staged, byCollector bool) error {
	if len(p) < 2 || len(p) > 21 { // STAGED_REQ_LENGTH
		return syscall.EINVAL
	}
	if p[len(p)-1] != '\n' {
		return syscall.EINVAL
	}
	s := p[:len(p)-1] // the '\n' becomes the terminating NUL
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	switch p[0] {
	case 'A':
		if len(p) != 2 || !staged {
			return syscall.EINVAL
		}
		return m.stage(k)
	case 'D':
		if len(p) != 2 || !staged {
			return syscall.EINVAL
		}
		return m.deleteStaged(k, byCollector)
	}
	if staged {
		return syscall.EINVAL
	}
	if m.cfg.flushHtable && !m.cfg.htableDisabled {
		return syscall.EINVAL
	}
	n, err := kstrtoul(s)
	if err != nil {
		return err
	}
	if n == 0 {
		return syscall.EINVAL
	}
	return m.deletePartial(k, n, byCollector)
}

// kstrtoul is lib/kstrtox.c:kstrtoull() in base 10 on a C string: one
// optional '+', _parse_integer() (which keeps parsing digits after an
// overflow, and reports it), then at most one '\n', then the end.
func kstrtoul(s []byte) (uint64, error) {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	var res uint64
	overflow := false
	rv := 0
	for ; rv < len(s); rv++ {
		c := s[rv]
		if c < '0' || c > '9' {
			break
		}
		val := uint64(c - '0')
		if res&0xf000000000000000 != 0 && res > (math.MaxUint64-val)/10 {
			overflow = true
		}
		res = res*10 + val
	}
	if overflow {
		return 0, syscall.ERANGE
	}
	if rv == 0 {
		return 0, syscall.EINVAL
	}
	s = s[rv:]
	if len(s) > 0 && s[0] == '\n' {
		s = s[1:]
	}
	if len(s) > 0 {
		return 0, syscall.EINVAL
	}
	return res, nil
}

// mayOpen is fs/namei.c:generic_permission() for a root:root file of mode
// perm: owner, group or other bits, then CAP_DAC_OVERRIDE (read and write)
// and CAP_DAC_READ_SEARCH (read).
func mayOpen(t staging.Task, perm uint32, read, write bool) bool {
	inGroup0 := t.GID == 0
	for _, g := range t.Groups {
		inGroup0 = inGroup0 || g == 0
	}
	bits := perm & 7
	switch {
	case t.UID == 0:
		bits = perm >> 6 & 7
	case inGroup0:
		bits = perm >> 3 & 7
	}
	if (!read || bits&4 != 0) && (!write || bits&2 != 0) {
		return true
	}
	if t.CapDACOverride {
		return true
	}
	return !write && t.CapDACReadSearch
}

func taskOf(i int) staging.Task {
	if i < 0 {
		return staging.Root(collectorTID)
	}
	return tasks[i]
}

// Open opens name on the running kernel as task (an index into tasks, -1
// for the collector) with flag.
func (m *model) Open(task int, name string, flag int) (*mFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := m.open(m.cur(), task, name, flag)
	if err != nil {
		return nil, err
	}
	f.num = 3 + len(m.files)
	m.files = append(m.files, f)
	return f, nil
}

// open follows the VFS and _ima_measurements_open(): the lookup (creating
// a missing file is EACCES), O_EXCL,
// the access mode (3 is refused, a documented difference of the
// simulator), the permission check, CAP_SYS_ADMIN for a write, and
// ima_measure_lock().
func (m *model) open(k *mKernel, task int, name string, flag int) (*mFile, error) {
	n, ok := m.nodes[name]
	if ok && n.kind == symlinkNode {
		n, ok = m.nodes[n.target]
	}
	if !ok {
		if flag&os.O_CREATE != 0 {
			// lookup_open(): may_o_create() or the missing ->create of
			// a securityfs directory; EACCES either way.
			return nil, syscall.EACCES
		}
		return nil, syscall.ENOENT
	}
	if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
		return nil, syscall.EEXIST
	}
	var read, write bool
	switch flag & 3 {
	case os.O_RDONLY:
		read = true
	case os.O_WRONLY:
		write = true
	case os.O_RDWR:
		read, write = true, true
	default:
		return nil, syscall.EINVAL
	}
	t := taskOf(task)
	if !mayOpen(t, n.perm, read, write) {
		return nil, syscall.EACCES
	}
	if n.kind == listNode {
		if write && !t.CapSysAdmin {
			return nil, syscall.EPERM
		}
		if err := k.measureLock(write, t.TID); err != nil {
			return nil, err
		}
	}
	return &mFile{k: k, node: n, name: name, task: task, read: read, write: write}, nil
}

// measureLock is ima_measure_lock() ([PATCH v7 06/12]).
func (k *mKernel) measureLock(write bool, tid int) error {
	if !write && k.users == 1<<63-1 {
		return syscall.ENFILE
	}
	if write && k.hasWriter && k.writer == tid {
		k.extra++
		return nil
	}
	if (write && k.users != 0) || (!write && k.users < 0) {
		return syscall.EBUSY
	}
	if write {
		k.users = -1
		k.writer, k.hasWriter = tid, true
	} else {
		k.users++
	}
	return nil
}

// measureUnlock is ima_measure_unlock(), in the releasing task's context.
func (k *mKernel) measureUnlock(write bool, tid int) {
	switch {
	case write && k.hasWriter && k.writer == tid && k.extra > 0:
		k.extra--
	case write:
		k.users++
		k.hasWriter = false
	default:
		k.users--
	}
}

// Write is write(2) on f.
func (m *model) Write(f *mFile, p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.write(f, p, false)
}

func (m *model) write(f *mFile, p []byte, byCollector bool) (int, error) {
	switch {
	case f.closed:
		return 0, os.ErrClosed
	case !f.write:
		return 0, syscall.EBADF
	case f.node.kind != listNode || !f.node.writable:
		return 0, syscall.EINVAL // no ->write
	}
	if err := m.request(f.k, p, f.node.staged, byCollector); err != nil {
		return 0, err
	}
	return len(p), nil
}

// records returns the list a list file of kernel k shows.
func (k *mKernel) records(n *node) []*record {
	if n.staged {
		return k.staged
	}
	return k.current
}

func (f *mFile) recordAt() recordAt {
	return func(i int) ([]byte, bool) {
		l := f.k.records(f.node)
		if i >= len(l) {
			return nil, false
		}
		return l[i].views[f.node.view], true
	}
}

// counterText is ima_show_counter(): "%li\n".
func (k *mKernel) counterText(n *node) []byte {
	v := k.num[cBinary]
	if n.counter == 1 {
		v = k.violations
	}
	return []byte(fmt.Sprintf("%d\n", v))
}

// Read is read(2) of up to want bytes on f. It returns io.EOF for a read of
// nothing, as *os.File does.
func (m *model) Read(f *mFile, want int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.read(f, want)
}

func (m *model) read(f *mFile, want int) ([]byte, error) {
	switch {
	case f.closed:
		return nil, os.ErrClosed
	case !f.read:
		return nil, syscall.EBADF
	case want == 0:
		return nil, nil
	}
	var out []byte
	if f.node.kind == counterNode {
		// simple_read_from_buffer() of the freshly rendered counter.
		s := f.k.counterText(f.node)
		if f.pos < int64(len(s)) {
			n := min(want, len(s)-int(f.pos))
			out = append(out, s[f.pos:f.pos+int64(n)]...)
			f.pos += int64(n)
		}
	} else {
		out = f.seq.read(&f.pos, want, m.cfg.pageBytes(), f.recordAt())
	}
	if len(out) == 0 {
		return nil, io.EOF
	}
	return out, nil
}

// Seek is lseek(2): seq_lseek() for list files (SEEK_SET and SEEK_CUR only)
// and generic_file_llseek() for the counters, whose i_size is 0: SEEK_END
// adds nothing, SEEK_DATA and SEEK_HOLE (3, 4) find no data (ENXIO).
func (m *model) Seek(f *mFile, off int64, whence int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		if f.node.kind == listNode {
			return 0, syscall.EINVAL
		}
		// off += i_size, which is 0.
	case seekData, seekHole:
		if f.node.kind == listNode {
			return 0, syscall.EINVAL
		}
		// (unsigned long long)offset >= eof, and eof is 0.
		return 0, syscall.ENXIO
	default:
		return 0, syscall.EINVAL
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if f.node.kind == listNode {
		f.seq.lseek(&f.pos, off, m.cfg.pageBytes(), f.recordAt())
	} else {
		f.pos = off
	}
	return off, nil
}

// Close releases f in the context of task (an index into tasks, -1 for the
// collector): ima_measurements_release() for list files.
func (m *model) Close(f *mFile, task int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.close(f, task)
}

func (m *model) close(f *mFile, task int) error {
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	f.seq = seqState{}
	if f.node.kind == listNode {
		f.k.measureUnlock(f.write, taskOf(task).TID)
	}
	return nil
}

// SEEK_DATA and SEEK_HOLE.
const seekData, seekHole = 3, 4

// errKexecOff is kexecLoad's error without CONFIG_IMA_KEXEC.
var errKexecOff = errors.New("kexec: CONFIG_IMA_KEXEC is off")

// kexecLoad is kexec_file_load: the segment is sized from the current and
// staged sizes (each with a header, docs/SPEC.md Q9) plus half a page, rounded up
// to a page, and kexec_load is measured with critical data.
func (m *model) kexecLoad() (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kexecLoadOn(m.cur())
}

func (m *model) kexecLoadOn(k *mKernel) (uint64, error) {
	if !m.cfg.kexec {
		return 0, errKexecOff
	}
	page := uint64(m.cfg.pageBytes())
	size := k.size[cBinary] + kexecHeaderSize + k.size[cStaged] + kexecHeaderSize + page/2
	k.seg = (size + page - 1) / page * page
	k.loaded = true
	if m.cfg.criticalData {
		m.measureKexecEvent(k, "kexec_load")
	}
	return k.seg, nil
}

// measureKexecEvent is ima_measure_kexec_event() ([PATCH v7 09/12]): the
// BINARY_FULL figures. A failure is only logged.
func (m *model) measureKexecEvent(k *mKernel, name string) {
	buf := fmt.Sprintf("kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;",
		k.seg, k.size[cFull]+kexecHeaderSize, k.num[cFull])
	_ = m.measureBufferOn(k, name, []byte(buf), -1, false)
}

// kexec executes a kexec: the loaded segment (loading one first), the
// kexec_execute record, suspension, the dump of staged then current records
// as far as the segment holds them whole, and the new kernel, which
// restores them before its boot_aggregate. It returns the number of records
// carried and lost, and whether a record was written in part (the restore
// then fails at it).
func (m *model) kexec() (carried, lost int, partial bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.cur()
	if m.cfg.kexec && !k.loaded {
		m.kexecLoadOn(k)
	}
	k.gone = true
	if m.cfg.kexec && m.cfg.criticalData {
		m.measureKexecEvent(k, "kexec_execute")
	}
	k.suspended = true
	all := append(append([]*record(nil), k.staged...), k.current...)
	var keep []*record
	if k.loaded {
		used := uint64(kexecHeaderSize)
		for _, r := range all {
			if used >= k.seg {
				break
			}
			used += uint64(len(r.dump))
			if used > k.seg {
				partial = true // written in part: the restore stops at it
				break
			}
			keep = append(keep, r)
		}
	}
	dropped := all[len(keep):]
	if !m.cfg.kexec {
		// Nothing is carried: a new log starts on a TPM that remembers.
		m.ep = &epoch{noReplay: true}
	} else if len(dropped) > 0 {
		gone := map[*record]bool{}
		for _, r := range dropped {
			gone[r] = true
		}
		var log []*record
		for _, r := range m.ep.log {
			if !gone[r] {
				log = append(log, r)
			}
		}
		m.ep.log = log
		m.ep.noReplay = true
	}
	m.boot(keep)
	return len(keep), len(dropped), partial
}

// reboot suspends the running kernel, resets the TPM and boots a fresh
// kernel: a new log.
func (m *model) reboot() {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.cur()
	k.gone, k.suspended, k.leftByReboot = true, true, true
	m.resetPCRs()
	m.ep = &epoch{collectorAligned: true}
	m.boot(nil)
}
