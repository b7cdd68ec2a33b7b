package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
)

// TCPConfig configures a BRLINK bearer over TCP: length-prefixed frames,
// for IP and satellite links, and for tests. Exactly one of Connect and
// Listen is set.
type TCPConfig struct {
	BRLINKConfig
	// Connect dials this address (host:port), again with backoff after
	// each loss.
	Connect string
	// Listen accepts on this address; one connection is used at a time,
	// and a new one replaces the old (the peer reconnected).
	Listen string
	// MTU is the largest frame sent (2048, the SIS default, so frames are
	// the same as over HF).
	MTU int
	// LengthBytes is the size of the big-endian length before each frame:
	// 2 (default) or 4.
	LengthBytes int
	// DialTimeout bounds one connection attempt (30 s); WriteTimeout one
	// frame's write (30 s).
	DialTimeout  time.Duration
	WriteTimeout time.Duration
}

// TCPBearer is a BRLINK bearer over TCP.
type TCPBearer struct {
	*BRLINKBearer
	ln net.Listener
}

// NewTCPBearer checks the configuration and, with Listen, starts
// listening, so Addr is known before Run.
func NewTCPBearer(cfg TCPConfig) (*TCPBearer, error) {
	if (cfg.Connect == "") == (cfg.Listen == "") {
		return nil, errors.New("relay: BRLINK TCP: set exactly one of connect and listen")
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 2048
	}
	if cfg.LengthBytes == 0 {
		cfg.LengthBytes = 2
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	switch {
	case cfg.LengthBytes != 2 && cfg.LengthBytes != 4:
		return nil, fmt.Errorf("relay: BRLINK TCP: length prefix of %d bytes: want 2 or 4", cfg.LengthBytes)
	case cfg.MTU < minMTU || cfg.LengthBytes == 2 && cfg.MTU > 0xFFFF:
		return nil, fmt.Errorf("relay: BRLINK TCP: MTU %d out of range", cfg.MTU)
	}
	c := &tcpCarrier{cfg: cfg, quit: make(chan struct{})}
	t := &TCPBearer{}
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("relay: BRLINK TCP: %w", err)
		}
		c.ln, t.ln = ln, ln
		c.conns = make(chan net.Conn, 1)
	}
	b, err := newBRLINKBearer(cfg.BRLINKConfig, carrierTraits{ordered: true}, c)
	if err != nil {
		if c.ln != nil {
			c.ln.Close()
		}
		return nil, err
	}
	t.BRLINKBearer = b
	return t, nil
}

// Addr is the listening address, or nil for a connecting bearer.
func (t *TCPBearer) Addr() net.Addr {
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

type tcpCarrier struct {
	cfg   TCPConfig
	ln    net.Listener
	conns chan net.Conn // accepted, not yet taken (at most one)
	once  sync.Once
	quit  chan struct{}
}

func (c *tcpCarrier) Dial(ctx context.Context) (brlinkConn, error) {
	if c.ln == nil {
		d := net.Dialer{Timeout: c.cfg.DialTimeout}
		nc, err := d.DialContext(ctx, "tcp", c.cfg.Connect)
		if err != nil {
			return nil, fmt.Errorf("relay: BRLINK TCP: %w", err)
		}
		return newTCPConn(nc, c.cfg), nil
	}
	c.once.Do(func() { go c.accept() })
	select {
	case nc := <-c.conns:
		return newTCPConn(nc, c.cfg), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("relay: BRLINK TCP accept: %w", ctx.Err())
	case <-c.quit:
		return nil, errors.New("relay: BRLINK TCP: listener closed")
	}
}

// accept owns the listener: each new connection closes the one before,
// since only one peer is expected and a new connection means it came back.
func (c *tcpCarrier) accept() {
	var prev net.Conn
	defer func() {
		if prev != nil {
			prev.Close()
		}
	}()
	for {
		nc, err := c.ln.Accept()
		if err != nil {
			return
		}
		if prev != nil {
			prev.Close()
		}
		prev = nc
		select {
		case old := <-c.conns: // never taken: superseded
			old.Close()
		default:
		}
		c.conns <- nc // this goroutine is the only sender and just made room
	}
}

func (c *tcpCarrier) Close() {
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	if c.ln != nil {
		c.ln.Close()
	}
}

// tcpConn carries length-prefixed frames on one TCP connection.
type tcpConn struct {
	c       net.Conn
	cfg     TCPConfig
	events  chan carrierEvent
	quit    chan struct{}
	close   sync.Once
	err     error // set by the reader before it closes events
	maxRead int
}

func newTCPConn(nc net.Conn, cfg TCPConfig) *tcpConn {
	t := &tcpConn{c: nc, cfg: cfg, events: make(chan carrierEvent), quit: make(chan struct{}),
		maxRead: max(cfg.MTU, 0xFFFF)}
	go t.read()
	return t
}

func (t *tcpConn) MTU() int                    { return t.cfg.MTU }
func (t *tcpConn) Events() <-chan carrierEvent { return t.events }
func (t *tcpConn) Err() error                  { return t.err }

func (t *tcpConn) Close() {
	t.close.Do(func() {
		close(t.quit)
		t.c.Close()
	})
}

func (t *tcpConn) Write(ctx context.Context, frame []byte, _ brlink.Precedence) error {
	if len(frame) > t.cfg.MTU {
		return fmt.Errorf("relay: BRLINK TCP: frame of %d bytes over the MTU %d", len(frame), t.cfg.MTU)
	}
	b := make([]byte, 0, t.cfg.LengthBytes+len(frame))
	if t.cfg.LengthBytes == 2 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(frame)))
	} else {
		b = binary.BigEndian.AppendUint32(b, uint32(len(frame)))
	}
	b = append(b, frame...)
	t.c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	stop := context.AfterFunc(ctx, func() { t.c.SetWriteDeadline(time.Now()) })
	defer stop()
	if _, err := t.c.Write(b); err != nil {
		return fmt.Errorf("relay: BRLINK TCP write: %w", err)
	}
	return nil
}

func (t *tcpConn) read() {
	defer close(t.events)
	hdr := make([]byte, t.cfg.LengthBytes)
	for {
		if _, err := io.ReadFull(t.c, hdr); err != nil {
			t.err = fmt.Errorf("relay: BRLINK TCP read: %w", err)
			return
		}
		var n int
		if len(hdr) == 2 {
			n = int(binary.BigEndian.Uint16(hdr))
		} else {
			n = int(binary.BigEndian.Uint32(hdr))
		}
		if n > t.maxRead {
			t.err = fmt.Errorf("relay: BRLINK TCP: frame of %d bytes announced, limit %d", n, t.maxRead)
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(t.c, b); err != nil {
			t.err = fmt.Errorf("relay: BRLINK TCP read: %w", err)
			return
		}
		select {
		case t.events <- carrierEvent{frame: b}:
		case <-t.quit:
			t.err = errors.New("relay: BRLINK TCP: closed")
			return
		}
	}
}
