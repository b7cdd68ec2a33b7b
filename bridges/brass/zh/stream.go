package zh

import (
	"compress/zlib"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/relay"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Stream is a XEP-0361 zero-handshake link to one peer over TCP or TLS;
// it implements relay.Bearer. One goroutine (Run) owns the connections
// and the queue; each connection has a reader and a writer goroutine.
type Stream struct {
	cfg         StreamConfig
	local, peer domainSet
	log         *slog.Logger
	clientTLS   *tls.Config
	serverTLS   *tls.Config

	reqs    chan sendReq
	admit   chan *conn
	cev     chan connEvent
	dials   chan dialResult
	acks    chan *conn
	stopped chan struct{}
	running atomic.Bool
	nextID  atomic.Uint64
}

// NewStream checks the agreement and returns the bearer; Run starts it.
func NewStream(cfg StreamConfig) (*Stream, error) {
	cfg.defaults()
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("zh: peer %s: %w", cfg.Name, err)
	}
	local, err := newDomainSet("local", cfg.LocalDomains)
	if err != nil {
		return nil, fmt.Errorf("zh: peer %s: %w", cfg.Name, err)
	}
	peer, err := newDomainSet("peer", cfg.PeerDomains)
	if err != nil {
		return nil, fmt.Errorf("zh: peer %s: %w", cfg.Name, err)
	}
	s := &Stream{
		cfg: cfg, local: local, peer: peer,
		log:     cfg.Logger.With("peer", cfg.Name, "transport", "xep-0361"),
		reqs:    make(chan sendReq),
		admit:   make(chan *conn),
		cev:     make(chan connEvent),
		dials:   make(chan dialResult),
		acks:    make(chan *conn),
		stopped: make(chan struct{}),
	}
	s.clientTLS, s.serverTLS = cfg.tlsConfigs(peer)
	return s, nil
}

// Send queues one stanza. It fails with ErrDown while no connection we
// may send on exists, and with ErrBadItem for a payload that is not one
// stanza addressed from a local domain to a peer domain.
func (s *Stream) Send(ctx context.Context, it *relay.Item) error {
	if len(it.Payload) > s.cfg.MaxStanza {
		return fmt.Errorf("zh: %d bytes, limit %d: %w", len(it.Payload), s.cfg.MaxStanza, relay.ErrTooLarge)
	}
	if err := checkOutgoing(it.Payload, s.cfg.MaxStanza, s.local, s.peer); err != nil {
		return err
	}
	r := sendReq{it: it, reply: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.reply
	case <-ctx.Done():
		return fmt.Errorf("zh: send: %w", ctx.Err())
	case <-s.stopped:
		return relay.ErrDown
	}
}

// Accept hands the bearer a connection the peer opened (from a shared
// listener). It checks the source address and runs the TLS handshake
// when the agreement asks for them, and returns once the connection is
// in use or refused; ctx bounds the handshake and the hand-off.
func (s *Stream) Accept(ctx context.Context, nc net.Conn) error {
	if s.cfg.Direction == Initiate {
		nc.Close()
		return fmt.Errorf("zh: peer %s: the agreement lets only us connect", s.cfg.Name)
	}
	if err := s.cfg.checkIP(nc.RemoteAddr()); err != nil {
		nc.Close()
		return fmt.Errorf("zh: peer %s: %w", s.cfg.Name, err)
	}
	if s.serverTLS != nil {
		tc := tls.Server(nc, s.serverTLS)
		hctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return fmt.Errorf("zh: peer %s: TLS from %s: %w", s.cfg.Name, nc.RemoteAddr(), err)
		}
		nc = tc
	}
	c := s.newConn(nc, false)
	select {
	case s.admit <- c:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("zh: peer %s: hand-off: %w", s.cfg.Name, ctx.Err())
	case <-s.stopped:
		nc.Close()
		return fmt.Errorf("zh: peer %s: %w", s.cfg.Name, relay.ErrDown)
	}
}

