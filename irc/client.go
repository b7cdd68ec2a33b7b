package irc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"github.com/ergochat/irc-go/ircreader"
	"github.com/ergochat/irc-go/ircutils"
	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/core/obs"
)

// EventKind says what an Event reports.
type EventKind int

const (
	// Connected: registration finished (end of MOTD), channels are being rejoined; State is current.
	Connected EventKind = iota + 1
	// Disconnected: the connection ended; Err says why. A reconnect follows unless the client is closing.
	Disconnected
	// Received: a message from the server. PING is answered by the client and not reported.
	Received
)

// Event is something that happened on a client's connection.
type Event struct {
	Kind EventKind
	Msg  Message   // Received
	Time time.Time // the server-time tag when present, else when it was read
	Err  error     // Disconnected
}

// State is a snapshot of a connection's negotiated state.
type State struct {
	Ready    bool // registered and past the MOTD
	Nick     string
	Account  string            // the SASL account logged in to, if any
	Caps     map[string]string // enabled capabilities and their values
	ISupport ISupport
	Channels []string // channels the server says we are in
}

// Client is a connection to one IRC server that survives disconnections: Run dials, registers,
// and redials with backoff, rejoining the channels asked for with Join. One goroutine (Run's) owns
// the protocol state; a reader and a writer goroutine serve each TCP connection. Send and the other
// methods are safe for concurrent use and never wait for Run's goroutine, so a consumer may call
// them while it handles events.
type Client struct {
	cfg    Config
	events chan Event
	done   chan struct{}

	started atomic.Bool
	closing atomic.Bool
	sess    atomic.Pointer[session] // set while ready

	mu      sync.Mutex
	state   State
	wanted  map[string]wantedChan // folded channel name → what to rejoin; guarded by mu
	nick    string                // nick wanted for the next registration; guarded by mu
	cancel  context.CancelFunc    // ends Run; guarded by mu
	quitMsg string

	m clientMetrics
}

type wantedChan struct{ name, key string }

type clientMetrics struct {
	connects, disconnects, linesIn, linesOut, badLines, queueFull counter
}

type counter interface{ Inc() }

type nopCounter struct{}

func (nopCounter) Inc() {}

// New returns a client for cfg. Call Run to connect.
func New(cfg Config) *Client {
	cfg.defaults()
	c := &Client{
		cfg:    cfg,
		events: make(chan Event, cfg.EventQueue),
		done:   make(chan struct{}),
		wanted: make(map[string]wantedChan),
		nick:   cfg.Nick,
	}
	c.state.ISupport = DefaultISupport()
	c.m = clientMetrics{nopCounter{}, nopCounter{}, nopCounter{}, nopCounter{}, nopCounter{}, nopCounter{}}
	if m := cfg.Metrics; m != nil {
		n := func(f string) counter { return m.Counter(obs.Name(f, "network", cfg.Network)) }
		c.m = clientMetrics{
			connects:    n("aldis_irc_connects_total"),
			disconnects: n("aldis_irc_disconnects_total"),
			linesIn:     n("aldis_irc_lines_in_total"),
			linesOut:    n("aldis_irc_lines_out_total"),
			badLines:    n("aldis_irc_bad_lines_total"),
			queueFull:   n("aldis_irc_send_queue_full_total"),
		}
	}
	return c
}

// Events returns the channel of events; it is closed when Run returns. Consume it promptly: a
// consumer that falls Backlog events behind loses the connection.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when Run has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// State returns a snapshot of the connection's state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.ISupport = s.ISupport.Clone()
	s.Caps = make(map[string]string, len(c.state.Caps))
	for k, v := range c.state.Caps {
		s.Caps[k] = v
	}
	s.Channels = append([]string(nil), c.state.Channels...)
	return s
}

