package measlisttest_test

import (
	"bytes"
	"fmt"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/imasim/imasim/tpmext"
)

// A test drives a measlist.Queue and a Model with the same operations and
// compares what the queue shows with the model's Snapshot: counters, lists
// and PCR 10.
func Example() {
	tpm, _ := tpmext.NewSoftware(tpmext.SHA256)
	layout, _ := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
	q, _ := measlist.New(measlist.Config{Layout: layout, TPM: tpm})
	ref := measlisttest.New(measlisttest.Config{Layout: layout, Banks: tpm.Banks()})
	measure := func(path string) {
		e, _ := measlisttest.FileEntry(layout, path, []byte(path))
		fmt.Printf("measure %s: queue %v, model %v\n", path, q.Add(e), ref.Add(e))
	}
	compare := func(when string) {
		s := ref.Snapshot()
		pcrs, _ := tpm.ReadPCRs()
		same := q.NumRecords(measlist.Binary) == s.Counts[measlisttest.Binary] &&
			q.NumRecords(measlist.BinaryStaged) == s.Counts[measlisttest.BinaryStaged] &&
			q.NumRecords(measlist.BinaryFull) == s.Counts[measlisttest.BinaryFull] &&
			len(q.Entries(measlist.Current)) == len(s.Current) &&
			bytes.Equal(pcrs[tpmext.SHA256][10], s.PCRs[tpmext.SHA256][10])
		fmt.Printf("%-12s current %d, staged %d, full %d; queue agrees: %v\n", when+":",
			s.Counts[measlisttest.Binary], s.Counts[measlisttest.BinaryStaged], s.Counts[measlisttest.BinaryFull], same)
	}
	measure("/usr/bin/a")
	measure("/usr/bin/b")
	measure("/usr/bin/a")
	fmt.Printf("A: queue %v, model %v\n", q.Stage(), ref.Stage())
	measure("/usr/bin/c")
	compare("after A")
	n, qerr := q.DeleteStaged()
	deleted, merr := ref.DeleteStaged()
	fmt.Printf("D: queue %d %v, model %d %v\n", n, qerr, len(deleted), merr)
	_, merr = ref.DeletePartial(2)
	fmt.Printf("N=2: queue %v, model %v\n", q.DeletePartial(2), merr)
	compare("after D, N")
	// Output:
	// measure /usr/bin/a: queue <nil>, model <nil>
	// measure /usr/bin/b: queue <nil>, model <nil>
	// measure /usr/bin/a: queue file exists, model file exists
	// A: queue <nil>, model <nil>
	// measure /usr/bin/c: queue <nil>, model <nil>
	// after A:     current 1, staged 2, full 3; queue agrees: true
	// D: queue 2 <nil>, model 2 <nil>
	// N=2: queue no such file or directory, model no such file or directory
	// after D, N:  current 1, staged 0, full 3; queue agrees: true
}
