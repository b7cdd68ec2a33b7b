package s2s

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/stanza"
)

// outConn is the outgoing stream of one (local, remote) pair: its queue,
// and the goroutine (run) that connects and then writes.
type outConn struct {
	m *Manager
	p pair

	mu   sync.Mutex
	q    []item
	wake chan struct{} // capacity 1: something was queued
	quit chan struct{} // closed by stop
	once sync.Once
}

func newOut(m *Manager, p pair) *outConn {
	return &outConn{m: m, p: p, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// enqueue adds it unless the queue is full. Called with m.mu held.
func (c *outConn) enqueue(it item) bool {
	c.mu.Lock()
	if len(c.q) >= c.m.cfg.Queue {
		c.mu.Unlock()
		return false
	}
	c.q = append(c.q, it)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

func (c *outConn) take() []item {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.q
	c.q = nil
	return q
}

// drain empties the queue for good. Called with m.mu held.
func (c *outConn) drain() []item { return c.take() }

func (c *outConn) stop() { c.once.Do(func() { close(c.quit) }) }

// run connects, writes until the stream is idle, fails or the server
// stops, then hands back what was left: sent again on a new stream once,
// else bounced.
func (c *outConn) run() {
	defer c.m.wg.Done()
	ctx, cancel := context.WithTimeout(c.m.ctx, c.m.cfg.ConnectTimeout)
	s, err := c.connect(ctx)
	cancel()
	if err != nil {
		cond := "remote-server-timeout"
		if errors.Is(err, errNoService) || isRefused(err) {
			cond = "remote-server-not-found"
		}
		c.m.log.Info("s2s: cannot reach remote server", "local", c.p.local, "remote", c.p.remote, "err", err)
		for _, it := range c.m.forget(c) {
			c.m.bounce(it, stanza.Cancel, cond)
		}
		return
	}
	c.m.log.Info("s2s: outgoing stream ready", "local", c.p.local, "remote", c.p.remote, "tls", s.tls, "peer_verified", s.peerVerified)
	left := c.write(s)
	s.raw.Close()
	left = append(left, c.m.forget(c)...)
	for _, it := range left {
		if it.retried {
			c.m.bounce(it, stanza.Wait, "remote-server-timeout")
			continue
		}
		it.retried = true
		c.m.send(it)
	}
}

func (c *outConn) connect(ctx context.Context) (*stream, error) {
	s, err := c.m.dial(ctx, c.p.local, c.p.remote)
	if err != nil {
		return nil, err
	}
	if s.rule.CertificateOnly && !s.peerVerified {
		s.raw.Close()
		return nil, &remoteError{"the peer's certificate does not verify"}
	}
	if err := s.authenticate(); err != nil {
		c.m.m.authFail.Inc()
		s.raw.Close()
		return nil, err
	}
	s.clearDeadline()
	return s, nil
}

// write sends queued stanzas until the stream goes idle, fails or the
// server stops; it returns what it could not write.
func (c *outConn) write(s *stream) []item {
	closed := make(chan struct{})
	go func() {
		// The peer sends nothing we need on this stream, but a stream
		// error or its end must be noticed.
		for {
			if _, err := s.next(); err != nil {
				c.m.log.Debug("s2s: outgoing stream ended by peer", "remote", c.p.remote, "err", err)
				close(closed)
				return
			}
		}
	}()
	idle := time.NewTimer(c.m.cfg.IdleTimeout)
	defer idle.Stop()
	var buf []byte
	for {
		q := c.take()
		if len(q) > 0 {
			buf = buf[:0]
			for _, it := range q {
				buf = stanza.AppendForPeer(buf, it.st)
			}
			s.raw.SetWriteDeadline(time.Now().Add(c.m.cfg.ConnectTimeout))
			if err := s.write(buf); err != nil {
				c.m.log.Info("s2s: write failed", "remote", c.p.remote, "err", err)
				return q
			}
			c.m.m.out.Add(len(q))
			idle.Reset(c.m.cfg.IdleTimeout)
			continue
		}
		select {
		case <-c.wake:
		case <-closed:
			return nil
		case <-idle.C:
			c.m.log.Debug("s2s: closing idle stream", "remote", c.p.remote)
			s.write([]byte("</stream:stream>"))
			return nil
		case <-c.quit:
			// Shutdown: write what is queued, then close.
			q := c.take()
			buf = buf[:0]
			for _, it := range q {
				buf = stanza.AppendForPeer(buf, it.st)
			}
			s.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
			s.write(append(buf, "</stream:stream>"...))
			return nil
		}
	}
}

func isRefused(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" && !oe.Timeout()
}
