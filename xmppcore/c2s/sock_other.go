//go:build !unix

package c2s

// nonBlockingWrites: elsewhere every write blocks, in the connection's
// flush goroutine.
const nonBlockingWrites = false

func (s *sock) attempt(uintptr) bool { return true }
