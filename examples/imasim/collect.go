package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/collector"
	"github.com/imasim/imasim/staging/fusefs"
	"github.com/imasim/imasim/tpmext"
)

func init() {
	commands["collect"] = command{"save what a staging kernel stages, as a service (store in a directory)", runCollect}
}

const collectHelp = `usage: imasim collect [flags]

Saves the IMA measurement records of a kernel with the staging series
(Linux 7.2) durably in a store directory and deletes them from kernel
memory, so that the log since boot stays whole ('imasim log' prints it).
It runs on a real kernel (/sys/kernel/security/ima) and on 'imasim mount'
alike: it uses file paths only.

A cycle runs at start, then every --every, and whenever
runtime_measurements_count reaches --threshold (checked every --poll).
--view DIR mounts (FUSE) a read-only directory with
binary_runtime_measurements[_<alg>], ascii_runtime_measurements[_<alg>]
and runtime_measurements_count that show the store followed by what the
kernel still holds, byte for byte what a kernel that never staged would
show: an agent pointed at DIR keeps working on a staging kernel. It is
unmounted when collect stops.

SIGTERM or SIGINT stops it between cycles: no writer descriptor is left
open and nothing it staged is left in the kernel (a cycle is one
open/stage/read/save/delete/close transaction).

Flavours: prompt (A, read, D on binary_runtime_measurements_staged) needs
CONFIG_IMA_STAGING, seen as the _staged files. Without them only n
(read, then N on binary_runtime_measurements) can work, and only where
that file is writable; the default then picks n and says so, and an
explicit --flavour prompt is refused.

A new boot id (--boot-id-file, read at start and before every cycle)
starts a new log in the store after a reboot; --boot-change kexec says
that boot id changes are kexecs instead (the log continues; the new
kernel carried the old one's list). The store keeps older logs in its
segments; 'imasim log' prints the newest one.

No TPM is read (collector.Options.PCRs is not set): a pending batch made
only of violations that a crash left undecided stays pending
(ErrAmbiguous) instead of being decided by replaying PCR 10. On 'imasim
mount' this does not arise unless every record of a batch is a violation.

Logs are structured (log/slog) on stderr, one record a line, JSON or
text, fit for journald.

Exit codes:
  0  stopped by SIGTERM/SIGINT, or --once succeeded
  1  a collection failure (a cycle failed with --once, the store failed,
     the store is locked by another collector, a batch cannot be decided)
  2  usage, or input that cannot be used: no IMA files under --securityfs,
     no boot id, the wrong flavour for the kernel, a store that is
     damaged, of another format version, a symlink, owned by another user
     or writable by others

flags:
`

// kernelDir is an IMA securityfs directory, checked: it has the list
// files, and its layout is known from them. No kernel counterpart.
type kernelDir struct {
	path    string
	staging bool // CONFIG_IMA_STAGING: the _staged files exist
	nWrite  bool // binary_runtime_measurements is writable (N possible)
	layout  *template.Layout
}

// openKernelDir checks that dir holds the IMA list files and derives the
// kernel's record layout from their names: one slot per
// binary_runtime_measurements_<alg> file (the TPM's banks, plus SHA-1),
// ima_hash sha256 if a bank has it, else sha1 (it names no file, so it
// does not change what is served), little-endian (ima_canonical_fmt or a
// little-endian machine). No kernel counterpart.
func openKernelDir(dir string) (*kernelDir, error) {
	fi, err := os.Stat(filepath.Join(dir, "binary_runtime_measurements"))
	if err != nil {
		return nil, fmt.Errorf("%s has no IMA measurement list (binary_runtime_measurements): %w", dir, err)
	}
	k := &kernelDir{path: dir, nWrite: fi.Mode()&0o222 != 0}
	if _, err := os.Stat(filepath.Join(dir, "binary_runtime_measurements_staged")); err == nil {
		k.staging = true
	}
	names, err := filepath.Glob(filepath.Join(dir, "binary_runtime_measurements_*"))
	if err != nil {
		return nil, err
	}
	var banks []tpmext.Algorithm
	hash := template.HashSHA1
	for _, n := range names {
		suffix := strings.TrimPrefix(filepath.Base(n), "binary_runtime_measurements_")
		if strings.HasSuffix(suffix, "_staged") || suffix == "staged" {
			continue
		}
		var alg tpmext.Algorithm
		if h, ok := strings.CutPrefix(suffix, "tpm_alg_"); ok {
			v, err := strconv.ParseUint(h, 16, 16)
			if err != nil {
				return nil, fmt.Errorf("%s: unknown bank file suffix %q", dir, suffix)
			}
			alg = tpmext.Algorithm(v)
		} else {
			bs, err := tpmext.ParseBanks(suffix)
			if err != nil || len(bs) != 1 {
				return nil, fmt.Errorf("%s: unknown bank file suffix %q", dir, suffix)
			}
			alg = bs[0]
		}
		if suffix == "sha256" {
			hash = template.HashSHA256
		}
		banks = append(banks, alg)
	}
	if k.layout, err = template.NewLayout(banks, hash, template.LittleEndian); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return k, nil
}

