package staging_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// newFS is a securityfs with CONFIG_IMA_STAGING over a queue holding n
// records.
func newFS(n int) *staging.SecurityFS {
	tpm, _ := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	layout, _ := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
	q, _ := measlist.New(measlist.Config{Layout: layout, TPM: tpm})
	for i := range n {
		path := fmt.Sprintf("/usr/bin/tool-%d", i)
		ev, _ := template.NewFileEvent(path, &template.File{Content: []byte(path)}, template.HashSHA256, nil)
		e, _ := layout.NewEntry(template.Builtin("ima-ng"), 10, ev)
		_ = q.Add(e)
	}
	s, err := staging.New(staging.Config{Queue: q, Staging: true})
	if err != nil {
		panic(err)
	}
	return s
}

// errnoOf prints the errno inside err the way the kernel names it.
func errnoOf(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s %s: %v", pe.Op, pe.Path, pe.Err)
	}
	return fmt.Sprint(err)
}

// The files as tasks see them: the open rules (EACCES, EPERM, one writer
// task), the write grammar's errnos, and the counter file.
func Example() {
	s := newFS(3)
	root := s.As(staging.Root(1))

	// A user outside group 0 cannot open a list file at all; a member of
	// group 0 may read but, without CAP_SYS_ADMIN, not write.
	_, err := staging.ReadFile(s.As(staging.User(2, 1000, 1000)), staging.BinaryRuntimeMeasurements)
	fmt.Println(errnoOf(err))
	_, err = s.As(staging.User(3, 1000, 0)).OpenFile(staging.BinaryRuntimeMeasurementsStaged, os.O_WRONLY)
	fmt.Println(errnoOf(err))

	// One writer task at a time, across every list file.
	w, _ := root.OpenFile(staging.BinaryRuntimeMeasurementsStaged, os.O_RDWR)
	_, err = s.As(staging.Root(4)).OpenFile(staging.ASCIIRuntimeMeasurements, os.O_RDONLY)
	fmt.Println(errnoOf(err))

	for _, req := range []string{"A", "N\n", "A\n", "A\n", "D\n", "D\n"} {
		_, err := w.Write([]byte(req))
		fmt.Printf("%q: %v\n", req, err)
	}
	w.Close()
	fmt.Println("N on the original file:", staging.WriteFile(root, staging.BinaryRuntimeMeasurements, []byte("1\n")))
	count, _ := staging.ReadFile(root, staging.RuntimeMeasurementsCount)
	fmt.Printf("count: %s", count)
	// Output:
	// open binary_runtime_measurements: permission denied
	// open binary_runtime_measurements_staged: operation not permitted
	// open ascii_runtime_measurements: device or resource busy
	// "A": write binary_runtime_measurements_staged: invalid argument
	// "N\n": write binary_runtime_measurements_staged: invalid argument
	// "A\n": <nil>
	// "A\n": write binary_runtime_measurements_staged: file exists
	// "D\n": <nil>
	// "D\n": write binary_runtime_measurements_staged: no such file or directory
	// N on the original file: write binary_runtime_measurements: no such file or directory
	// count: 0
}
