package scenario_test

import (
	"fmt"
	"os"

	"github.com/imasim/imasim/ima/scenario"
)

// The documentation's prompt flavour, with what each step must do.
func Example() {
	script := `boot banks=sha1,sha256 staging=y
measure /usr/bin/a "content of a"
echo A > binary_runtime_measurements_staged
cat binary_runtime_measurements_staged
> 10 ima-ng boot_aggregate
> 10 ima-ng /usr/bin/a
echo A > binary_runtime_measurements_staged
! EEXIST
save
echo D > binary_runtime_measurements_staged
cat binary_runtime_measurements_staged
replay
> sha1: 2 records replay to PCR 10
> sha256: 2 records replay to PCR 10
`
	s, err := scenario.Parse("example.txt", []byte(script))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Run(nil))
	// Output: <nil>
}

// A wrong expectation names the file and line of the command.
func ExampleScript_Run_mismatch() {
	script := `boot
echo D > binary_runtime_measurements_staged
cat runtime_measurements_count
> 1
`
	s, _ := scenario.Parse("case.txt", []byte(script))
	fmt.Println(s.Run(nil))
	// Output: case.txt:2: echo D > binary_runtime_measurements_staged: want success, got ENOENT (write binary_runtime_measurements_staged: no such file or directory)
}

// Update drafts the expectations of a new case, for a reviewer to check
// against the specification.
func ExampleScript_Update() {
	script := `boot flush=y
measure /usr/bin/a a
echo 1 > binary_runtime_measurements
echo A > binary_runtime_measurements_staged
cat binary_runtime_measurements_staged
`
	s, _ := scenario.Parse("new.txt", []byte(script))
	out, err := s.Update()
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(out)
	// Output:
	// boot flush=y
	// measure /usr/bin/a a
	// echo 1 > binary_runtime_measurements
	// ! EINVAL
	// echo A > binary_runtime_measurements_staged
	// cat binary_runtime_measurements_staged
	// > 10 ima-ng boot_aggregate
	// > 10 ima-ng /usr/bin/a
}
