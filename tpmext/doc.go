// Package tpmext is imasim's TPM 2.0: PCR banks, extend, read, reset and
// quote, on back ends that agree bit for bit.
//
//   - Software: pure-Go banks; no cgo; any bank set (SHA-1, SHA-2, SM3,
//     SHA-3); the default for big fuzz and benchmark runs, and the oracle
//     for the others.
//   - Transport: any TPM 2.0 reached through a go-tpm transport.TPM, driven
//     with github.com/google/go-tpm/tpm2 (and go-tpm's legacy
//     TPM2_PCR_Allocate). Its openers:
//   - NewSimulator: the Microsoft reference TPM from
//     github.com/google/go-tpm-tools/simulator, in process. It needs cgo,
//     gcc and OpenSSL headers; without cgo it returns ErrNoSimulator and
//     SimulatorAvailable is false. One per process: a second one returns
//     ErrSimulatorBusy.
//   - OpenSwtpm: swtpm over TCP (command port and swtpm's control port),
//     which tpm2-tools and other TPM clients can reach at the same time.
//   - OpenDevice: a Linux TPM device such as /dev/tpmrm0.
//   - NewTransport: any other go-tpm transport.
//
// Open takes one spelling for all: software, simulator,
// swtpm:HOST:PORT[,ctrl=PORT], device:PATH. tpmext/swtpmtest starts swtpm
// for tests.
//
// The package knows nothing of IMA records. What it mirrors of the kernel is
// the TPM driver's contract with IMA: one TPM2_PCR_Extend carries every
// bank's digest for one PCR (drivers/char/tpm/tpm2-cmd.c:tpm2_pcr_extend()),
// banks are reported in the TPM's order (tpm2_get_pcr_allocation()),
// commands answered TPM_RC_RETRY are sent again
// (drivers/char/tpm/tpm-interface.c:tpm_transmit()), a failure is a TPM
// response code or a negative errno (Result), and tpm2_hash_map names the
// algorithms the kernel can map (SHA1, SHA256, SHA384, SHA512, SM3_256; any
// other bank, such as SHA3_256, is "unmapped").
//
// Platform facts every back end follows (TCG PC Client Platform TPM
// Profile): 24 PCRs per bank; PCRs 17 to 22 start at all ones and cannot be
// extended from locality 0, where the kernel and every caller here run; a
// reset (reboot) returns every PCR to its initial value.
//
// Quotes are TPMS_ATTEST structures of type TPM_ST_ATTEST_QUOTE with a
// TPMT_SIGNATURE, as a TPM returns them and tpm2_quote writes them; the
// attestation key is exported as TPM2B_PUBLIC and PEM, so tpm2_checkquote
// verifies imasim's quotes, and ParseQuote and Quote.Verify check
// tpm2_quote's in pure Go (ECDSA, RSASSA, RSAPSS over SHA-256).
//
// Lock order: each back end has one mutex, held for the duration of one TPM
// command (a Transport's also across a quote's create, quote and flush); no
// other lock is taken under it.
package tpmext
