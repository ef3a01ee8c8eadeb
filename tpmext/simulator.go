//go:build cgo

package tpmext

import (
	"fmt"
	"sync/atomic"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

// SimulatorAvailable reports whether this build has the simulator back end
// (it needs cgo).
const SimulatorAvailable = true

// simulatorOpen is set while a simulator opened here is open: the
// go-tpm-tools simulator is one per process, and its Get blocks until the
// previous one is closed.
var simulatorOpen atomic.Bool

// NewSimulator manufactures a fresh simulated TPM (the Microsoft reference
// TPM from go-tpm-tools/simulator) and opens a Transport on it. With banks
// it allocates them with TPM2_PCR_Allocate and a reset; without, it keeps
// the simulator's default four (SHA1, SHA256, SHA384, SHA512). Banks
// reports them in the TPM's order, which may differ from the order given.
// Only one simulator exists per process: while one is open, NewSimulator
// returns ErrSimulatorBusy.
func NewSimulator(banks ...Algorithm) (*Simulator, error) {
	if !simulatorOpen.CompareAndSwap(false, true) {
		return nil, ErrSimulatorBusy
	}
	sim, err := simulator.Get()
	if err != nil {
		simulatorOpen.Store(false)
		return nil, fmt.Errorf("tpmext: starting the TPM simulator: %w", err)
	}
	return openTransport(transport.FromReadWriter(sim), platform{
		reboot: sim.Reset,
		close: func() error {
			defer simulatorOpen.Store(false)
			return sim.Close()
		},
	}, "go-tpm-tools TPM 2.0 simulator", banks)
}
