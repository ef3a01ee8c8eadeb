// Package arch holds the test that keeps the module's import graph to the
// dependency arrows drawn in the README ("Dependencies point one way").
//
// No kernel counterpart; it exists so that a change that makes a core
// package reach upwards (measlist importing staging, say) or pulls FUSE into
// the core fails `go test ./...`.
package arch
