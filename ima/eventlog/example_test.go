package eventlog_test

import (
	"errors"
	"fmt"

	"github.com/imasim/imasim/ima/eventlog"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
)

// kernel builds a small list the way the kernel would (a TPM with SHA-1 and
// SHA-256 banks, ima_hash=sha256, the ima-ng template), extending a
// software TPM as it goes, and returns the legacy binary list and the TPM.
func kernel(paths ...string) ([]byte, *tpmext.Software) {
	banks := []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}
	layout, _ := template.NewLayout(banks, template.HashSHA256, template.LittleEndian)
	tpm, _ := tpmext.NewSoftware(banks...)
	var list []byte
	add := func(e *template.Entry) {
		ds, _ := layout.ExtendDigests(e)
		tpm.Extend(int(e.PCR), ds)
		list, _ = e.AppendBinary(list, layout.SHA1Index(), template.LittleEndian)
	}
	pcrs, _ := tpm.ReadPCRs()
	boot, _ := layout.NewBootAggregate(template.IMANG, 10, pcrs)
	add(boot)
	for _, p := range paths {
		ev, _ := template.NewFileEvent(p, &template.File{Content: []byte("contents of " + p)}, template.HashSHA256, nil)
		e, _ := layout.NewEntry(template.IMANG, 10, ev)
		add(e)
	}
	return list, tpm
}

// pcr10 reads PCR 10 of both banks, as a verifier gets them from a quote.
func pcr10(tpm *tpmext.Software) eventlog.Expected {
	want := eventlog.Expected{}
	for _, b := range tpm.Banks() {
		v, _ := tpm.ReadPCR(10, b)
		want[b] = map[int][]byte{10: v}
	}
	return want
}

func ExampleEventLog_Verify() {
	list, tpm := kernel("/usr/bin/bash", "/etc/passwd", "/usr/lib64/libc.so.6")
	want := pcr10(tpm)

	log, err := eventlog.ParseEventLog(list, eventlog.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	st, err := log.Verify(want, eventlog.ReplayOptions{})
	fmt.Printf("%d records verify: %v\n", st.Records, err)

	// One changed byte in the path of record 2.
	bad := append([]byte(nil), list...)
	bad[log.Record(3).Offset-2] ^= 1
	log, _ = eventlog.ParseEventLog(bad, eventlog.Options{})
	_, err = log.Verify(want, eventlog.ReplayOptions{})
	var re *eventlog.ReplayError
	if errors.As(err, &re) {
		fmt.Printf("tampered: record %d, template digest mismatch: %v\n", re.Index, errors.Is(err, eventlog.ErrTemplateDigest))
	}

	// A record measured after the PCRs were read.
	more, _ := kernel("/usr/bin/bash", "/etc/passwd", "/usr/lib64/libc.so.6", "/usr/bin/ls")
	log, _ = eventlog.ParseEventLog(more, eventlog.Options{})
	_, err = log.Verify(want, eventlog.ReplayOptions{})
	if errors.As(err, &re) {
		fmt.Printf("appended: the values match after %d records, record %d is not covered\n", re.MatchedAt, re.Index)
	}
	n, _, _ := log.ReplayUntil(eventlog.Target{PCRs: want}, eventlog.ReplayOptions{})
	fmt.Printf("the PCRs cover N = %d records\n", n)
	// Output:
	// 4 records verify: <nil>
	// tampered: record 2, template digest mismatch: true
	// appended: the values match after 4 records, record 4 is not covered
	// the PCRs cover N = 4 records
}

// A quote that lags the list: the TPM signed its PCRs after three records,
// and the list has five by the time the agent reads it.
func ExampleQuoteTarget() {
	_, lagging := kernel("/usr/bin/bash", "/etc/passwd")
	list, _ := kernel("/usr/bin/bash", "/etc/passwd", "/usr/bin/ls", "/usr/bin/cat")

	nonce := []byte("verifier's nonce")
	sel := tpmext.Selection{Alg: tpmext.SHA256, PCRs: []int{10}}
	quote, _ := lagging.Quote(nonce, sel)

	target, err := eventlog.QuoteTarget(quote, nonce, sel)
	if err != nil {
		fmt.Println(err)
		return
	}
	log, _ := eventlog.ParseEventLog(list, eventlog.Options{})
	n, st, err := log.ReplayUntil(target, eventlog.ReplayOptions{})
	fmt.Printf("the quote covers N = %d of %d records (%v)\n", n, log.Len(), err)

	// Next round: resume from the saved state, not from record 0.
	_, current := kernel("/usr/bin/bash", "/etc/passwd", "/usr/bin/ls", "/usr/bin/cat")
	quote, _ = current.Quote(nonce, sel)
	target, _ = eventlog.QuoteTarget(quote, nonce, sel)
	n, _, err = log.ReplayUntil(target, eventlog.ReplayOptions{From: st})
	fmt.Printf("the next quote covers N = %d (%v)\n", n, err)
	// Output:
	// the quote covers N = 3 of 5 records (<nil>)
	// the next quote covers N = 5 (<nil>)
}

// ExpectedFrom turns a TPM's PCR values into what Verify checks: a list of
// three records, extended onto a software TPM as the kernel does, verifies
// against PCR 10 of both banks.
func ExampleExpectedFrom() {
	list, tpm := kernel("/usr/bin/a", "/usr/bin/b", "/usr/bin/c")
	values, _ := tpm.ReadPCRs()
	want, _ := eventlog.ExpectedFrom(values)
	el, err := eventlog.ParseEventLog(list, eventlog.Options{})
	if err != nil {
		panic(err)
	}
	_, err = el.Verify(want, eventlog.ReplayOptions{})
	fmt.Println("verified against PCR 10 of", len(want), "banks:", err == nil)
	// Output:
	// verified against PCR 10 of 2 banks: true
}
