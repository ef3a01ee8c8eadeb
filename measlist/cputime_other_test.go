//go:build !linux

package measlist

import "time"

// threadCPU is not available here; the benchmarks then report wall-clock
// figures only.
func threadCPU() (time.Duration, bool) { return 0, false }
