package collector

import (
	"fmt"
	"testing"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestQuoteCover: a DeleteN cycle with Options.Quote deletes exactly the
// records a quote covers; the records measured between the quote and the
// read stay in the kernel for the next cycle, and the next cycle's quote
// resumes from what the store already holds.
func TestQuoteCover(t *testing.T) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true})
	require.NoError(t, err)
	n := 0
	measure := func(count int) {
		for range count {
			n++
			require.NoError(t, k.Measure(ima.File{Path: fmt.Sprintf("/q/%d", n), File: template.File{Content: []byte{byte(n)}}}))
		}
	}
	sel := tpmext.Selection{Alg: tpmext.SHA256, PCRs: []int{10}}
	lag := 0 // records measured after each quote, before the list is read
	c, err := Open(t.TempDir(), k.FS(staging.Root(900)), Options{
		Flavour: DeleteN, BootID: k.BootID(), Layout: k.Layout(),
		Quote: func() (eventlog.Target, error) {
			nonce := []byte(fmt.Sprint("nonce", n))
			q, err := tpm.Quote(nonce, sel)
			if err != nil {
				return eventlog.Target{}, err
			}
			measure(lag)
			return eventlog.QuoteTarget(q, nonce, sel)
		},
	})
	require.NoError(t, err)
	defer c.Close()

	measure(10)
	lag = 5
	res, err := c.Cycle()
	require.NoError(t, err)
	require.Equal(t, 16, res.Read)  // boot_aggregate, 10, and 5 after the quote
	require.Equal(t, 11, res.Saved) // what the quote covers
	require.EqualValues(t, 5, k.Queue().NumRecords(measlist.Binary))

	lag = 2
	res, err = c.Cycle()
	require.NoError(t, err)
	require.Equal(t, 7, res.Read)
	require.Equal(t, 5, res.Saved, "the quote covers the 5 left behind, not the 2 after it")
	require.Equal(t, 16, c.Committed())

	recs, err := c.Records(0)
	require.NoError(t, err)
	require.Len(t, recs, 18)
}
