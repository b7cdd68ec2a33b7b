//go:build !unix

package loadgen

import "time"

// SelfCPU is unavailable here; the generator's own cost reports as 0.
func SelfCPU() time.Duration { return 0 }
