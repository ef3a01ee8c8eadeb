package main

import (
	"fmt"
	"io"
	"os"

	"github.com/imasim/imasim/ima/scenario"
)

func init() {
	commands["run"] = command{"run scenario scripts (shell-like steps with expected output)", runRun}
}

const runHelp = `usage: imasim run [-v] [-update] FILE...

Runs scenario scripts: the documentation's shell steps on a simulated
kernel, each followed by what it must print or the errno it must fail
with. Prints PASS or FAIL for each file (with the first mismatch, as
FILE:LINE) and exits with status 1 if any failed.

A script, for example:

  boot banks=sha1,sha256 staging=y flush=n
  measure /usr/bin/a "content of a"
  echo A > binary_runtime_measurements_staged
  cat binary_runtime_measurements_staged
  > 10 ima-ng boot_aggregate
  > 10 ima-ng /usr/bin/a
  echo A > binary_runtime_measurements_staged
  ! EEXIST
  echo D > binary_runtime_measurements_staged
  cat runtime_measurements_count
  > 0

Lines: a command; "> TEXT", a line it must print (it must print exactly
these lines, or nothing if there are none); "! ERRNO", the errno it must
fail with (without one it must succeed); "# comment". Commands:

  boot [banks=sha1,sha256] [hash=sha256] [template=ima-ng] [staging=y]
       [kexec=y] [flush=n] [htable=y] [criticaldata=n] [pcr=10] ...
  measure PATH CONTENT [pcr=N]     measure-buffer NAME DATA
  violation PATH [ToMToU|open_writers]
  echo [-n] TEXT > FILE            printf FORMAT [ARG...] > FILE
  cat FILE...                      ls [-l]
  open FD FILE r|w|rw              read FD [N]     write FD TEXT
  seek FD OFFSET                   close FD
  as TID[:uid=N,gid=N,nocap,cap=sys_admin] COMMAND
  old COMMAND                      (on the kernel before the last kexec)
  kexec [-l|-e]                    reboot
  pcr [N [BANK]]  counters  save [N]  discard  replay
  collect [prompt|n]               fail-alloc

The package documentation (go doc github.com/imasim/imasim/ima/scenario)
describes every command; ima/scenario/testdata has examples.

With -update, each file is rewritten with the output the simulator gives
in place of its expectations: write the commands of a new case, run
-update, then check every "> " and "! " line against the specification
before committing it.

flags:
`

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", runHelp, stdout)
	verbose := fs.Bool("v", false, "print each script's transcript (the script with what each command printed)")
	update := fs.Bool("update", false, "rewrite each file with the actual output in place of its expectations")
	files, code, ok := fs.parse(args, false, stderr)
	if !ok {
		return code
	}
	if len(files) == 0 {
		return usageErr(stderr, "run", "no FILE given")
	}
	status := exitOK
	for _, path := range files {
		status = max(status, runOne(path, *verbose, *update, stdout))
	}
	return status
}

// runOne runs or updates one script and reports it; it returns the exit
// code: exitUsage for a script that cannot be read or does not parse,
// exitFail for one that does not match.
func runOne(path string, verbose, update bool, stdout io.Writer) int {
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL %s\n\t%v\n", path, err)
		return exitUsage
	}
	s, err := scenario.Parse(path, src)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL %s\n\t%v\n", path, err)
		return exitUsage
	}
	if update {
		out, err := s.Update()
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s (not rewritten)\n\t%v\n", path, err)
			return exitFail
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			fmt.Fprintf(stdout, "FAIL %s\n\t%v\n", path, err)
			return exitFail
		}
		fmt.Fprintf(stdout, "UPDATED %s (%d commands)\n", path, s.Len())
		return exitOK
	}
	var transcript io.Writer
	if verbose {
		fmt.Fprintf(stdout, "=== %s\n", path)
		transcript = stdout
	}
	if err := s.Run(transcript); err != nil {
		fmt.Fprintf(stdout, "FAIL %s\n\t%v\n", path, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "PASS %s (%d commands)\n", path, s.Len())
	return exitOK
}
