package sis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ClientConfig says how a client binds and behaves. Zero values take the
// defaults noted.
type ClientConfig struct {
	SAP     uint8   // 0–15
	Rank    uint8   // 0–14 (15 is for management clients)
	Service Service // the bind's service type; Mode must not be ModeDefault

	SendQueue     int           // UNIDATA requests waiting to be sent (64)
	EventQueue    int           // primitives waiting for the upper layer (64)
	KeepAliveIdle time.Duration // silence before we send S_KEEP_ALIVE (120 s, the minimum interval)
	KeepAliveWait time.Duration // how long we wait for the reply (10 s + RTT: 15 s)
	WriteTimeout  time.Duration // one write to the node (30 s)
	MaxFrame      int           // largest frame accepted (MaxSize)
	Logger        *slog.Logger
}

func (c *ClientConfig) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.SendQueue, 64)
	def(&c.EventQueue, 64)
	defDur(&c.KeepAliveIdle, 120*time.Second)
	defDur(&c.KeepAliveWait, 15*time.Second)
	defDur(&c.WriteTimeout, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Unidata is one U_PDU to send.
type Unidata struct {
	Dest      Addr
	DestSAP   uint8
	Priority  uint8   // 0–15; ignored when Expedited
	Service   Service // Mode 0 (ModeDefault): the bind's service type
	TTL       uint32  // 20 bits, 0 = the node's maximum
	Expedited bool
	Data      []byte
}

// Client errors.
var (
	ErrTooLarge = errors.New("sis: U_PDU larger than the MTU")
	ErrDead     = errors.New("sis: no keep-alive reply from the node")
	ErrClosed   = errors.New("sis: client closed")
)

// BindError is a bind the node refused (S_BIND_REJECTED).
type BindError struct{ Reason uint8 }

func (e *BindError) Error() string {
	if e.Reason == BindRejectSAPInUse {
		return "sis: bind rejected: SAP already in use"
	}
	return fmt.Sprintf("sis: bind rejected, reason %d", e.Reason)
}

// UnbindError is the node unbinding us (S_UNBIND_INDICATION).
type UnbindError struct{ Reason uint8 }

func (e *UnbindError) Error() string {
	return fmt.Sprintf("sis: unbound by the node, reason %d", e.Reason)
}

// Client is a bound SIS client connection (PROTOCOLS.md §2.3.6). One
// goroutine owns its state (flow control, keep-alive); a reader and a
// writer goroutine move frames; queues are bounded.
type Client struct {
	cfg    ClientConfig
	conn   net.Conn
	mtu    int
	sendq  chan Unidata
	events chan *Primitive
	done   chan struct{}
	cancel context.CancelFunc

	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
}

// Dial connects to a SIS node at addr and binds (see Bind); ctx bounds
// the connect and the bind.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sis: dial %s: %w", addr, err)
	}
	c, err := Bind(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Bind sends S_BIND_REQUEST on conn and waits for the answer. On
// S_BIND_ACCEPTED it returns the running client, which owns conn until
// Close or the connection's end (ctx bounds the bind only, as in
// net.Dialer.DialContext); a refusal is a *BindError.
func Bind(ctx context.Context, conn net.Conn, cfg ClientConfig) (*Client, error) {
	cfg.defaults()
	if cfg.SAP > 15 || cfg.Rank > 15 || cfg.Service.Mode == ModeDefault {
		return nil, fmt.Errorf("sis: bind SAP %d rank %d mode %d: %w", cfg.SAP, cfg.Rank, cfg.Service.Mode, ErrField)
	}
	frame, err := Append(nil, &Primitive{Type: BindRequest, SAP: cfg.SAP, Rank: cfg.Rank, Service: cfg.Service})
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write(frame); err != nil {
		return nil, fmt.Errorf("sis: sending bind request: %w", err)
	}
	r := NewReader(conn, cfg.MaxFrame)
	var mtu int
	for mtu == 0 {
		p, err := r.Read()
		switch {
		case IsInvalid(err):
			cfg.Logger.Warn("sis: invalid primitive while binding", "err", err)
			continue
		case err != nil:
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("sis: waiting for the bind answer: %w", err)
		}
		switch p.Type {
		case BindAccepted:
			mtu = int(p.MTU)
			if mtu == 0 {
				return nil, fmt.Errorf("sis: bind accepted with MTU 0: %w", ErrField)
			}
		case BindRejected:
			return nil, &BindError{Reason: p.Reason}
		case KeepAlive:
			conn.Write(keepAliveFrame)
		default:
			cfg.Logger.Debug("sis: ignoring primitive while binding", "type", p.Type)
		}
	}
	if !stop() {
		return nil, fmt.Errorf("sis: bind: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Client{
		cfg: cfg, conn: conn, mtu: mtu, cancel: cancel,
		sendq:  make(chan Unidata, cfg.SendQueue),
		events: make(chan *Primitive, cfg.EventQueue),
		done:   make(chan struct{}),
	}
	cfg.Logger.Info("sis: bound", "sap", cfg.SAP, "mtu", mtu, "node", conn.RemoteAddr())
	go c.run(ctx, r)
	return c, nil
}

var keepAliveFrame = []byte{preamble0, preamble1, Version, 0, 1, byte(KeepAlive)}

// MTU is the largest U_PDU the node accepts, from S_BIND_ACCEPTED.
func (c *Client) MTU() int { return c.mtu }

// Events carries what the node reports: indications, confirms,
// rejections, flow changes, subnet availability, hard-link and management
// primitives. It is closed when the client stops; read it promptly, as a
// full queue stops reading from the node.
func (c *Client) Events() <-chan *Primitive { return c.events }

// Done is closed when the client has stopped; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: ErrClosed after Close, a *UnbindError,
// ErrDead, or the connection's error.
func (c *Client) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *Client) setErr(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
}

// Send queues a U_PDU. It blocks while the queue is full (flow control
// off or a slow node) until ctx ends or the client stops; a U_PDU over
// the MTU is refused with ErrTooLarge and never sent.
func (c *Client) Send(ctx context.Context, u Unidata) error {
	if len(u.Data) > c.mtu {
		return fmt.Errorf("sis: %d bytes, MTU %d: %w", len(u.Data), c.mtu, ErrTooLarge)
	}
	select {
	case <-c.done:
		return fmt.Errorf("sis: send: %w", c.Err())
	default:
	}
	select {
	case c.sendq <- u:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sis: send: %w", ctx.Err())
	case <-c.done:
		return fmt.Errorf("sis: send: %w", c.Err())
	}
}

// Close unbinds (S_UNBIND_REQUEST) and closes the connection.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.setErr(ErrClosed)
		c.cancel()
	})
	<-c.done
	return nil
}

