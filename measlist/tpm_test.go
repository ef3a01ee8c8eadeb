package measlist

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/imasim/imasim/tpmext/swtpmtest"
	"github.com/stretchr/testify/require"
)

// TestMeasureTPMFailureOnRealTPM follows ima_add_template_entry() on a TPM
// that fails: on swtpm (and the simulator) whose TPM2_PCR_Extend is made to
// fail on demand, first with TPM_RC_FAILURE, then as a TPM that no longer
// answers. Each failing record is added, counted and audited as
// "TPM_error(<result>)", Add succeeds, and the PCRs stay where the records
// that were extended left them; extends resume when the TPM heals.
func TestMeasureTPMFailureOnRealTPM(t *testing.T) {
	srv := swtpmtest.Start(t, "sha1", "sha256")
	sw, err := tpmext.Open(srv.Spec(), tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	tpms := map[string]*tpmext.Transport{"swtpm": sw.(*tpmext.Transport)}
	if tpmext.SimulatorAvailable {
		sim, err := tpmext.NewSimulator(tpmext.SHA1, tpmext.SHA256)
		require.NoError(t, err)
		t.Cleanup(func() { sim.Close() })
		tpms["simulator"] = sim
	}
	for name, tpm := range tpms {
		f := newFixtureWith(t, Config{Kexec: true}, tpm, template.LittleEndian)
		f.add(f.file("/bin/a", "a", 10))
		f.wantPCRs()
		var fault error
		tpm.SetFault(func(cc tpm2.TPMCC) error {
			if cc == tpm2.TPMCCPCRExtend {
				return fault
			}
			return nil
		})
		extended := f.history
		for i, tc := range []struct {
			fault error
			cause string
		}{
			{tpm2.TPMRCFailure, "TPM_error(257)"},
			{fmt.Errorf("write: %w", syscall.EPIPE), "TPM_error(-32)"},
			{errors.New("no errno"), "TPM_error(-5)"},
		} {
			fault = tc.fault
			before := f.state()
			e := f.add(f.file(fmt.Sprintf("/bin/fail%d", i), "x", 10))
			n, err := f.q.TPMErrors()
			require.EqualValues(t, i+1, n, name)
			var te *TPMError
			require.ErrorAs(t, err, &te, name)
			require.Equal(t, tc.cause, te.Cause(), name)
			require.Equal(t, 10, te.PCR)
			require.ErrorIs(t, err, tc.fault)
			require.True(t, f.inHtable(e), "%s: the record is in the list and the hash table", name)
			require.Equal(t, before.PCRs, f.state().PCRs, "%s: the PCR is not extended", name)
		}
		fault = nil
		b := f.add(f.file("/bin/b", "b", 10))
		f.wantLists(f.history, nil)
		// The PCRs hold the replay of the records that reached the TPM.
		extended = append(extended, b)
		got, err := tpm.ReadPCRs()
		require.NoError(t, err)
		require.Equal(t, replay(tpm.Banks(), extended), got, name)
		require.NotEqual(t, replay(tpm.Banks(), f.history), got, "%s: the list no longer replays to the PCRs", name)
		require.Len(t, f.history, 5)
	}
}

// TestMeasureSwtpmKilled: swtpm dies while the kernel model measures; every
// later Add still succeeds at once with the record kept, and the failure is
// audited as TPM_error(-ECONNREFUSED).
func TestMeasureSwtpmKilled(t *testing.T) {
	srv := swtpmtest.Start(t, "sha1", "sha256")
	tpm, err := tpmext.Open(srv.Spec(), tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	f := newFixtureWith(t, Config{Kexec: true}, tpm, template.LittleEndian)
	f.addFiles("/before", 3)
	f.wantPCRs()
	srv.Kill()
	f.addFiles("/after", 3)
	f.wantCounts(6, 0, 6)
	n, err := f.q.TPMErrors()
	require.EqualValues(t, 3, n)
	var te *TPMError
	require.ErrorAs(t, err, &te)
	require.Equal(t, fmt.Sprintf("TPM_error(%d)", -int(syscall.ECONNREFUSED)), te.Cause())
	require.ErrorContains(t, err, srv.Addr())
}
