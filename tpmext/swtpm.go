package tpmext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// SwtpmTimeout bounds one TPM command or control command sent to swtpm
// (connect, send, receive). A TPM that stops answering fails the command
// with a timeout instead of hanging the caller.
const SwtpmTimeout = 60 * time.Second

// OpenSwtpm opens swtpm (or any TPM speaking the TPM 2.0 reference
// simulator's TCP command protocol on cmdAddr) started as
//
//	swtpm socket --tpm2 --server type=tcp,port=P --ctrl type=tcp,port=P+1 --flags startup-clear
//
// cmdAddr is the server port ("127.0.0.1:2321"); ctrlAddr the control port,
// used to reset the TPM (Reset, and bank allocation). With banks, the TPM
// must have them or be able to allocate them: TPM2_PCR_Allocate and a reset
// through the control port (the allocation then stays in swtpm's state, as
// swtpm_setup --pcr-banks would have made it); a bank swtpm does not
// implement is refused.
//
// Each command opens its own connection and closes it after the response,
// so other clients of the same swtpm (tpm2-tools with
// TPM2TOOLS_TCTI=swtpm:host=H,port=P) run between imasim's commands, as
// they would beside the kernel's /dev/tpm0.
//
// The command port carries TPM_SEND_COMMAND (8), the locality (0) and the
// length before each command, and returns the length, the response and a
// zero acknowledgement, as the reference simulator's TpmTcpProtocol.h
// defines and swtpm accepts. The control port is swtpm's own protocol
// (swtpm's man page, "swtpm_ioctl"): CMD_INIT (2) with init flags, answered
// with a TPM_RESULT. It is not the reference simulator's platform
// protocol, whose codes mean other things to swtpm (1 is its
// CMD_GET_CAPABILITY, 11 its CMD_RESET_TPMESTABLISHED); so go-tpm's
// transport/tcp and tpmutil/mssim, which send those, cannot drive swtpm's
// control port, and tcp also reads the response with a single Read.
//
// No kernel counterpart (the kernel reaches swtpm through a virtual
// device, e.g. QEMU's tpm-tis with a swtpm chardev).
func OpenSwtpm(cmdAddr, ctrlAddr string, banks ...Algorithm) (*Transport, error) {
	s := &swtpm{cmd: cmdAddr, ctrl: ctrlAddr}
	// One round trip first, so that an address where nothing listens
	// fails here in one line.
	c, err := net.DialTimeout("tcp", cmdAddr, SwtpmTimeout)
	if err != nil {
		return nil, fmt.Errorf("tpmext: swtpm at %s: %w", cmdAddr, err)
	}
	c.Close()
	return openTransport(s, platform{reboot: s.reboot, close: func() error { return nil }}, "swtpm "+cmdAddr, banks)
}

// swtpm is the transport.TPM of a swtpm reached over TCP.
type swtpm struct {
	cmd, ctrl string
}

const (
	tcpSendCommand   = 8 // TPM_SEND_COMMAND, TpmTcpProtocol.h
	swtpmCmdInit     = 2 // CMD_INIT, swtpm's tpm_ioctl.h
	maxTPMResponse   = 1 << 16
	tpmResponseFixed = 10 // tag, size, response code
)

// Send runs one command on a fresh connection. Its errors do not repeat
// the address, which the Transport's errors name.
func (s *swtpm) Send(cmd []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", s.cmd, SwtpmTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(SwtpmTimeout))
	req := make([]byte, 9, 9+len(cmd))
	binary.BigEndian.PutUint32(req, tcpSendCommand)
	req[4] = 0 // locality
	binary.BigEndian.PutUint32(req[5:], uint32(len(cmd)))
	if _, err := c.Write(append(req, cmd...)); err != nil {
		return nil, fmt.Errorf("sending: %w", err)
	}
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return nil, fmt.Errorf("reading the response: %w", eofIsReset(err))
	}
	if n < tpmResponseFixed || n > maxTPMResponse {
		return nil, fmt.Errorf("response length %d out of range %d..%d", n, tpmResponseFixed, maxTPMResponse)
	}
	rsp := make([]byte, n+4) // response, then the acknowledgement
	if _, err := io.ReadFull(c, rsp); err != nil {
		return nil, fmt.Errorf("reading the response: %w", eofIsReset(err))
	}
	if ack := binary.BigEndian.Uint32(rsp[n:]); ack != 0 {
		return nil, fmt.Errorf("TPM_SEND_COMMAND acknowledged with %#x", ack)
	}
	return rsp[:n], nil
}

func eofIsReset(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// control sends one swtpm control command with its payload and reads the
// TPM_RESULT that answers it.
func (s *swtpm) control(code uint32, payload []byte) error {
	c, err := net.DialTimeout("tcp", s.ctrl, SwtpmTimeout)
	if err != nil {
		return fmt.Errorf("swtpm control port %s: %w", s.ctrl, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(SwtpmTimeout))
	req := binary.BigEndian.AppendUint32(nil, code)
	if _, err := c.Write(append(req, payload...)); err != nil {
		return fmt.Errorf("swtpm control port %s: %w", s.ctrl, err)
	}
	var res uint32
	if err := binary.Read(c, binary.BigEndian, &res); err != nil {
		return fmt.Errorf("swtpm control port %s: %w", s.ctrl, eofIsReset(err))
	}
	if res != 0 {
		return fmt.Errorf("swtpm control port %s: command %d failed with TPM_RESULT %#x", s.ctrl, code, res)
	}
	return nil
}

// reboot is a host reset: TPM2_Shutdown(CLEAR), CMD_INIT (swtpm's
// _TPM_Init) and TPM2_Startup(CLEAR).
func (s *swtpm) reboot() error {
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(s); err != nil {
		return fmt.Errorf("TPM2_Shutdown: %w", err)
	}
	if err := s.control(swtpmCmdInit, []byte{0, 0, 0, 0}); err != nil {
		return err
	}
	if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(s); err != nil {
		return fmt.Errorf("TPM2_Startup: %w", err)
	}
	return nil
}