type frameOut struct {
	b       []byte
	timeout time.Duration
}

// run is the goroutine that owns the client's state.
func (c *Client) run(ctx context.Context, r *Reader) {
	log := c.cfg.Logger
	in := make(chan *Primitive)
	rerr := make(chan error, 1)
	out := make(chan frameOut) // unbuffered: FLOW_OFF holds at most one request in flight
	werr := make(chan error, 1)
	quit := make(chan struct{})
	readerDone, writerDone := make(chan struct{}), make(chan struct{})
	go func() { // reader
		defer close(readerDone)
		for {
			p, err := r.Read()
			if IsInvalid(err) {
				log.Warn("sis: invalid primitive from the node", "err", err)
				continue
			}
			if err != nil {
				rerr <- err
				return
			}
			select {
			case in <- p:
			case <-quit:
				return
			}
		}
	}()
	go func() { // writer: until out is closed or a write fails
		defer close(writerDone)
		for f := range out {
			c.conn.SetWriteDeadline(time.Now().Add(f.timeout))
			if _, err := c.conn.Write(f.b); err != nil {
				werr <- fmt.Errorf("sis: write: %w", err)
				for range out {
				}
				return
			}
		}
	}()
	graceful := false
	defer func() {
		if !graceful {
			c.conn.Close()
		}
		close(out)
		<-writerDone // a graceful close lets the unbind request out
		c.conn.Close()
		close(quit)
		<-readerDone
		close(c.events)
		close(c.done)
	}()

	write := func(b []byte) bool {
		select {
		case out <- frameOut{b, c.cfg.WriteTimeout}:
			return true
		case err := <-werr:
			c.setErr(err)
		case <-ctx.Done():
		}
		return false
	}
	deliver := func(p *Primitive) bool {
		select {
		case c.events <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}

	flowOn := true
	lastRx, lastKA := time.Now(), time.Time{}
	var awaiting time.Time // when our unanswered keep-alive went out
	tick := time.NewTicker(min(c.cfg.KeepAliveIdle, c.cfg.KeepAliveWait) / 4)
	defer tick.Stop()
	for {
		sendq := c.sendq
		if !flowOn {
			sendq = nil
		}
		select {
		case <-ctx.Done():
			c.setErr(ErrClosed)
			select {
			case out <- frameOut{[]byte{preamble0, preamble1, Version, 0, 1, byte(UnbindRequest)}, time.Second}:
				graceful = true
			case <-werr:
			}
			return
		case err := <-rerr:
			c.setErr(fmt.Errorf("sis: connection to the node: %w", err))
			return
		case err := <-werr:
			c.setErr(err)
			return
		case now := <-tick.C:
			switch {
			case !awaiting.IsZero() && now.Sub(awaiting) > c.cfg.KeepAliveWait:
				c.setErr(ErrDead)
				return
			case awaiting.IsZero() && now.Sub(lastRx) >= c.cfg.KeepAliveIdle && now.Sub(lastKA) >= c.cfg.KeepAliveIdle:
				awaiting, lastKA = now, now
				if !write(keepAliveFrame) {
					return
				}
			}
		case u := <-sendq:
			t := UnidataRequest
			if u.Expedited {
				t = ExpeditedUnidataRequest
			}
			b, err := Append(nil, &Primitive{Type: t, Priority: u.Priority, SAP: u.DestSAP, Addr: u.Dest,
				Service: u.Service, TTL: u.TTL, Data: u.Data})
			if err != nil {
				log.Warn("sis: unsendable U_PDU dropped", "err", err)
				continue
			}
			if !write(b) {
				return
			}
		case p := <-in:
			lastRx = time.Now()
			switch p.Type {
			case KeepAlive:
				if !awaiting.IsZero() {
					awaiting = time.Time{} // the answer to ours
					continue
				}
				if !write(keepAliveFrame) {
					return
				}
				continue
			case DataFlowOff:
				flowOn = false
			case DataFlowOn:
				flowOn = true
			case UnbindIndication:
				c.setErr(&UnbindError{Reason: p.Reason})
				return
			}
			if !deliver(p) {
				return
			}
		}
	}
}
