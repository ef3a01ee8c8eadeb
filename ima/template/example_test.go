package template_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"log"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// Build the ima-ng record of a measured file and print its line of
// ascii_runtime_measurements (the SHA-1 column). The line is the one of
// keylime's test/data/create-runtime-policy/ima-log-sha256.
func Example() {
	layout, err := template.NewLayout([]tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, template.HashSHA256, template.LittleEndian)
	if err != nil {
		log.Fatal(err)
	}
	digest, _ := hex.DecodeString("96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754")
	ev, err := template.NewFileEvent("/data", &template.File{}, template.HashSHA256, digest)
	if err != nil {
		log.Fatal(err)
	}
	e, err := layout.NewEntry(template.IMANG, 10, ev)
	if err != nil {
		log.Fatal(err)
	}
	line, err := e.AppendASCII(nil, layout.SHA1Index(), layout.Order())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(line))
	// Output:
	// 10 80255d9c7dad91ef5f21b18560a47642d6f4d653 ima-ng sha256:96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754 /data
}

// The per-bank list files of a TPM with an unmapped SHA3-256 bank and no
// SHA-1 bank.
func ExampleLayout_ListFiles() {
	layout, err := template.NewLayout([]tpmext.Algorithm{tpmext.SHA256, tpmext.SHA3_256}, template.HashSHA256, template.LittleEndian)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range layout.ListFiles() {
		s := layout.Slot(f.Slot)
		fmt.Printf("binary_runtime_measurements_%s: slot %d, %d-byte digests, hashed %v\n", f.Suffix, f.Slot, s.Size, s.Hashed)
	}
	// Output:
	// binary_runtime_measurements_sha256: slot 0, 32-byte digests, hashed true
	// binary_runtime_measurements_tpm_alg_27: slot 1, 32-byte digests, hashed false
	// binary_runtime_measurements_sha1: slot 2, 20-byte digests, hashed true
}

// Decode a binary list one record at a time and re-render each record in
// ASCII, as a verifier would.
func ExampleDecoder() {
	layout, _ := template.NewLayout(nil, template.HashSHA256, template.LittleEndian)
	boot, _ := layout.NewBootAggregate(template.IMANG, 10, nil)
	var list []byte
	list, _ = boot.AppendBinary(list, layout.SHA1Index(), template.LittleEndian)

	dec, err := template.NewDecoder(bytes.NewReader(list), template.DecodeOptions{DigestSize: 20})
	if err != nil {
		log.Fatal(err)
	}
	for {
		e, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		line, _ := e.AppendASCII(nil, 0, template.LittleEndian)
		fmt.Print(string(line))
	}
	// Output:
	// 10 0adefe762c149c7cec19da62f0da1297fcfbffff ima-ng sha256:0000000000000000000000000000000000000000000000000000000000000000 boot_aggregate
}

// Render single fields as the ASCII list shows them, for example to
// put them in a JSON record.
func ExampleAppendFieldASCII() {
	dng := append([]byte("sha256:\x00"), make([]byte, 32)...)
	fmt.Printf("%s\n", template.AppendFieldASCII(nil, template.FieldDNG, dng, template.LittleEndian))
	fmt.Printf("%s\n", template.AppendFieldASCII(nil, template.FieldNNG, []byte("/usr/bin/kmod\x00"), template.LittleEndian))
	fmt.Printf("%s\n", template.AppendFieldASCII(nil, template.FieldIUID, []byte{0xe8, 0x03, 0, 0}, template.LittleEndian))
	// Output:
	// sha256:0000000000000000000000000000000000000000000000000000000000000000
	// /usr/bin/kmod
	// 1000
}