// Run connects and stays connected until ctx ends or Close or Quit is called, reconnecting with
// jittered exponential backoff. It returns nil after Quit/Close, else ctx's error.
func (c *Client) Run(ctx context.Context) error {
	if c.started.Swap(true) {
		return errors.New("irc: Run called twice")
	}
	defer close(c.done)
	defer close(c.events)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	if c.closing.Load() {
		return nil
	}
	if len(c.cfg.Addrs) == 0 {
		return errors.New("irc: no server address")
	}
	for attempt, server := 0, 0; ; {
		addr := c.cfg.Addrs[server%len(c.cfg.Addrs)]
		log := c.cfg.Log.With("network", c.cfg.Network, "addr", addr)
		readyAt, err := c.session(ctx, addr, log)
		c.sess.Store(nil)
		c.mu.Lock()
		c.state.Ready = false
		c.state.Channels = nil
		c.mu.Unlock()
		if c.closing.Load() {
			c.emit(ctx, Event{Kind: Disconnected, Err: ErrClosed, Time: time.Now()})
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.disconnects.Inc()
		c.emit(ctx, Event{Kind: Disconnected, Err: err, Time: time.Now()})
		if !readyAt.IsZero() && time.Since(readyAt) > c.cfg.MinBackoff {
			attempt = 0 // it worked for a while: this is a new outage, start the backoff again
		} else {
			server++ // this server is not working: try the next
		}
		attempt++
		d := c.backoff(attempt)
		log.Warn("irc connection lost; reconnecting", "err", err, "in", d.Round(time.Millisecond), "attempt", attempt)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			if c.closing.Load() {
				return nil
			}
			return ctx.Err()
		}
	}
}

// backoff is the delay before reconnect attempt n (from 1): full jitter over an exponential cap,
// with a floor of half the minimum so that a server that refuses at once is not hammered.
func (c *Client) backoff(n int) time.Duration {
	ceil := c.cfg.MaxBackoff
	if n < 30 {
		ceil = min(ceil, c.cfg.MinBackoff<<(n-1))
	}
	floor := c.cfg.MinBackoff / 2
	if ceil <= floor {
		return floor
	}
	return floor + rand.N(ceil-floor)
}

// Close quits (with the configured quit message) and waits, up to 5 seconds, for Run to return.
// It implements io.Closer for the connection pool.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Quit(ctx, "")
}

// Quit sends QUIT with reason (the configured quit message if empty), stops reconnecting, and
// waits for the server to close the connection or ctx to end, then for Run to return.
func (c *Client) Quit(ctx context.Context, reason string) error {
	if reason == "" {
		reason = c.cfg.QuitMessage
	}
	c.closing.Store(true)
	if !c.started.Load() {
		return nil
	}
	if s := c.sess.Load(); s != nil {
		s.priority(fmt.Appendf(nil, "QUIT :%s\r\n", truncate(stripCRLF(reason), 300)))
	} else {
		c.stop()
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
	}
	c.stop()
	select {
	case <-c.done:
		return nil
	case <-time.After(time.Second):
		return errors.New("irc: client did not stop")
	}
}

func (c *Client) stop() {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Send queues messages to be sent, in order and together, paced by the flood control. It fails
// with ErrNotConnected while the client is not registered, and with ErrSendQueueFull (sending
// none of them) when they don't all fit in the queue.
func (c *Client) Send(msgs ...Message) error {
	s := c.sess.Load()
	if s == nil {
		return ErrNotConnected
	}
	lines := make([][]byte, 0, len(msgs))
	for i := range msgs {
		b, err := Serialize(&msgs[i], int(s.lineLen.Load()))
		if err != nil {
			return err
		}
		lines = append(lines, b)
	}
	if err := s.enqueue(lines...); err != nil {
		c.m.queueFull.Inc()
		return err
	}
	return nil
}

// Privmsg sends text to target, one PRIVMSG per line of text, splitting long lines at UTF-8
// boundaries to fit the server's line length.
func (c *Client) Privmsg(target, text string) error {
	return c.sendText("PRIVMSG", target, text, false)
}

// Notice is Privmsg with NOTICE.
func (c *Client) Notice(target, text string) error {
	return c.sendText("NOTICE", target, text, false)
}

// Action sends text as CTCP ACTION ("/me"), split like Privmsg.
func (c *Client) Action(target, text string) error {
	return c.sendText("PRIVMSG", target, text, true)
}

func (c *Client) sendText(cmd, target, text string, action bool) error {
	st := c.snapshotForSend()
	parts := SplitText(text, TextBudget(st.lineLen, st.nick, target, action))
	msgs := make([]Message, len(parts))
	for i, p := range parts {
		if action {
			p = "\x01ACTION " + p + "\x01"
		}
		msgs[i] = ircmsg.MakeMessage(nil, "", cmd, target, p)
	}
	if len(msgs) == 0 {
		return nil
	}
	return c.Send(msgs...)
}

type sendInfo struct {
	nick    string
	lineLen int
}

func (c *Client) snapshotForSend() sendInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sendInfo{nick: c.state.Nick, lineLen: c.state.ISupport.LineLen}
}

