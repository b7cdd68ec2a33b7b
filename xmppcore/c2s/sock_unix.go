//go:build unix

package c2s

import "syscall"

// nonBlockingWrites: sockets are written to with write(2) on their
// non-blocking descriptor (the runtime's network poller keeps every
// socket non-blocking).
const nonBlockingWrites = true

// attempt is the body of sock.try's RawConn.Write: one write(2), never
// waiting for the socket to become writable.
func (s *sock) attempt(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), s.tryBuf)
		if err == syscall.EINTR {
			continue
		}
		s.tryN, s.tryErr = max(n, 0), err
		return true
	}
}
