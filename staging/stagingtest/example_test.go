package stagingtest_test

import (
	"fmt"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist/measlisttest"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/staging/stagingtest"
)

// An agent's test can hold the kernel it expects as a reference queue and
// the open bookkeeping, and apply to them what it writes to the real (or
// simulated) files, to know each answer in advance.
func Example() {
	layout, _ := template.NewLayout(nil, template.HashSHA256, template.LittleEndian)
	kernel := measlisttest.New(measlisttest.Config{Layout: layout})
	for _, path := range []string{"/usr/bin/a", "/usr/bin/b", "/usr/bin/c"} {
		e, _ := measlisttest.FileEntry(layout, path, []byte(path))
		_ = kernel.Add(e)
	}
	var users stagingtest.Users
	agent, other := staging.Root(100), staging.Root(200)
	fmt.Println("agent opens for write:", stagingtest.Open(&users, agent, 0o660, true, true, true))
	fmt.Println("another writer:", stagingtest.Open(&users, other, 0o660, true, true, true))
	fmt.Println("a reader:", stagingtest.Open(&users, other, 0o660, true, false, true))
	fmt.Println("a user:", stagingtest.Open(&users, staging.User(300, 1000, 1000), 0o660, true, false, true))
	for _, w := range []struct {
		p      string
		staged bool
	}{{"A\n", false}, {"A\n", true}, {"A\n", true}, {"5\n", false}, {"D\n", true}} {
		deleted, err := stagingtest.Write(kernel, []byte(w.p), w.staged)
		fmt.Printf("write %q (staged file %v): deleted %d, %v\n", w.p, w.staged, len(deleted), err)
	}
	// Output:
	// agent opens for write: <nil>
	// another writer: device or resource busy
	// a reader: device or resource busy
	// a user: permission denied
	// write "A\n" (staged file false): deleted 0, invalid argument
	// write "A\n" (staged file true): deleted 0, <nil>
	// write "A\n" (staged file true): deleted 0, file exists
	// write "5\n" (staged file false): deleted 0, no such file or directory
	// write "D\n" (staged file true): deleted 3, <nil>
}