// conn is one TCP (or TLS) connection with the peer.
type conn struct {
	id       uint64
	nc       net.Conn
	outbound bool
	out      chan frame    // to the writer; only the Run goroutine sends and closes
	gone     chan struct{} // closed when Run drops the connection
	since    time.Time
	log      *slog.Logger

	// Owned by the Run goroutine.
	closing bool
	rx      uint32      // stanzas received (XEP-0198 h, before the relay's acks)
	rxAcked uint32      // of those, acknowledged by the relay
	owed    bool        // an <r/> waits for rxAcked to reach rx
	unacked []brlink.ID // SM: written, not yet covered by the peer's h
	acked   uint32      // SM: the peer's last h
	sinceR  int         // stanzas written since our last <r/>
}

// outRoom is the writer queue length; the last ctlRoom places are kept
// for control frames so they never wait behind stanzas.
const (
	outRoom = 32
	ctlRoom = 4
)

func (s *Stream) newConn(nc net.Conn, outbound bool) *conn {
	id := s.nextID.Add(1)
	dir := "in"
	if outbound {
		dir = "out"
	}
	return &conn{id: id, nc: nc, outbound: outbound, out: make(chan frame, outRoom),
		gone: make(chan struct{}), since: time.Now(),
		log: s.log.With("conn", id, "dir", dir, "remote", nc.RemoteAddr().String())}
}

// frame is one write: a stanza, a nonza, or the stream close.
type frame struct {
	b      []byte
	id     brlink.ID
	stanza bool
	final  bool // after b, end our direction of the stream
}

type connEventKind int

const (
	evStanza       connEventKind = iota + 1 // item, from the reader
	evDropped                               // lenient mode dropped a stanza (it still counts for h)
	evR                                     // <r/>
	evA                                     // <a h/>
	evEnd                                   // </stream:stream> from the peer
	evPeerError                             // a stream error from the peer
	evBad                                   // the peer broke the rules: send the stream error cond
	evLost                                  // read or write failed, or EOF
	evWritten                               // a stanza frame was written
	evCloseTimeout                          // the peer did not close in time
)

type connEvent struct {
	c    *conn
	kind connEventKind
	item *relay.Item
	h    uint32
	id   brlink.ID
	cond string
	text string
	err  error
}

type dialResult struct {
	c   *conn
	err error
}

// report passes e to the Run goroutine unless the connection was dropped.
func (s *Stream) report(e connEvent) bool {
	select {
	case s.cev <- e:
		return true
	case <-e.c.gone:
		return false
	}
}

// streamState is what the Run goroutine owns.
type streamState struct {
	conns   map[*conn]struct{}
	send    *conn
	txq     []*relay.Item
	dialing bool
	redial  *time.Timer
	armed   bool // redial is set
	bo      backoff
	evq     evQueue
}

// Run keeps the link up until ctx ends.
func (s *Stream) Run(ctx context.Context, ev chan<- relay.Event) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("zh: Run called twice")
	}
	defer close(s.stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before wg.Wait: stops the dialer and hand-offs
	if s.cfg.Listen != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("zh: peer %s: listen: %w", s.cfg.Name, err)
		}
		s.log.Info("zh: listening", "addr", ln.Addr().String())
		context.AfterFunc(ctx, func() { ln.Close() })
		wg.Go(func() { s.acceptLoop(ctx, ln, &wg) })
	}
	st := &streamState{conns: map[*conn]struct{}{}, redial: time.NewTimer(0), armed: true,
		bo: backoff{min: s.cfg.MinBackoff, max: s.cfg.MaxBackoff}, evq: evQueue{max: 256}}
	defer st.redial.Stop()
	for {
		s.pump(st)
		var cev chan connEvent
		var admit chan *conn
		if !st.evq.full() {
			cev, admit = s.cev, s.admit
		}
		var reqs chan sendReq
		if st.send == nil || len(st.txq) < s.cfg.SendQueue {
			reqs = s.reqs
		}
		select {
		case <-ctx.Done():
			s.shutdown(st)
			return nil
		case r := <-reqs:
			if st.send == nil {
				r.reply <- relay.ErrDown
				continue
			}
			st.txq = append(st.txq, r.it)
			r.reply <- nil
		case c := <-admit:
			s.start(st, c, &wg)
		case d := <-s.dials:
			st.dialing = false
			if d.err != nil {
				wait := st.bo.next()
				s.log.Warn("zh: connect failed", "err", d.err, "retry_in", wait.Round(time.Millisecond))
				st.redial.Reset(wait)
				st.armed = true
				continue
			}
			s.start(st, d.c, &wg)
		case <-st.redial.C:
			st.armed = false
			if s.needDial(st) {
				st.dialing = true
				s.startDial(ctx, &wg)
			}
		case c := <-s.acks:
			if _, ok := st.conns[c]; ok {
				c.rxAcked++
				s.payAck(c)
			}
		case e := <-cev:
			if _, ok := st.conns[e.c]; ok {
				s.handle(st, e)
			}
		case st.evq.out(ev) <- st.evq.head():
			st.evq.pop()
		}
	}
}

