// Package collector is the user-space half the staging series asks for:
// drive either staging flavour through the securityfs files (simulated or
// real), persist what was staged durably, and serve the concatenated log
// since boot from any record number, as if staging never happened.
//
// It has no kernel counterpart; it implements the "Management of Staged
// Measurements" and "Remote Attestation Agent Workflow" sections of
// Documentation/security/IMA-export-delete.rst ("[PATCH v7 12/12]").
//
// Status: the package is built by a later issue; see the README.
package collector
