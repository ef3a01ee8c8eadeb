// Command imasim is the command-line front end of the imasim library: a
// kernel-faithful simulator of the Linux IMA measurement list with the
// staging series of Linux 7.2.
//
//	imasim demo                 run the demonstration (the README's main job)
//	imasim help                 list the commands
//
// Every command prints its own help with -h. Exit status, the same for
// every command: 0 success; 1 a verification or scenario mismatch (or a
// failure of the simulated machine); 2 a usage error or input that cannot
// be read.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand: run gets the arguments after its name and the
// output streams, and returns the process exit code.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is filled by the init functions of the files of this package,
// one file per command.
var commands = map[string]command{}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: imasim <command> [flags] [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'imasim <command> -h' for a command's flags.")
	fmt.Fprint(w, "\n"+exitCodesHelp)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "imasim: unknown command %q (see 'imasim -h')\n", args[0])
		return exitUsage
	}
	return cmd.run(args[1:], stdout, stderr)
}