// Join joins channel (with key, if any) now if connected, and after every reconnect until Part.
func (c *Client) Join(channel, key string) error {
	c.mu.Lock()
	c.wanted[c.state.ISupport.CaseMapping.Fold(channel)] = wantedChan{channel, key}
	c.mu.Unlock()
	if c.sess.Load() == nil {
		return nil // joined when the connection is ready
	}
	return c.Send(joinMessage(channel, key))
}

// Part leaves channel and stops rejoining it.
func (c *Client) Part(channel, reason string) error {
	c.mu.Lock()
	delete(c.wanted, c.state.ISupport.CaseMapping.Fold(channel))
	c.mu.Unlock()
	if c.sess.Load() == nil {
		return nil
	}
	if reason == "" {
		return c.Send(ircmsg.MakeMessage(nil, "", "PART", channel))
	}
	return c.Send(ircmsg.MakeMessage(nil, "", "PART", channel, stripCRLF(reason)))
}

// Topic sets channel's topic.
func (c *Client) Topic(channel, topic string) error {
	return c.Send(ircmsg.MakeMessage(nil, "", "TOPIC", channel, stripCRLF(topic)))
}

// Kick removes nick from channel, with a reason.
func (c *Client) Kick(channel, nick, reason string) error {
	if reason == "" {
		return c.Send(ircmsg.MakeMessage(nil, "", "KICK", channel, nick))
	}
	return c.Send(ircmsg.MakeMessage(nil, "", "KICK", channel, nick, stripCRLF(reason)))
}

// SetNick changes the nick now if connected, and the nick registered with after a reconnect.
func (c *Client) SetNick(nick string) error {
	c.mu.Lock()
	c.nick = nick
	c.mu.Unlock()
	if c.sess.Load() == nil {
		return nil
	}
	return c.Send(ircmsg.MakeMessage(nil, "", "NICK", nick))
}

func joinMessage(channel, key string) Message {
	if key == "" {
		return ircmsg.MakeMessage(nil, "", "JOIN", channel)
	}
	return ircmsg.MakeMessage(nil, "", "JOIN", channel, key)
}

