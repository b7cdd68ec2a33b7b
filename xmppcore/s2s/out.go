package s2s

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/xmppcore/stanza"
)

// outConn is the outgoing stream of one (local, remote) pair: its queue,
// and the goroutine (run) that connects and then writes.
type outConn struct {
	m  *Manager
	p  pair
	in *inConn // set: attached to this incoming bidirectional stream, not a connection of its own

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

// run connects (or, attached to an incoming bidirectional stream, uses
// that), writes until the stream is idle, fails or the server stops, then
// hands back what was left: sent again on a new stream once, else bounced.
func (c *outConn) run() {
	defer c.m.wg.Done()
	var left []item
	if c.in != nil {
		left = c.pump(transport{write: c.in.send, closed: c.in.done})
	} else {
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
		c.m.log.Info("s2s: outgoing stream ready", "local", c.p.local, "remote", c.p.remote, "tls", s.tls,
			"peer_verified", s.peerVerified, "bidi", s.bidi)
		closed := make(chan struct{})
		go c.read(s, closed)
		left = c.pump(transport{
			write: func(b []byte) error {
				s.raw.SetWriteDeadline(time.Now().Add(c.m.cfg.ConnectTimeout))
				return s.write(b)
			},
			closed: closed,
			end:    []byte("</stream:stream>"),
		})
		if s.bidi {
			// The peer may still be sending on it: read what it sent
			// before it saw our end, as an incoming stream would.
			select {
			case <-closed:
			case <-time.After(closeGrace):
			}
		}
		s.raw.Close()
		<-closed
	}
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

// read reads the outgoing stream until it ends, then closes closed. The
// peer sends nothing on it unless it is bidirectional (XEP-0288); then its
// stanzas, which must be from the remote domain to the local one, are
// routed like those of an incoming stream.
func (c *outConn) read(s *stream, closed chan struct{}) {
	defer close(closed)
	var refusals *rate.Limiter
	for {
		el, err := s.next()
		if err != nil {
			c.m.log.Debug("s2s: outgoing stream ended by peer", "remote", c.p.remote, "err", err)
			return
		}
		if !s.bidi || el.Space != stanza.NSServer {
			continue // dialback requests for other domains and the like: not on this stream
		}
		from, to, err := checkAddresses(el)
		if err == nil && (from.Domain() != c.p.remote || to.Domain() != c.p.local) {
			err = &streamErr{"invalid-from", "a bidirectional stream carries stanzas from " + c.p.remote + " to " + c.p.local + " only"}
		}
		if err == nil {
			err = c.m.receive(el, from, to, &refusals)
		}
		if se := (*streamErr)(nil); errors.As(err, &se) {
			c.m.log.Info("s2s: closing outgoing stream", "remote", c.p.remote, "err", se)
			s.write(append(stanza.StreamError(se.cond, se.text), "</stream:stream>"...))
			s.raw.Close()
		}
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
	if err := s.requestBidi(); err != nil {
		s.raw.Close()
		return nil, err
	}
	if err := s.authenticate(); err != nil {
		c.m.m.authFail.Inc()
		s.raw.Close()
		return nil, err
	}
	s.clearDeadline()
	return s, nil
}

// transport is where an outgoing stream writes: a connection of its own,
// or an incoming bidirectional stream.
type transport struct {
	write  func([]byte) error // with a write deadline
	closed <-chan struct{}    // the stream has ended
	end    []byte             // written when leaving: the closing tag, or nil to leave the stream open
}

// pump writes queued stanzas until the stream goes idle, ends or the
// server stops; it returns what it could not write.
func (c *outConn) pump(t transport) []item {
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
			if err := t.write(buf); err != nil {
				c.m.log.Info("s2s: write failed", "remote", c.p.remote, "err", err)
				return q
			}
			c.m.m.out.Add(len(q))
			idle.Reset(c.m.cfg.IdleTimeout)
			continue
		}
		select {
		case <-c.wake:
		case <-t.closed:
			return nil
		case <-idle.C:
			c.m.log.Debug("s2s: closing idle stream", "remote", c.p.remote)
			if t.end != nil {
				t.write(t.end)
			}
			return nil
		case <-c.quit:
			// Shutdown: write what is queued, then close.
			q := c.take()
			buf = buf[:0]
			for _, it := range q {
				buf = stanza.AppendForPeer(buf, it.st)
			}
			t.write(append(buf, t.end...))
			return nil
		}
	}
}

func isRefused(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" && !oe.Timeout()
}
