// Package tpmext is imasim's TPM 2.0: PCR banks, extend, read, reset and
// quote, on two back ends that agree bit for bit.
//
//   - Software: pure-Go banks; no cgo; any bank set (SHA-1, SHA-2, SM3,
//     SHA-3); the default for big fuzz and benchmark runs, and the oracle
//     for the simulator.
//   - Simulator: the Microsoft reference TPM from
//     github.com/google/go-tpm-tools/simulator, driven with
//     github.com/google/go-tpm/tpm2 (and go-tpm's legacy TPM2_PCR_Allocate).
//     It needs cgo, gcc and OpenSSL headers; without cgo NewSimulator
//     returns ErrNoSimulator and SimulatorAvailable is false.
//
// The package knows nothing of IMA records. What it mirrors of the kernel is
// the TPM driver's contract with IMA: one TPM2_PCR_Extend carries every
// bank's digest for one PCR (drivers/char/tpm/tpm2-cmd.c:tpm2_pcr_extend()),
// banks are reported in the TPM's order (tpm2_get_pcr_allocation()), and
// tpm2_hash_map names the algorithms the kernel can map (SHA1, SHA256,
// SHA384, SHA512, SM3_256; any other bank, such as SHA3_256, is "unmapped").
//
// Platform facts both back ends follow (TCG PC Client Platform TPM Profile):
// 24 PCRs per bank; PCRs 17 to 22 start at all ones and cannot be extended
// from locality 0, where the kernel and every caller here run; a reset
// (reboot) returns every PCR to its initial value.
//
// Quotes are TPMS_ATTEST structures of type TPM_ST_ATTEST_QUOTE signed with
// ECDSA P-256/SHA-256; Quote.Verify checks them in pure Go.
//
// Lock order: each back end has one mutex, held for the duration of one TPM
// command; no other lock is taken under it.
package tpmext