func stripCRLF(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// emit hands an event to the consumer, waiting while the queue is full; it is used only where no
// connection is being served.
func (c *Client) emit(ctx context.Context, ev Event) bool {
	select {
	case c.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// session is one TCP connection: its queues and the goroutines that serve them.
type session struct {
	conn    net.Conn
	out     chan []byte  // paced by the limiter
	prio    chan []byte  // PONG, PING, QUIT and registration: sent at once
	enqMu   sync.Mutex   // keeps one Send's lines together in out
	lineLen atomic.Int32 // the server's LINELEN: set by Run's goroutine, read by senders
}

// enqueue adds lines to the paced queue, all or none.
func (s *session) enqueue(lines ...[]byte) error {
	s.enqMu.Lock()
	defer s.enqMu.Unlock()
	if cap(s.out)-len(s.out) < len(lines) {
		return ErrSendQueueFull
	}
	for _, l := range lines {
		s.out <- l // cannot block: only enqueue adds, under enqMu, and there is room
	}
	return nil
}

// priority adds a line to the unpaced queue; when that is full the line is dropped, which only
// happens to a server flooding us with PINGs.
func (s *session) priority(line []byte) {
	select {
	case s.prio <- line:
	default:
	}
}

// reg is the registration state of one session, owned by Run's goroutine.
type reg struct {
	nick       string
	tries      int
	capsLS     []string
	capsDone   bool // CAP END sent (or the server does no CAP)
	saslActive bool
	registered bool
	ready      bool
	pingOut    bool
	readyAt    time.Time
	iso        ISupport
	caps       map[string]string
	account    string
	joined     map[string]string // folded → as the server spelled it
}

// session dials, registers and serves one connection until it fails. It returns when the
// connection became ready (zero if never) and why it ended.
func (c *Client) session(ctx context.Context, addr string, log *slog.Logger) (readyAt time.Time, err error) {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return time.Time{}, err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &session{
		conn: conn,
		out:  make(chan []byte, c.cfg.SendQueue),
		prio: make(chan []byte, 64),
	}
	s.lineLen.Store(DefaultLineLen)
	var lastRead atomic.Int64
	lastRead.Store(time.Now().UnixNano())
	lines := make(chan Message, 64)
	var wg sync.WaitGroup
	wg.Go(func() { cancel(c.reader(sctx, s, lines, &lastRead)) })
	wg.Go(func() { cancel(c.writer(sctx, s)) })
	defer func() {
		cancel(nil)
		conn.Close()
		wg.Wait()
	}()

	c.mu.Lock()
	r := &reg{nick: c.nick, iso: DefaultISupport(), caps: map[string]string{}, joined: map[string]string{}}
	c.state = State{Nick: r.nick, ISupport: r.iso.Clone(), Caps: map[string]string{}}
	c.mu.Unlock()

	// Registration: CAP LS first so the server holds registration until CAP END.
	s.priority([]byte("CAP LS 302\r\n"))
	if c.cfg.Password != "" {
		c.prioMsg(s, "PASS", c.cfg.Password)
	}
	c.prioMsg(s, "NICK", r.nick)
	c.prioMsg(s, "USER", c.cfg.User, "0", "*", c.cfg.RealName)

	regDeadline := time.NewTimer(c.cfg.RegisterTimeout)
	defer regDeadline.Stop()
	tick := time.NewTicker(min(c.cfg.PingInterval, c.cfg.PingTimeout) / 2)
	defer tick.Stop()
	// Events wait in backlog while the consumer's queue is full, so that this loop (and the reader
	// behind it) never stops: the reader must keep answering PINGs.
	var backlog []Event
	defer func() { c.drain(ctx, backlog) }()
	for {
		var (
			evc  chan<- Event
			next Event
		)
		if len(backlog) > 0 {
			evc, next = c.events, backlog[0]
		}
		select {
		case evc <- next:
			backlog[0] = Event{}
			backlog = backlog[1:]
			continue
		case <-sctx.Done():
			err := context.Cause(sctx)
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				err = ctx.Err()
			}
			return r.readyAt, err
		case <-regDeadline.C:
			if !r.ready {
				return r.readyAt, fmt.Errorf("irc: registration took longer than %v", c.cfg.RegisterTimeout)
			}
		case <-tick.C:
			idle := time.Since(time.Unix(0, lastRead.Load()))
			switch {
			case idle > c.cfg.PingInterval+c.cfg.PingTimeout:
				return r.readyAt, fmt.Errorf("%w after %v of silence", ErrPingTimeout, idle.Round(time.Second))
			case idle > c.cfg.PingInterval && !r.pingOut:
				s.priority(fmt.Appendf(nil, "PING :aldis-%d\r\n", time.Now().Unix()))
				r.pingOut = true
			case idle < c.cfg.PingInterval:
				r.pingOut = false
			}
		case m := <-lines:
			wasReady := r.ready
			if err := c.handle(s, r, &m, log); err != nil {
				return r.readyAt, err
			}
			if r.ready && !wasReady {
				backlog = append(backlog, Event{Kind: Connected, Time: time.Now()})
			}
			backlog = append(backlog, Event{Kind: Received, Msg: m, Time: serverTime(&m)})
			if len(backlog) > c.cfg.Backlog {
				return r.readyAt, fmt.Errorf("%w: %d events waiting", ErrSlowConsumer, len(backlog))
			}
		}
	}
}

// drain hands the consumer what the last session left in its backlog, before Run reports the
// disconnection, waiting as long as ctx allows.
func (c *Client) drain(ctx context.Context, backlog []Event) {
	for _, ev := range backlog {
		if !c.emit(ctx, ev) {
			return
		}
	}
}

func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	conn, err := c.cfg.Dial(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("irc: dialling %s: %w", addr, err)
	}
	if c.cfg.TLS == nil {
		return conn, nil
	}
	tc := c.cfg.TLS.Clone()
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		tc.ServerName = host
	}
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(dctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("irc: TLS with %s: %w", addr, err)
	}
	return tconn, nil
}

