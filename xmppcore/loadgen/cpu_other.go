//go:build !unix

package loadgen

import "time"

// selfCPU is unavailable here; the generator's own cost reports as 0.
func selfCPU() time.Duration { return 0 }
