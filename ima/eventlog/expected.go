package eventlog

import (
	"fmt"

	"github.com/imasim/imasim/tpmext"
)

// ExpectedFrom picks PCRs pcrs (PCR 10 when none are given) of every bank
// of values, as read from a TPM with tpmext.TPM.ReadPCRs, into the values
// Verify checks against. A PCR out of range is an error.
//
// No kernel counterpart; it saves verifiers the loop over banks.
func ExpectedFrom(values tpmext.PCRValues, pcrs ...int) (Expected, error) {
	if len(pcrs) == 0 {
		pcrs = []int{10}
	}
	want := Expected{}
	for alg, bank := range values {
		want[alg] = map[int][]byte{}
		for _, p := range pcrs {
			if p < 0 || p >= len(bank) {
				return nil, fmt.Errorf("eventlog: PCR %d: bank %v has PCRs 0-%d", p, alg, len(bank)-1)
			}
			want[alg][p] = bank[p]
		}
	}
	return want, nil
}