// maxHandshakes bounds the connections being admitted at once, so a
// flood of connections cannot pile up goroutines.
const maxHandshakes = 8

func (s *Stream) acceptLoop(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	sem := make(chan struct{}, maxHandshakes)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Error("zh: accept", "err", err)
			select { // a transient failure (out of descriptors): pause, not spin
			case <-time.After(100 * time.Millisecond):
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			s.log.Warn("zh: too many connections being admitted; refusing", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.Accept(ctx, nc); err != nil {
				s.log.Warn("zh: connection refused", "err", err)
			}
		})
	}
}

func (s *Stream) startDial(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		defer cancel()
		var d net.Dialer
		nc, err := d.DialContext(dctx, "tcp", s.cfg.Connect)
		if err == nil && s.clientTLS != nil {
			tc := tls.Client(nc, s.clientTLS)
			if err = tc.HandshakeContext(dctx); err != nil {
				nc.Close()
				err = fmt.Errorf("TLS: %w", err)
			}
			nc = tc
		}
		var r dialResult
		if err != nil {
			r.err = fmt.Errorf("zh: connect to %s: %w", s.cfg.Connect, err)
		} else {
			r.c = s.newConn(nc, true)
		}
		select {
		case s.dials <- r:
		case <-ctx.Done():
			if r.c != nil {
				r.c.nc.Close()
			}
		}
	})
}

// needDial: we initiate, have no outbound connection and no dial under
// way, and (with Both) no inbound connection we could send on instead.
func (s *Stream) needDial(st *streamState) bool {
	if s.cfg.Direction == Accept || st.dialing || st.armed {
		return false
	}
	for c := range st.conns {
		if c.closing {
			continue
		}
		if c.outbound || s.cfg.Direction == Both {
			return false
		}
	}
	return true
}

// start puts an admitted connection to work.
func (s *Stream) start(st *streamState, c *conn, wg *sync.WaitGroup) {
	st.conns[c] = struct{}{}
	c.log.Info("zh: connected")
	wg.Go(func() { s.reader(c) })
	wg.Go(func() { s.writer(c) })
	if c.outbound && st.send != nil && !st.send.outbound {
		// Both sides connected at once: each sends only on the
		// connection it opened (XEP-0361 rule 4).
		s.lose(st, errors.New("zh: moving to our own connection"))
	}
	s.pickSend(st)
}

// pickSend chooses the connection to send on, when none is in use: our
// own if we have one, else the peer's newest.
func (s *Stream) pickSend(st *streamState) {
	if st.send != nil {
		return
	}
	var best *conn
	for c := range st.conns {
		if c.closing || (!c.outbound && s.cfg.Direction == Initiate) {
			continue
		}
		if best == nil || c.outbound && !best.outbound || c.outbound == best.outbound && c.id > best.id {
			best = c
		}
	}
	if best == nil {
		if s.needDial(st) {
			st.redial.Reset(st.bo.next())
			st.armed = true
		}
		return
	}
	st.send = best
	best.unacked, best.acked, best.sinceR = nil, 0, 0
	best.log.Info("zh: link up")
	st.evq.push(relay.Event{Kind: relay.Up})
}

