package ima_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// boot starts a kernel with CONFIG_IMA_STAGING on a software TPM and
// measures n files.
func boot(n int) *ima.Kernel {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	if err != nil {
		panic(err)
	}
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: "sha256", Staging: true})
	if err != nil {
		panic(err)
	}
	for i := range n {
		path := fmt.Sprintf("/usr/bin/tool-%d", i)
		if err := k.Measure(ima.NewFile(path, []byte(path))); err != nil {
			panic(err)
		}
	}
	return k
}

// errno names the errno an error wraps.
func errno(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return map[syscall.Errno]string{syscall.EBUSY: "EBUSY", syscall.EEXIST: "EEXIST", syscall.ENOENT: "ENOENT",
			syscall.EINVAL: "EINVAL", syscall.ERANGE: "ERANGE"}[e]
	}
	return fmt.Sprint(err)
}

func count(k *ima.Kernel) string {
	b, _ := staging.ReadFile(k.FS(staging.Root(1)), staging.RuntimeMeasurementsCount)
	return string(b[:len(b)-1])
}

// Staging with prompt as one transaction: the agent opens the _staged file
// read-write, stages with "A\n", reads the staged records to EOF, saves
// them, and deletes them with "D\n". While it holds the file, every other
// task is refused.
func Example_stagingWithPrompt() {
	k := boot(9) // boot_aggregate + 9 files
	agent := k.FS(staging.Root(100))
	f, err := agent.OpenFile(staging.BinaryRuntimeMeasurementsStaged, os.O_RDWR)
	if err != nil {
		panic(err)
	}
	n, err := f.Write([]byte("A\n"))
	fmt.Println("A:", n, err, "- count now", count(k))

	_, err = staging.ReadFile(k.FS(staging.Root(200)), staging.BinaryRuntimeMeasurements)
	fmt.Println("another task reading:", errno(err))

	staged, _ := io.ReadAll(f)
	records, _ := template.DecodeAll(staged, template.DecodeOptions{DigestSize: 20})
	fmt.Println("staged records read:", len(records))

	_, err = f.Write([]byte("A\n"))
	fmt.Println("A again:", errno(err))
	n, err = f.Write([]byte("D\n"))
	fmt.Println("D:", n, err)
	_, err = f.Write([]byte("D\n"))
	fmt.Println("D again:", errno(err))
	f.Close()

	left, _ := staging.ReadFile(agent, staging.BinaryRuntimeMeasurementsStaged)
	fmt.Println("staged bytes left:", len(left))
	// Output:
	// A: 2 <nil> - count now 0
	// another task reading: EBUSY
	// staged records read: 10
	// A again: EEXIST
	// D: 2 <nil>
	// D again: ENOENT
	// staged bytes left: 0
}

// Staging and deleting N: the agent reads the current list, then deletes
// the records it read by writing their number to the original file. Records
// measured in between stay in the kernel.
func Example_stageAndDeleteN() {
	k := boot(5)
	agent := k.FS(staging.Root(100))
	list, _ := staging.ReadFile(agent, staging.BinaryRuntimeMeasurements)
	records, _ := template.DecodeAll(list, template.DecodeOptions{DigestSize: 20})
	fmt.Println("read:", len(records), "records")

	_ = k.Measure(ima.NewFile("/usr/bin/late", []byte("late")))
	fmt.Println("count before N:", count(k))

	err := staging.WriteFile(agent, staging.BinaryRuntimeMeasurements, fmt.Appendf(nil, "%d\n", len(records)))
	fmt.Println("N:", err, "- count now", count(k))

	for _, req := range []string{"0\n", "5\n", "-1\n", "18446744073709551616\n", "A\n"} {
		err := staging.WriteFile(agent, staging.BinaryRuntimeMeasurements, []byte(req))
		fmt.Printf("%q: %s\n", req, errno(err))
	}
	// Output:
	// read: 6 records
	// count before N: 7
	// N: <nil> - count now 1
	// "0\n": EINVAL
	// "5\n": ENOENT
	// "-1\n": EINVAL
	// "18446744073709551616\n": ERANGE
	// "A\n": EINVAL
}
