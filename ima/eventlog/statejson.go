package eventlog

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/imasim/imasim/tpmext"
)

// stateJSON is State's JSON form: banks by name ("sha256"), PCR values in
// hex, so that a saved state reads like a PCR file.
type stateJSON struct {
	Records int                 `json:"records"`
	Offset  int64               `json:"offset"`
	PCRs    map[string][]string `json:"pcrs"`
}

// MarshalJSON writes s with each bank named ("sha1", "sha256", ...) and
// each PCR value in hex. No kernel counterpart.
func (s State) MarshalJSON() ([]byte, error) {
	j := stateJSON{Records: s.Records, Offset: s.Offset, PCRs: make(map[string][]string, len(s.PCRs))}
	for alg, vals := range s.PCRs {
		hs := make([]string, len(vals))
		for i, v := range vals {
			hs[i] = hex.EncodeToString(v)
		}
		j.PCRs[alg.String()] = hs
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes. A bank that is not a known
// algorithm, a value that is not hex or not the bank's size, or a bank
// without tpmext.NumPCRs values is an error. No kernel counterpart.
func (s *State) UnmarshalJSON(b []byte) error {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	pcrs := make(tpmext.PCRValues, len(j.PCRs))
	for name, hs := range j.PCRs {
		alg, err := tpmext.ParseAlgorithm(name)
		if err != nil {
			return fmt.Errorf("eventlog: state: bank %q: %w", name, err)
		}
		if len(hs) != tpmext.NumPCRs {
			return fmt.Errorf("eventlog: state: bank %v has %d PCR values, want %d", alg, len(hs), tpmext.NumPCRs)
		}
		vals := make([][]byte, len(hs))
		for i, h := range hs {
			v, err := hex.DecodeString(h)
			if err != nil || len(v) != alg.Size() {
				return fmt.Errorf("eventlog: state: %v PCR %d: want %d bytes in hex, got %q", alg, i, alg.Size(), h)
			}
			vals[i] = v
		}
		pcrs[alg] = vals
	}
	*s = State{Records: j.Records, Offset: j.Offset, PCRs: pcrs}
	return nil
}