// lose stops sending on the current connection: the relay sends again
// whatever was not acknowledged, after the next Up.
func (s *Stream) lose(st *streamState, cause error) {
	if st.send == nil {
		return
	}
	st.send.log.Info("zh: link down", "err", cause)
	st.send = nil
	clear(st.txq)
	st.txq = st.txq[:0]
	st.evq.push(relay.Event{Kind: relay.Down, Err: cause})
}

// pump moves queued stanzas to the sending connection's writer, keeping
// room for control frames, and asks for an SM ack after each batch.
func (s *Stream) pump(st *streamState) {
	c := st.send
	if c == nil {
		return
	}
	for len(st.txq) > 0 && len(c.out) < outRoom-ctlRoom {
		it := st.txq[0]
		st.txq[0] = nil
		st.txq = st.txq[1:]
		c.out <- frame{b: it.Payload, id: it.ID, stanza: true}
		if s.cfg.SM {
			c.unacked = append(c.unacked, it.ID)
			c.sinceR++
			if c.sinceR >= s.cfg.SMBatch {
				s.control(c, []byte("<r xmlns='"+nsSM+"'/>"))
				c.sinceR = 0
			}
		}
	}
	if len(st.txq) == 0 {
		st.txq = nil // let the backing array go
		if c.sinceR > 0 {
			s.control(c, []byte("<r xmlns='"+nsSM+"'/>"))
			c.sinceR = 0
		}
	}
}

// control queues a nonza; the reserved room means it waits only for a
// stuck writer, which is then given up on.
func (s *Stream) control(c *conn, b []byte) {
	select {
	case c.out <- frame{b: b}:
	default:
		c.log.Warn("zh: writer stuck; dropping the connection")
		c.nc.Close() // the reader and writer then report the loss
	}
}

// payAck answers an <r/> once the relay has taken every stanza received.
func (s *Stream) payAck(c *conn) {
	if c.owed && c.rxAcked == c.rx && !c.closing {
		c.owed = false
		s.control(c, []byte("<a xmlns='"+nsSM+"' h='"+strconv.FormatUint(uint64(c.rx), 10)+"'/>"))
	}
}

func (s *Stream) handle(st *streamState, e connEvent) {
	c := e.c
	switch e.kind {
	case evStanza:
		if s.cfg.SM {
			c.rx++
			var once sync.Once
			ack := func() {
				once.Do(func() {
					select {
					case s.acks <- c:
					case <-c.gone:
					case <-s.stopped:
					}
				})
			}
			st.evq.push(relay.Event{Kind: relay.Received, Item: e.item, Ack: ack})
			return
		}
		st.evq.push(relay.Event{Kind: relay.Received, Item: e.item})
	case evDropped:
		c.rx++
		c.rxAcked++
		s.payAck(c)
	case evR:
		c.owed = true
		s.payAck(c)
	case evA:
		if c != st.send {
			return // an answer for a connection we no longer send on
		}
		n := e.h - c.acked // XEP-0198 h wraps at 2^32
		if int64(n) > int64(len(c.unacked)) {
			c.log.Warn("zh: peer acknowledged more than we sent", "h", e.h, "outstanding", len(c.unacked))
			n = uint32(len(c.unacked))
		}
		c.acked = e.h
		if n > 0 {
			ids := append([]brlink.ID(nil), c.unacked[:n]...)
			c.unacked = c.unacked[n:]
			st.evq.push(relay.Event{Kind: relay.Acked, IDs: ids})
		}
	case evWritten:
		if !s.cfg.SM {
			st.evq.push(relay.Event{Kind: relay.Acked, IDs: []brlink.ID{e.id}})
		}
	case evEnd:
		c.log.Info("zh: peer closed the stream")
		s.closeConn(st, c, nil, errors.New("zh: peer closed the stream"))
	case evPeerError:
		c.log.Warn("zh: stream error from the peer", "error", e.text)
		s.closeConn(st, c, nil, fmt.Errorf("zh: stream error from the peer: %s", e.text))
	case evBad:
		c.log.Warn("zh: closing the stream with an error", "condition", e.cond, "text", e.text)
		s.closeConn(st, c, stanza.StreamError(e.cond, e.text), fmt.Errorf("zh: sent stream error %s", e.cond))
	case evLost:
		if !c.closing && !errors.Is(e.err, io.EOF) {
			c.log.Warn("zh: connection lost", "err", e.err)
		}
		s.drop(st, c, fmt.Errorf("zh: connection lost: %w", e.err))
	case evCloseTimeout:
		s.drop(st, c, errors.New("zh: peer did not close the stream"))
	}
}

