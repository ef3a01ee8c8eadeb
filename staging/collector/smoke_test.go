package collector

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

func TestSmokeCollector(t *testing.T) {
	for _, flav := range []Flavour{Prompt, DeleteN} {
		t.Run(flav.String(), func(t *testing.T) {
			tpm, _ := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
			k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true, Kexec: true})
			require.NoError(t, err)
			ref, _ := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
			kr, err := ima.New(ima.Config{TPM: ref, HashAlgo: "sha256", Kexec: true})
			require.NoError(t, err)
			dir := t.TempDir()
			c, err := Open(dir, k.FS(staging.Root(100)), Options{Flavour: flav, BootID: k.BootID(), Layout: k.Layout()})
			require.NoError(t, err)
			measure := func(i int) {
				f := ima.File{Path: fmt.Sprintf("/bin/p%d", i), File: template.File{Content: []byte{byte(i), byte(i >> 8)}}}
				require.NoError(t, k.Measure(f))
				require.NoError(t, kr.Measure(f))
			}
			for i := 0; i < 300; i++ {
				measure(i)
				if i%37 == 0 {
					res, err := c.Cycle()
					require.NoError(t, err)
					require.Greater(t, res.Saved, 0)
				}
			}
			recs, err := c.Records(0)
			require.NoError(t, err)
			want, err := staging.ReadFile(kr.FS(staging.Root(1)), "binary_runtime_measurements")
			require.NoError(t, err)
			require.Equal(t, want, bytes.Join(recs, nil))
			require.Greater(t, c.Committed(), 0)
			// Reopen: the store recovers to the same state.
			require.NoError(t, c.Close())
			c, err = Open(dir, k.FS(staging.Root(100)), Options{Flavour: flav, BootID: k.BootID(), Layout: k.Layout()})
			require.NoError(t, err)
			recs2, err := c.Records(0)
			require.NoError(t, err)
			require.Equal(t, recs, recs2)
			var buf bytes.Buffer
			_, err = c.WriteLog(&buf, 0, ASCII, 1)
			require.NoError(t, err)
			wantASCII, err := staging.ReadFile(kr.FS(staging.Root(1)), "ascii_runtime_measurements_sha256")
			require.NoError(t, err)
			require.Equal(t, string(wantASCII), buf.String())
			require.NoError(t, c.Close())
		})
	}
}
