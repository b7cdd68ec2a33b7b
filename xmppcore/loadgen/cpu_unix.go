//go:build unix

package loadgen

import (
	"syscall"
	"time"
)

// SelfCPU returns the user+system CPU time used by this process, so a
// generator can report its own cost next to the server's.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
