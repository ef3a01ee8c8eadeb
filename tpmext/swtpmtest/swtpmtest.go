// Package swtpmtest starts swtpm for tests, as net/http/httptest starts
// servers: a fresh TPM state made by swtpm_setup in t.TempDir(), swtpm
// listening on loopback ports it picks, killed when the test ends.
//
// No kernel counterpart; exists so that tests can run imasim's kernel model
// and real TPM clients (tpm2-tools) against the same TPM.
package swtpmtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Server is a running swtpm.
type Server struct {
	// Port is the TPM command port; the control port is Port+1, where the
	// swtpm TCTI of tpm2-tss looks for it.
	Port int
	// Dir holds the TPM state.
	Dir string

	cmd  *exec.Cmd
	once sync.Once
	done chan struct{}
}

// Addr is the command port's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Spec is the TPM's name for tpmext.Open and imasim --tpm.
func (s *Server) Spec() string { return "swtpm:" + s.Addr() }

// TCTI is the tpm2-tss TCTI string for tpm2-tools (-T or TPM2TOOLS_TCTI).
func (s *Server) TCTI() string { return fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", s.Port) }

// Kill stops swtpm and waits for it to exit. Later commands fail at once
// (connection refused).
func (s *Server) Kill() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
}

// Start runs swtpm_setup with the given PCR banks ("sha1", "sha256", …;
// none: every bank swtpm implements) and starts swtpm. It skips the test
// when swtpm is not installed, and fails it when swtpm does not start.
func Start(t testing.TB, banks ...string) *Server {
	t.Helper()
	for _, tool := range []string{"swtpm", "swtpm_setup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install swtpm swtpm-tools)", tool)
		}
	}
	dir := t.TempDir()
	pcrBanks := "-"
	for i, b := range banks {
		if i == 0 {
			pcrBanks = b
		} else {
			pcrBanks += "," + b
		}
	}
	setup := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", dir, "--pcr-banks", pcrBanks, "--overwrite")
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup --pcr-banks %s: %v\n%s", pcrBanks, err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		s, err := start(dir, port)
		if err == nil {
			t.Cleanup(s.Kill)
			return s
		}
		lastErr = err
	}
	t.Fatalf("swtpm did not start: %v", lastErr)
	return nil
}

// freePortPair returns a port P such that P and P+1 were both free on
// 127.0.0.1 a moment ago.
func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("no two consecutive free loopback ports")
}

func start(dir string, port int) (*Server, error) {
	log := filepath.Join(dir, "swtpm.log")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "startup-clear",
		"--log", "file="+log)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Port: port, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(log)
			return nil, fmt.Errorf("swtpm exited on port %d: %s", port, b)
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return nil, fmt.Errorf("swtpm not listening on %s after 10s", s.Addr())
}
