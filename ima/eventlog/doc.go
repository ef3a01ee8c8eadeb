// Package eventlog is the verifier's side of an IMA measurement list: parse
// any list (binary with any template-digest column and byte order, or
// ASCII), replay it into PCR banks, verify it against PCR values or a
// quote, find the N that a quote covers (the N the staging documentation
// tells agents to compute), and concatenate saved chunks.
//
// It has no kernel counterpart as code; it follows what user space does
// with the files that security/integrity/ima/ima_fs.c produces, and is
// checked against evmctl ima_measurement (linux-integrity/ima-evm-utils).
//
// Status: the package is built by a later issue; see the README.
package eventlog
