package eventlog_test

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/tpmext"
)

// TestStateJSON: a saved state names its banks and writes hex; it reads
// back equal, and a bad bank, size or count is refused.
func TestStateJSON(t *testing.T) {
	st := eventlog.State{Records: 3, Offset: 300, PCRs: tpmext.PCRValues{}}
	for _, alg := range []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256} {
		vals := make([][]byte, tpmext.NumPCRs)
		for i := range vals {
			vals[i] = alg.Sum([]byte{byte(i)})
		}
		st.PCRs[alg] = vals
	}
	b, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sha1":["` + hex.EncodeToString(st.PCRs[tpmext.SHA1][0]) + `"`, `"sha256":[`, `"records":3`, `"offset":300`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s\nlacks %s", b, want)
		}
	}
	var back eventlog.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Records != 3 || back.Offset != 300 || !back.PCRs.Equal(st.PCRs) {
		t.Errorf("read back %+v", back)
	}
	good := hex.EncodeToString(make([]byte, 20))
	row := func(v string) string { return `["` + strings.Repeat(good+`","`, tpmext.NumPCRs-1) + v + `"]` }
	for _, bad := range []string{
		`{"records":1,"pcrs":{"sha9":` + row(good) + `}}`,
		`{"records":1,"pcrs":{"sha1":` + row("zz") + `}}`,
		`{"records":1,"pcrs":{"sha1":` + row(good+"00") + `}}`,
		`{"records":1,"pcrs":{"sha1":["` + good + `"]}}`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
