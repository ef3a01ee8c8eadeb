package measlist_test

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/tpmext"
)

// The queue on its own: append records (each extends PCR 10 of every bank),
// stage them with A, delete them with D, and delete N from the current list,
// watching the kernel's per-type counters.
func Example() {
	tpm, _ := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	layout, _ := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
	q, err := measlist.New(measlist.Config{Layout: layout, TPM: tpm, Kexec: true})
	if err != nil {
		panic(err)
	}
	add := func(path string) error {
		ev, err := template.NewFileEvent(path, &template.File{Content: []byte(path)}, template.HashSHA256, nil)
		if err != nil {
			return err
		}
		e, err := layout.NewEntry(template.Builtin("ima-ng"), 10, ev)
		if err != nil {
			return err
		}
		return q.Add(e)
	}
	counters := func(when string) {
		fmt.Printf("%-18s current %d, staged %d, full %d\n", when+":",
			q.NumRecords(measlist.Binary), q.NumRecords(measlist.BinaryStaged), q.NumRecords(measlist.BinaryFull))
	}
	for i := range 5 {
		_ = add(fmt.Sprintf("/usr/bin/tool-%d", i))
	}
	counters("5 added")
	fmt.Println("same record again:", errors.Is(add("/usr/bin/tool-0"), syscall.EEXIST))

	_ = q.Stage()
	_ = add("/usr/bin/late")
	counters("A, then 1 added")
	fmt.Println("A again:", errors.Is(q.Stage(), syscall.EEXIST))
	n, _ := q.DeleteStaged()
	counters(fmt.Sprintf("D freed %d", n))
	fmt.Println("deleted, still a duplicate:", errors.Is(add("/usr/bin/tool-1"), syscall.EEXIST))

	_ = add("/usr/bin/more")
	fmt.Println("N=5 of 2:", errors.Is(q.DeletePartial(5), syscall.ENOENT))
	_ = q.DeletePartial(1)
	counters("N=1")
	// Output:
	// 5 added:           current 5, staged 0, full 5
	// same record again: true
	// A, then 1 added:   current 1, staged 5, full 6
	// A again: true
	// D freed 5:         current 1, staged 0, full 6
	// deleted, still a duplicate: true
	// N=5 of 2: true
	// N=1:               current 1, staged 0, full 7
}