// closeConn ends our direction (with a stream error first, if given),
// then waits for the peer's close or the timeout.
func (s *Stream) closeConn(st *streamState, c *conn, streamErr []byte, cause error) {
	if c.closing {
		return
	}
	if c == st.send {
		s.lose(st, cause)
	}
	c.closing = true
	b := streamErr // stanza.StreamError ends with the stream close
	if b == nil {
		b = []byte(streamClose)
	}
	select {
	case c.out <- frame{b: b, final: true}:
	default:
		c.nc.Close()
	}
	time.AfterFunc(s.cfg.CloseTimeout, func() {
		select {
		case s.cev <- connEvent{c: c, kind: evCloseTimeout}:
		case <-c.gone:
		}
	})
	s.pickSend(st)
}

// drop forgets a connection and closes it.
func (s *Stream) drop(st *streamState, c *conn, cause error) {
	if c == st.send {
		s.lose(st, cause)
	}
	delete(st.conns, c)
	close(c.gone)
	close(c.out)
	c.nc.Close()
	if c.outbound && time.Since(c.since) > s.cfg.MaxBackoff {
		st.bo.reset() // it worked for a while: reconnect promptly
	}
	s.pickSend(st)
}

// shutdown closes every connection gracefully, within CloseTimeout.
func (s *Stream) shutdown(st *streamState) {
	st.send = nil
	for c := range st.conns {
		if !c.closing {
			c.closing = true
			select {
			case c.out <- frame{b: []byte(streamClose), final: true}:
			default:
			}
		}
	}
	deadline := time.NewTimer(s.cfg.CloseTimeout)
	defer deadline.Stop()
	for len(st.conns) > 0 {
		select {
		case e := <-s.cev:
			_, ok := st.conns[e.c]
			switch e.kind {
			case evEnd, evPeerError, evBad, evLost: // the peer is done too
			default:
				ok = false
			}
			if ok {
				delete(st.conns, e.c)
				close(e.c.gone)
				close(e.c.out)
				e.c.nc.Close()
			}
		case <-deadline.C:
			for c := range st.conns {
				delete(st.conns, c)
				close(c.gone)
				close(c.out)
				c.nc.Close()
			}
		}
	}
}

// reader decodes the peer's stanzas and reports them; after a terminal
// event it keeps draining so that closing does not reset the connection
// and destroy our stream error in flight.
func (s *Stream) reader(c *conn) {
	var src io.Reader = c.nc
	if s.cfg.Compression == CompressDeflate {
		src = &lazyZlib{src: c.nc}
	}
	d := wire.NewDecoder(io.MultiReader(strings.NewReader(streamPrefix), src), wire.Limits{MaxStanza: s.cfg.MaxStanza})
	if _, err := d.Next(); err != nil { // the implied stream header
		s.report(connEvent{c: c, kind: evLost, err: err})
		return
	}
	for {
		e, more := s.readOne(c, d)
		if e.kind != 0 && !s.report(e) || e.kind == evLost {
			return
		}
		if !more {
			break
		}
	}
	io.Copy(io.Discard, c.nc)
	s.report(connEvent{c: c, kind: evLost, err: io.EOF})
}