// flavour chooses the flavour for the kernel: the one asked for ("" for
// the default), or an error saying why it cannot work.
func (k *kernelDir) flavour(asked string, log *slog.Logger) (collector.Flavour, error) {
	switch asked {
	case "", "prompt", "n":
	default:
		return 0, fmt.Errorf("--flavour %q: want prompt or n", asked)
	}
	if k.staging {
		if asked == "n" {
			return collector.DeleteN, nil
		}
		return collector.Prompt, nil
	}
	if asked == "prompt" {
		return 0, fmt.Errorf("%s has no binary_runtime_measurements_staged: the kernel is built without CONFIG_IMA_STAGING, so the prompt flavour cannot work (only n, where binary_runtime_measurements is writable)", k.path)
	}
	if !k.nWrite {
		return 0, fmt.Errorf("%s has no _staged files (CONFIG_IMA_STAGING off) and binary_runtime_measurements is not writable: this kernel cannot delete records, nothing to collect", k.path)
	}
	if asked == "" {
		log.Warn("kernel without CONFIG_IMA_STAGING (no _staged files); binary_runtime_measurements is writable: using flavour n", "securityfs", k.path)
	}
	return collector.DeleteN, nil
}

// storeFlags are the flags of the commands that open a store against a
// kernel: where its securityfs, store and boot id are, and what a new
// boot id means.
type storeFlags struct {
	securityfs, store, bootIDFile, bootChange string
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.securityfs, "securityfs", staging.DefaultDir, "IMA securityfs directory")
	fs.StringVar(&f.store, "store", "/var/lib/imasim", "store directory (0700, owned by this user)")
	fs.StringVar(&f.bootIDFile, "boot-id-file", "/proc/sys/kernel/random/boot_id", "file holding the running kernel's boot id")
	fs.StringVar(&f.bootChange, "boot-change", "reboot", "what a boot id the store has not seen means: reboot (a new log) or kexec (the log continues)")
}

// resolve checks the flags: the securityfs directory, the boot id and
// the boot kind.
func (f *storeFlags) resolve() (*kernelDir, string, collector.BootKind, error) {
	kind := collector.Reboot
	switch f.bootChange {
	case "reboot":
	case "kexec":
		kind = collector.Kexec
	default:
		return nil, "", kind, fmt.Errorf("--boot-change %q: want reboot or kexec", f.bootChange)
	}
	kd, err := openKernelDir(f.securityfs)
	if err != nil {
		return nil, "", kind, err
	}
	bootID, err := readBootID(f.bootIDFile)
	return kd, bootID, kind, err
}

// readBootID reads a boot id file (/proc/sys/kernel/random/boot_id).
func readBootID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("boot id: %s is empty", path)
	}
	return id, nil
}

// openExitCode is the exit code for an error of collector.Open: 1 for a
// state a later run may get past (a locked store, a batch that cannot be
// decided yet), 2 for a store that cannot be used as given.
func openExitCode(err error) int {
	for _, e := range []error{collector.ErrLocked, collector.ErrTailNotInKernel, collector.ErrPartlyCarried,
		collector.ErrAmbiguous, collector.ErrBusy, collector.ErrSuspended, collector.ErrStale} {
		if errors.Is(err, e) {
			return exitFail
		}
	}
	return exitUsage
}

// newLogger makes the slog logger of a service command on stderr.
func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// transient reports whether a cycle error is one the next cycle may get
// past (the files busy, a kexec or reboot under way).
func transient(err error) bool {
	return errors.Is(err, collector.ErrBusy) || errors.Is(err, collector.ErrStale) || errors.Is(err, collector.ErrSuspended)
}

