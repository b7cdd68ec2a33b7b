package c2s

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
)

// sock is a client's socket as the connection writes to it: the TLS
// layer's transport, or what the connection writes to in plain text.
//
// Until the session is bound, a write goes straight through and blocks,
// as net.Conn's does. From then on (buffered) a write never blocks: it
// makes one non-blocking attempt, and what the socket does not take at
// once is kept in pending, in order, until the connection's flush
// goroutine writes it out with drain. So a goroutine that writes for many
// connections (a writer, writer.go) never waits for a client that has
// stopped reading, and nor does the TLS layer's lock, which a reader
// answering a TLS key update takes too.
type sock struct {
	net.Conn
	rc syscall.RawConn // nil: not a socket, so nothing is written without blocking

	// onPending is called, without mu, when a write left bytes in pending:
	// the connection then makes sure a flush goroutine drains them.
	onPending func()

	mu       sync.Mutex
	buffered bool
	draining bool   // drain is writing what it took from pending
	pending  []byte // bytes written to the sock that the socket has not taken yet

	// The non-blocking attempt in progress (try, with mu held); tryFn is
	// the method value of attempt, made once so that an attempt allocates
	// nothing.
	tryBuf []byte
	tryN   int
	tryErr error
	tryFn  func(fd uintptr) bool
}

func newSock(c net.Conn) *sock {
	s := &sock{Conn: c}
	if sc, ok := c.(syscall.Conn); ok && nonBlockingWrites {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
			s.tryFn = s.attempt
		}
	}
	return s
}

// buffer makes writes non-blocking from now on.
func (s *sock) buffer() {
	s.mu.Lock()
	s.buffered = true
	s.mu.Unlock()
}

// Write writes p, or (buffered) as much of p as the socket takes without
// blocking and keeps the rest; it reports len(p) unless the socket failed.
func (s *sock) Write(p []byte) (int, error) {
	s.mu.Lock()
	if !s.buffered {
		s.mu.Unlock()
		return s.Conn.Write(p)
	}
	n := 0
	if !s.draining && len(s.pending) == 0 {
		var err error
		if n, err = s.try(p); err != nil {
			s.mu.Unlock()
			return n, err
		}
		if n == len(p) {
			s.mu.Unlock()
			return n, nil
		}
	}
	s.pending = append(s.pending, p[n:]...)
	s.mu.Unlock()
	if s.onPending != nil {
		s.onPending()
	}
	return len(p), nil
}

// try makes one non-blocking write of p, with s.mu held. A socket that is
// full, or whose write deadline has passed (only the flush goroutine moves
// it), takes nothing; that is not an error.
func (s *sock) try(p []byte) (int, error) {
	if s.rc == nil {
		return 0, nil
	}
	s.tryBuf = p
	err := s.rc.Write(s.tryFn)
	n, werr := s.tryN, s.tryErr
	s.tryBuf, s.tryErr = nil, nil
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	case errors.Is(werr, syscall.EAGAIN):
		return n, nil
	}
	return n, werr
}

// hasPending reports whether bytes wait for drain.
func (s *sock) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0 || s.draining
}

// drain writes out what is pending, blocking, within the connection's
// write deadline. Only the connection's flush goroutine calls it; writes
// meanwhile add to pending and are written after what was there.
func (s *sock) drain() error {
	for {
		s.mu.Lock()
		b := s.pending
		if len(b) == 0 {
			s.draining = false
			s.mu.Unlock()
			return nil
		}
		s.pending = nil // an idle connection keeps no buffer
		s.draining = true
		s.mu.Unlock()
		if _, err := s.Conn.Write(b); err != nil {
			s.mu.Lock()
			s.draining = false
			s.mu.Unlock()
			return err
		}
	}
}
