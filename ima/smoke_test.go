package ima

import (
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

func TestSmokeKexecBetweenAAndD(t *testing.T) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	k, err := New(Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true, CriticalData: true})
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		require.NoError(t, k.Measure(File{Path: "/usr/bin/x" + string(rune('a'+i)), File: template.File{Content: []byte{byte(i)}}}))
	}
	require.NoError(t, k.Violation("/tmp/v", nil, CauseToMToU))
	root := k.FS(staging.Root(1))
	all, err := staging.ReadFile(root, "binary_runtime_measurements")
	require.NoError(t, err)
	w, err := root.OpenFile("binary_runtime_measurements_staged", os.O_RDWR)
	require.NoError(t, err)
	_, err = w.Write([]byte("A\n"))
	require.NoError(t, err)
	staged, err := io.ReadAll(w)
	require.NoError(t, err)
	require.Equal(t, all, staged)
	k2, err := k.Kexec()
	require.NoError(t, err)
	_, err = w.Write([]byte("D\n"))
	require.ErrorIs(t, err, syscall.ESTALE)
	require.NoError(t, w.Close())
	after, err := staging.ReadFile(k2.FS(staging.Root(1)), "binary_runtime_measurements")
	require.NoError(t, err)
	require.Greater(t, len(after), len(all))
	// Old staged records come first, then kexec_execute (recorded before
	// suspension), then the new boot_aggregate and kernel_version.
	require.Equal(t, all, after[:len(all)])
	res, rerr := k2.Restored()
	require.NoError(t, rerr)
	t.Logf("restored %d records; list now %d bytes", res.Restored, len(after))
	// The whole list replays to PCR 10 from zero.
	entries, err := template.DecodeAll(after, template.DecodeOptions{DigestSize: 20})
	require.NoError(t, err)
	pcr := make([]byte, 32)
	for _, e := range entries {
		var d []byte
		if e.Violation || isZero(e.Digests[0].Value) {
			d = make([]byte, 32)
			for i := range d {
				d[i] = 0xff
			}
		} else {
			d, err = e.TemplateDigest(template.HashSHA256, template.LittleEndian)
			require.NoError(t, err)
		}
		pcr = tpmext.ExtendValue(tpmext.SHA256, pcr, d)
	}
	got, err := tpm.ReadPCR(10, tpmext.SHA256)
	require.NoError(t, err)
	require.Equal(t, got, pcr)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