func runCollect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("collect", collectHelp, stdout)
	var sf storeFlags
	sf.register(fs.FlagSet)
	flav := fs.String("flavour", "", "prompt or n (default: prompt when the kernel has the _staged files, else n)")
	every := fs.Duration("every", time.Minute, "time between cycles")
	threshold := fs.Int("threshold", 0, "also run a cycle when runtime_measurements_count reaches this (0: off)")
	poll := fs.Duration("poll", time.Second, "how often runtime_measurements_count is read for --threshold")
	once := fs.Bool("once", false, "run one cycle and exit")
	logFormat := fs.String("log-format", "json", "log records on stderr: json or text")
	viewDir := fs.String("view", "", "also serve the whole log since boot, read-only, at this directory (FUSE): the list files of a kernel that never staged")
	verify := fs.Bool("verify", false, "at start, read and check every frame of the store (time in proportion to its size), not only from its checkpoint")
	pos, code, ok := fs.parse(args, false, stderr)
	if !ok {
		return code
	}
	usageErr := func(err error) int { return usageErr(stderr, "collect", "%v", err) }
	if len(pos) != 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", pos))
	}
	log, err := newLogger(stderr, *logFormat)
	if err != nil {
		return usageErr(err)
	}
	if *every <= 0 || *poll <= 0 || *threshold < 0 {
		return usageErr(errors.New("--every and --poll must be positive, --threshold not negative"))
	}
	kd, bootID, kind, err := sf.resolve()
	if err != nil {
		return usageErr(err)
	}
	flavour, err := kd.flavour(*flav, log)
	if err != nil {
		return usageErr(err)
	}

	// Signals are caught before the store is opened: from here on a
	// SIGTERM waits for the cycle under way to end.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	fsys := staging.Dir(kd.path)
	opts := collector.Options{Flavour: flavour, BootID: bootID, NewBoot: kind, Layout: kd.layout, Verify: *verify}
	c, err := collector.Open(sf.store, fsys, opts)
	if err != nil {
		fmt.Fprintln(stderr, "imasim collect:", err)
		return openExitCode(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()
	if *viewDir != "" {
		root := os.Geteuid() == 0
		srv, err := fusefs.Mount(*viewDir, fusefs.NewLogView(c), fusefs.Options{Direct: root, AllowOther: root})
		if err != nil {
			fmt.Fprintln(stderr, "imasim collect: --view:", err)
			return exitUsage
		}
		defer func() {
			if err := srv.Unmount(); err != nil {
				log.Error("unmounting the view", "dir", *viewDir, "err", err.Error())
				lazyUnmount(*viewDir)
			}
		}()
	}
	log.Info("collector started", "securityfs", kd.path, "store", sf.store, "flavour", flavour.String(),
		"boot_id", bootID, "committed", c.Committed(), "every", every.String(), "threshold", *threshold)

	cycle := func(reason string) error {
		id, err := readBootID(sf.bootIDFile)
		if err != nil {
			return err
		}
		if id != bootID {
			log.Info("boot id changed", "old", bootID, "new", id, "as", sf.bootChange)
			if err := c.SwitchKernel(fsys, id, kind); err != nil {
				return err
			}
			bootID = id
		}
		start := time.Now()
		res, err := c.Cycle()
		attrs := []any{"reason", reason, "read", res.Read, "saved", res.Saved, "committed", c.Committed(),
			"duration_ms", time.Since(start).Milliseconds()}
		if res.Note != "" {
			attrs = append(attrs, "note", res.Note)
		}
		if err != nil {
			log.Warn("cycle failed", append(attrs, "err", err.Error())...)
			return err
		}
		log.Info("cycle", attrs...)
		return nil
	}

	if *once {
		if err := cycle("once"); err != nil {
			return exitFail
		}
		return exitOK
	}
	if err := cycle("start"); err != nil && !transient(err) {
		return exitFail
	}
	tick := time.NewTicker(*every)
	defer tick.Stop()
	var pollC <-chan time.Time
	if *threshold > 0 {
		pt := time.NewTicker(*poll)
		defer pt.Stop()
		pollC = pt.C
	}
	for {
		var reason string
		select {
		case s := <-sigs:
			log.Info("stopping", "signal", s.String(), "committed", c.Committed())
			return exitOK
		case <-tick.C:
			reason = "timer"
		case <-pollC:
			n, err := readCount(fsys)
			if err != nil {
				log.Warn("reading runtime_measurements_count", "err", err.Error())
				continue
			}
			if n < *threshold {
				continue
			}
			reason = "threshold"
		}
		// A signal that arrived with the tick wins: stop before a cycle.
		select {
		case s := <-sigs:
			log.Info("stopping", "signal", s.String(), "committed", c.Committed())
			return exitOK
		default:
		}
		if err := cycle(reason); err != nil && !transient(err) {
			log.Error("collector stopped", "err", err.Error())
			return exitFail
		}
	}
}

// readCount reads runtime_measurements_count.
func readCount(fsys staging.FS) (int, error) {
	b, err := staging.ReadFile(fsys, "runtime_measurements_count")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
