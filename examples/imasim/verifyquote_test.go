package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestVerifyQuoteUsage: the quote flags' usage errors exit 2 with one
// line; a quote whose files are malformed is a usage error too.
func TestVerifyQuoteUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("not a quote"), 0o644))
	sw, err := tpmext.NewSoftware()
	require.NoError(t, err)
	ak, err := sw.AttestationKey()
	require.NoError(t, err)
	key := filepath.Join(dir, "ak.pub")
	require.NoError(t, os.WriteFile(key, ak.Public, 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--quote", bad, evIBMSHA1}, "--quote needs --sig, --ak-pub and --nonce"},
		{[]string{"--quote", bad, "--sig", bad, "--ak-pub", bad, "--nonce", "zz", evIBMSHA1}, `--nonce "zz" is not hex`},
		{[]string{"--quote", bad, "--sig", bad, "--ak-pub", filepath.Join(dir, "missing"), "--nonce", "00", evIBMSHA1}, "missing: no such file"},
		{[]string{"--quote", bad, "--sig", bad, "--ak-pub", bad, "--nonce", "00", evIBMSHA1}, "neither PEM nor a TPM2B_PUBLIC"},
		{[]string{"--quote", bad, "--sig", bad, "--ak-pub", key, "--nonce", "00", evIBMSHA1}, "decoding TPMS_ATTEST"},
	} {
		code, _, errOut := evCmd(append([]string{"verify"}, tc.args...)...)
		require.Equal(t, 2, code, tc.args)
		require.Contains(t, errOut, tc.want)
	}
}
