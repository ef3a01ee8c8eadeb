package tpmext

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// OpenDevice opens a Linux TPM character device: /dev/tpmrm0 (through the
// kernel's resource manager, shared with other clients) or /dev/tpm0. The
// device must already have the banks asked for: allocating needs a
// platform reset, which a real TPM does not allow from here, and Reset
// returns ErrNoReset.
func OpenDevice(path string, banks ...Algorithm) (*Transport, error) {
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tpmext: TPM device %s: %w", path, err)
	}
	return NewTransport(t, "TPM device "+path, banks...)
}

// Open opens the TPM named by spec, with the given banks (none: the TPM's
// own, or the software default):
//
//	software                        pure-Go banks (NewSoftware)
//	simulator                       the go-tpm-tools simulator (NewSimulator; cgo)
//	swtpm:HOST:PORT[,ctrl=PORT]     swtpm over TCP (OpenSwtpm); the control
//	                                port defaults to PORT+1, as with the
//	                                swtpm TCTI of tpm2-tss
//	device:PATH                     a Linux TPM device (OpenDevice), e.g.
//	                                device:/dev/tpmrm0
//
// No kernel counterpart.
func Open(spec string, banks ...Algorithm) (TPM, error) {
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case "software":
		if rest == "" {
			return NewSoftware(banks...)
		}
	case "simulator":
		if rest == "" {
			return NewSimulator(banks...)
		}
	case "swtpm":
		cmd, ctrl, err := parseSwtpmSpec(rest)
		if err != nil {
			return nil, fmt.Errorf("tpmext: TPM %q: %w", spec, err)
		}
		return OpenSwtpm(cmd, ctrl, banks...)
	case "device":
		if rest != "" {
			return OpenDevice(rest, banks...)
		}
	}
	return nil, fmt.Errorf("tpmext: TPM %q: want software, simulator, swtpm:HOST:PORT[,ctrl=PORT] or device:PATH", spec)
}

// parseSwtpmSpec parses "HOST:PORT[,ctrl=PORT]".
func parseSwtpmSpec(s string) (cmd, ctrl string, err error) {
	addr, opt, hasOpt := strings.Cut(s, ",")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("want HOST:PORT, got %q", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", "", fmt.Errorf("port %q is not a TCP port", port)
	}
	ctrlPort := p + 1
	if hasOpt {
		v, ok := strings.CutPrefix(opt, "ctrl=")
		if !ok {
			return "", "", fmt.Errorf("unknown option %q (want ctrl=PORT)", opt)
		}
		if ctrlPort, err = strconv.ParseUint(v, 10, 16); err != nil || ctrlPort == 0 {
			return "", "", fmt.Errorf("control port %q is not a TCP port", v)
		}
	} else if ctrlPort > 65535 {
		return "", "", fmt.Errorf("port %d has no PORT+1 for the control port; give ctrl=PORT", p)
	}
	return net.JoinHostPort(host, port), net.JoinHostPort(host, strconv.FormatUint(ctrlPort, 10)), nil
}
