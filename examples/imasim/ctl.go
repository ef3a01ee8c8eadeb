package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

func init() {
	commands["ctl"] = command{"drive the machine behind an 'imasim mount' (measure, violation, kexec, reboot, pcrs, status)", runCtl}
}

const ctlHelp = `usage: imasim ctl DIR COMMAND [ARGS]

Drives the simulated machine behind 'imasim mount DIR' through its control
socket (DIR/../.BASE.imasim.sock):

  measure PATH...              measure host files by content (owner and
                               mode from the file), recorded under PATH
  measure --content TEXT PATH  measure PATH with content TEXT
  violation [PATH]             record a ToMToU violation
  kexec                        kexec into a new kernel (the list is carried)
  reboot                       reboot (TPM reset, empty list)
  pcrs [--bank ALG]            PCR-00..PCR-23 of a bank (default sha1) in
                               evmctl's --pcrs format
  status                       records, staged, deleted, kernel memory, and
                               the mount process's heap and RSS
`

func runCtl(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(stdout, ctlHelp)
			return exitOK
		}
	}
	if len(args) < 2 {
		return usageErr(stderr, "ctl", "want DIR COMMAND [ARGS]")
	}
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return usageErr(stderr, "ctl", "%v", err)
	}
	req, err := ctlParse(args[1], args[2:])
	if err != nil {
		return usageErr(stderr, "ctl", "%s: %v", args[1], err)
	}
	rep, err := ctlCall(ctlSocket(dir), req)
	if err != nil {
		fmt.Fprintf(stderr, "imasim ctl: no live imasim mount at %s: %v\n", dir, err)
		return exitUsage
	}
	fmt.Fprint(stdout, rep.Output)
	if rep.Error != "" {
		fmt.Fprintf(stderr, "imasim ctl %s: %s\n", args[1], rep.Error)
		return exitFail
	}
	return 0
}

// ctlParse turns a command line into a request; measure reads the host
// files here, in the caller's context.
func ctlParse(op string, args []string) (ctlRequest, error) {
	req := ctlRequest{Op: op}
	fs := flag.NewFlagSet(op, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch op {
	case "measure":
		content := fs.String("content", "", "content of the single PATH")
		hasContent := false
		if err := fs.Parse(args); err != nil {
			return req, err
		}
		fs.Visit(func(f *flag.Flag) { hasContent = hasContent || f.Name == "content" })
		if fs.NArg() == 0 || (hasContent && fs.NArg() != 1) {
			return req, errors.New("want PATH... or --content TEXT PATH")
		}
		for _, p := range fs.Args() {
			if hasContent {
				req.Files = append(req.Files, ctlFile{Path: p, Content: []byte(*content), Mode: 0o100644})
				continue
			}
			abs, err := filepath.Abs(p)
			if err != nil {
				return req, err
			}
			data, err := os.ReadFile(abs)
			if err != nil {
				return req, err
			}
			st, err := os.Stat(abs)
			if err != nil {
				return req, err
			}
			f := ctlFile{Path: abs, Content: data, Mode: uint32(st.Mode().Perm()) | syscall.S_IFREG}
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				f.UID, f.GID, f.Mode = sys.Uid, sys.Gid, sys.Mode
			}
			req.Files = append(req.Files, f)
		}
	case "violation":
		if len(args) > 1 {
			return req, errors.New("want at most one PATH")
		}
		req.Path = "/var/log/imasim-violation.log"
		if len(args) == 1 {
			req.Path = args[0]
		}
	case "pcrs":
		bank := fs.String("bank", "", "bank (sha1, sha256, ...)")
		if err := fs.Parse(args); err != nil {
			return req, err
		}
		if fs.NArg() != 0 {
			return req, errors.New("want only --bank ALG")
		}
		req.Bank = *bank
	case "kexec", "reboot", "status":
		if len(args) != 0 {
			return req, errors.New("takes no arguments")
		}
	default:
		return req, fmt.Errorf("unknown command (want measure, violation, kexec, reboot, pcrs or status)")
	}
	return req, nil
}

// ctlCall sends one request and reads the reply.
func ctlCall(sock string, req ctlRequest) (ctlReply, error) {
	var rep ctlReply
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	data, err := json.Marshal(req)
	if err != nil {
		return rep, err
	}
	if _, err := c.Write(append(data, '\n')); err != nil {
		return rep, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return rep, fmt.Errorf("reading the reply: %w", err)
	}
	return rep, json.Unmarshal(line, &rep)
}