// reader reads, parses and hands over lines; it answers PING itself, so that a slow consumer
// can't make the server think we are gone.
func (c *Client) reader(ctx context.Context, s *session, lines chan<- Message, lastRead *atomic.Int64) error {
	var rd ircreader.Reader
	rd.Initialize(s.conn, 512, MaxLine+2)
	for {
		b, err := rd.ReadLine()
		if err != nil {
			if errors.Is(err, ircreader.ErrReadQ) {
				return fmt.Errorf("irc: server sent a line longer than %d bytes", MaxLine)
			}
			return fmt.Errorf("irc: reading: %w", err)
		}
		lastRead.Store(time.Now().UnixNano())
		c.m.linesIn.Inc()
		if len(b) == 0 {
			continue
		}
		m, err := ParseLine(string(b))
		if err != nil {
			c.m.badLines.Inc()
			c.cfg.Log.Debug("irc: ignoring bad line", "network", c.cfg.Network, "err", err, "line", truncate(string(b), 200))
			continue
		}
		if m.Command == "PING" {
			pong := ircmsg.MakeMessage(nil, "", "PONG", m.Params...)
			if line, err := Serialize(&pong, MaxBody); err == nil {
				s.priority(line)
			}
			continue
		}
		select {
		case lines <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// writer sends the priority queue at once and the normal queue at the flood-control rate.
func (c *Client) writer(ctx context.Context, s *session) error {
	lim := rate.NewLimiter(c.cfg.Rate, c.cfg.Burst)
	write := func(b []byte) error {
		s.conn.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		if _, err := s.conn.Write(b); err != nil {
			return fmt.Errorf("irc: writing: %w", err)
		}
		c.m.linesOut.Inc()
		return nil
	}
	for {
		select {
		case b := <-s.prio:
			if err := write(b); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case b := <-s.prio:
			if err := write(b); err != nil {
				return err
			}
		case b := <-s.out:
			// Wait for a token, but let priority lines (a PONG) through meanwhile.
			r := lim.Reserve()
		wait:
			for d := r.Delay(); d > 0; d = r.Delay() {
				t := time.NewTimer(d)
				select {
				case p := <-s.prio:
					t.Stop()
					if err := write(p); err != nil {
						r.Cancel()
						return err
					}
				case <-t.C:
					break wait
				case <-ctx.Done():
					t.Stop()
					r.Cancel()
					return nil
				}
			}
			if err := write(b); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *Client) prioMsg(s *session, cmd string, params ...string) {
	m := ircmsg.MakeMessage(nil, "", cmd, params...)
	if b, err := Serialize(&m, MaxBody); err == nil {
		s.priority(b)
	}
}

// handle updates the registration and connection state for one message from the server.
// It returns an error that ends the connection.
func (c *Client) handle(s *session, r *reg, m *Message, log *slog.Logger) error {
	cm := r.iso.CaseMapping
	fromMe := m.Source != "" && cm.Equal(m.Nick(), r.nick)
	switch m.Command {
	case "CAP":
		return c.handleCap(s, r, m)
	case "AUTHENTICATE":
		if Param(m, 0) == "+" && r.saslActive {
			for _, chunk := range ircutils.EncodeSASLResponse(c.saslPayload()) {
				c.prioMsg(s, "AUTHENTICATE", chunk)
			}
		}
	case "900": // RPL_LOGGEDIN: <nick> <nuh> <account> :text
		r.account = Param(m, 2)
	case "903": // RPL_SASLSUCCESS
		r.saslActive = false
		c.capEnd(s, r)
	case "902", "904", "905", "906", "908": // SASL failed, aborted, or mechanism unavailable
		if !r.saslActive {
			break
		}
		r.saslActive = false
		if c.cfg.SASL.Required {
			return fmt.Errorf("%w: %s %s", ErrSASLFailed, m.Command, m.Params[len(m.Params)-1])
		}
		log.Warn("irc SASL login failed; continuing without", "code", m.Command)
		c.capEnd(s, r)
	case "001":
		r.registered = true
		if n := Param(m, 0); n != "" {
			r.nick = n
		}
		if !r.capsDone {
			r.capsDone = true // the server does no CAP, or registered us anyway
		}
		c.publish(r)
	case "005":
		if len(m.Params) > 2 {
			r.iso.Apply(m.Params[1 : len(m.Params)-1])
			r.joined = refold(r.joined, r.iso.CaseMapping)
			s.lineLen.Store(int32(r.iso.LineLen))
			c.publish(r)
		}
	case "376", "422": // end of MOTD, or no MOTD: registration is complete
		if !r.ready {
			c.becomeReady(s, r, log)
		}
	case "432", "433", "436", "437": // nick erroneous, in use, collision, unavailable
		if r.registered {
			break // a NICK change failed: the consumer sees the event; we keep our nick
		}
		r.tries++
		var next string
		ok := r.tries <= c.cfg.NickTries
		if ok {
			if m.Command == "432" {
				next = FallbackNick(c.cfg.Nick+c.cfg.User, r.iso.NickLen)
				if r.nick == next {
					ok = false
				}
			} else {
				next, ok = AltNick(c.nickBase(), r.tries, r.iso.NickLen)
			}
		}
		if !ok {
			return fmt.Errorf("%w (%s for %q)", ErrNickExhausted, m.Command, r.nick)
		}
		log.Debug("irc nick taken; trying another", "nick", r.nick, "next", next, "code", m.Command)
		r.nick = next
		c.prioMsg(s, "NICK", next)
		c.publish(r)
	case "NICK":
		if fromMe {
			r.nick = Param(m, 0)
			c.publish(r)
		}
	case "JOIN":
		if fromMe {
			ch := Param(m, 0)
			r.joined[cm.Fold(ch)] = ch
			c.publish(r)
		}
	case "PART":
		if fromMe {
			delete(r.joined, cm.Fold(Param(m, 0)))
			c.publish(r)
		}
	case "KICK":
		if cm.Equal(Param(m, 1), r.nick) {
			ch := cm.Fold(Param(m, 0))
			delete(r.joined, ch)
			c.mu.Lock()
			delete(c.wanted, ch) // don't fight a kick by rejoining on reconnect; the consumer decides
			c.mu.Unlock()
			c.publish(r)
		}
	case "471", "473", "474", "475": // can't join: full, invite only, banned, bad key
		c.mu.Lock()
		delete(c.wanted, cm.Fold(Param(m, 1))) // retrying forever would only repeat the refusal
		c.mu.Unlock()
	case "ERROR":
		log.Info("irc server closes the connection", "reason", truncate(Param(m, 0), 200))
	}
	return nil
}

// nickBase is the nick alternatives are derived from: the one asked for.
func (c *Client) nickBase() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nick
}

func (c *Client) handleCap(s *session, r *reg, m *Message) error {
	if len(m.Params) < 3 {
		return nil
	}
	sub := strings.ToUpper(m.Params[1])
	list := m.Params[len(m.Params)-1]
	more := len(m.Params) > 3 && m.Params[2] == "*"
	switch sub {
	case "LS":
		if r.capsDone {
			return nil
		}
		for f := range strings.FieldsSeq(list) {
			if len(r.capsLS) < 512 {
				r.capsLS = append(r.capsLS, f)
			}
		}
		if more {
			return nil
		}
		req := c.capsToRequest(r.capsLS)
		if len(req) == 0 {
			return c.afterCaps(s, r)
		}
		c.prioMsg(s, "CAP", "REQ", strings.Join(req, " "))
	case "ACK":
		for f := range strings.FieldsSeq(list) {
			if name, ok := strings.CutPrefix(f, "-"); ok {
				delete(r.caps, name)
				continue
			}
			r.caps[f] = capValue(r.capsLS, f)
		}
		c.publish(r)
		if !r.capsDone {
			return c.afterCaps(s, r)
		}
	case "NAK":
		if !r.capsDone {
			return c.afterCaps(s, r)
		}
	case "NEW": // cap-notify: request what we want of the new ones
		var offered []string
		for f := range strings.FieldsSeq(list) {
			offered = append(offered, f)
		}
		req := c.capsToRequest(offered)
		var keep []string
		for _, name := range req {
			if name != "sasl" { // too late to log in
				keep = append(keep, name)
			}
		}
		if len(keep) > 0 {
			r.capsLS = append(r.capsLS, offered...)
			c.prioMsg(s, "CAP", "REQ", strings.Join(keep, " "))
		}
	case "DEL":
		for f := range strings.FieldsSeq(list) {
			delete(r.caps, f)
		}
		c.publish(r)
	}
	return nil
}

// afterCaps starts SASL if it was acknowledged, or ends capability negotiation.
func (c *Client) afterCaps(s *session, r *reg) error {
	if c.cfg.SASL.Mechanism != "" {
		if _, ok := r.caps["sasl"]; ok {
			r.saslActive = true
			c.prioMsg(s, "AUTHENTICATE", strings.ToUpper(c.cfg.SASL.Mechanism))
			return nil
		}
		if c.cfg.SASL.Required {
			return fmt.Errorf("%w: the server does not offer SASL", ErrSASLFailed)
		}
	}
	c.capEnd(s, r)
	return nil
}

func (c *Client) capEnd(s *session, r *reg) {
	if !r.capsDone {
		r.capsDone = true
		s.priority([]byte("CAP END\r\n"))
	}
}

// capsToRequest picks, from what the server offers (name or name=value), those we want.
func (c *Client) capsToRequest(offered []string) []string {
	want := make(map[string]bool, len(c.cfg.Caps)+1)
	for _, name := range c.cfg.Caps {
		want[name] = true
	}
	if c.cfg.SASL.Mechanism != "" {
		want["sasl"] = true
	}
	var req []string
	for _, o := range offered {
		name, _, _ := strings.Cut(o, "=")
		if want[name] {
			req = append(req, name)
			delete(want, name) // offered twice: request once
		}
	}
	return req
}

func capValue(ls []string, name string) string {
	for _, o := range ls {
		if n, v, _ := strings.Cut(o, "="); n == name {
			return v
		}
	}
	return ""
}

// saslPayload is the client's first SASL response.
func (c *Client) saslPayload() []byte {
	if strings.EqualFold(c.cfg.SASL.Mechanism, "PLAIN") {
		return []byte(c.cfg.SASL.Login + "\x00" + c.cfg.SASL.Login + "\x00" + c.cfg.SASL.Password)
	}
	return nil // EXTERNAL: the certificate says who we are; EncodeSASLResponse sends "+"
}

// becomeReady finishes registration: identify to NickServ if configured, rejoin, publish the
// session for Send, and tell the consumer.
func (c *Client) becomeReady(s *session, r *reg, log *slog.Logger) {
	r.ready = true
	r.readyAt = time.Now()
	if c.cfg.NickServ != "" && r.account == "" {
		text := "IDENTIFY " + c.cfg.NickServ
		if c.cfg.NickServAccount != "" {
			text = "IDENTIFY " + c.cfg.NickServAccount + " " + c.cfg.NickServ
		}
		c.prioMsg(s, "PRIVMSG", "NickServ", text)
	}
	c.mu.Lock()
	rejoin := make([]wantedChan, 0, len(c.wanted))
	wanted := make(map[string]wantedChan, len(c.wanted))
	for _, w := range c.wanted {
		rejoin = append(rejoin, w)
		wanted[r.iso.CaseMapping.Fold(w.name)] = w // the casemapping may differ from the last server's
	}
	c.wanted = wanted
	c.mu.Unlock()
	c.sess.Store(s)
	c.publish(r)
	for _, w := range rejoin {
		m := joinMessage(w.name, w.key)
		if b, err := Serialize(&m, int(s.lineLen.Load())); err == nil {
			if err := s.enqueue(b); err != nil {
				log.Warn("irc rejoin not queued", "channel", w.name, "err", err)
			}
		}
	}
	c.m.connects.Inc()
	log.Info("irc connected", "nick", r.nick, "caps", len(r.caps), "account", r.account, "rejoining", len(rejoin))
}

// publish copies the session's state for State().
func (c *Client) publish(r *reg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Ready = r.ready
	c.state.Nick = r.nick
	c.state.Account = r.account
	c.state.ISupport = r.iso.Clone()
	c.state.Caps = make(map[string]string, len(r.caps))
	for k, v := range r.caps {
		c.state.Caps[k] = v
	}
	c.state.Channels = c.state.Channels[:0:0]
	for _, ch := range r.joined {
		c.state.Channels = append(c.state.Channels, ch)
	}
}

func refold(m map[string]string, cm CaseMapping) map[string]string {
	out := make(map[string]string, len(m))
	for _, v := range m {
		out[cm.Fold(v)] = v
	}
	return out
}

// serverTime returns the time of m from its server-time tag, or now.
func serverTime(m *Message) time.Time {
	if ok, v := m.GetTag("time"); ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t
		}
	}
	return time.Now()
}