// readOne reads one token; more is false after a terminal event.
func (s *Stream) readOne(c *conn, d *wire.Decoder) (e connEvent, more bool) {
	e.c = c
	tok, err := d.Next()
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			e.kind, e.cond, e.text = evBad, we.Condition, we.Text
			return e, false
		}
		e.kind, e.err = evLost, err
		return e, false
	}
	if tok.Kind == wire.StreamEnd {
		e.kind = evEnd
		return e, false
	}
	el := tok.Elem
	switch {
	case el.Space == stanza.NSStream && el.Local() == "error":
		e.kind, e.text = evPeerError, describeStreamError(el)
		return e, false
	case el.Space == nsSM && s.cfg.SM && el.Name == "r":
		e.kind = evR
	case el.Space == nsSM && s.cfg.SM && el.Name == "a":
		h, err := strconv.ParseUint(el.Attr("h"), 10, 32)
		if err != nil {
			e.kind, e.cond, e.text = evBad, "undefined-condition", "bad h in <a/>"
			return e, false
		}
		e.kind, e.h = evA, uint32(h)
	case isStanza(el):
		if cond := checkAddressing(el, s.peer, s.local); cond != "" {
			if s.cfg.Lenient {
				c.log.Warn("zh: dropping a stanza outside the agreement", "condition", cond,
					"from", el.Attr("from"), "to", el.Attr("to"))
				e.kind = evDropped
				return e, true
			}
			e.kind, e.cond = evBad, cond
			e.text = fmt.Sprintf("from %.64q to %.64q", el.Attr("from"), el.Attr("to"))
			return e, false
		}
		e.kind, e.item = evStanza, receivedItem(el)
	default:
		if s.cfg.Lenient {
			c.log.Warn("zh: ignoring an element that is not a stanza", "name", el.Name, "ns", el.Space)
			return connEvent{}, true
		}
		e.kind, e.cond, e.text = evBad, "unsupported-stanza-type", fmt.Sprintf("<%.64s/> in %.64q", el.Name, el.Space)
		return e, false
	}
	return e, true
}

func describeStreamError(el *wire.Element) string {
	cond, text := "", el.ChildText("text", stanza.NSStreamErr)
	for ch := range el.Elements() {
		if ch.Space == stanza.NSStreamErr && ch.Local() != "text" {
			cond = ch.Local()
			break
		}
	}
	if text != "" {
		return cond + ": " + text
	}
	return cond
}

// writer writes frames in order; with deflate, each is followed by a
// sync flush so the peer can decode it at once.
func (s *Stream) writer(c *conn) {
	var w io.Writer = c.nc
	var z *zlib.Writer
	if s.cfg.Compression == CompressDeflate {
		z = zlib.NewWriter(c.nc)
		w = z
	}
	for f := range c.out {
		c.nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		_, err := w.Write(f.b)
		if err == nil && z != nil {
			if f.final {
				err = z.Close()
			} else {
				err = z.Flush()
			}
		}
		if err != nil {
			s.report(connEvent{c: c, kind: evLost, err: fmt.Errorf("write: %w", err)})
			break
		}
		if f.stanza {
			s.report(connEvent{c: c, kind: evWritten, id: f.id})
		}
		if f.final {
			if hc, ok := c.nc.(interface{ CloseWrite() error }); ok {
				hc.CloseWrite()
			}
			break
		}
	}
	for range c.out { // until Run drops the connection
	}
}

// lazyZlib starts the zlib reader at the first read, since creating it
// reads the stream header.
type lazyZlib struct {
	src io.Reader
	z   io.Reader
}

func (l *lazyZlib) Read(p []byte) (int, error) {
	if l.z == nil {
		z, err := zlib.NewReader(l.src)
		if err != nil {
			return 0, fmt.Errorf("zlib: %w", err)
		}
		l.z = z
	}
	return l.z.Read(p)
}
