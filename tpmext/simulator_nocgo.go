//go:build !cgo

package tpmext

// SimulatorAvailable reports whether this build has the simulator back end
// (it needs cgo).
const SimulatorAvailable = false

// NewSimulator always fails without cgo.
func NewSimulator(banks ...Algorithm) (*Simulator, error) { return nil, ErrNoSimulator }
