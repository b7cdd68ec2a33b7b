package irc

import (
	"cmp"
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
	// Unsent: a line given to SendKept that was not sent (Msg, Ref): it waited longer than
	// OutboxAge for the connection (Err is ErrExpired), the client closed (ErrClosed), or the
	// server it reconnected to has shorter lines (a Serialize error).
	Unsent
)

// Event is something that happened on a client's connection.
type Event struct {
	Kind EventKind
	Msg  Message   // Received, Unsent
	Time time.Time // the server-time tag when present, else when it was read; Unsent: when it was given
	Err  error     // Disconnected, Unsent
	Ref  string    // Unsent: the reference given to SendKept
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

	out *outbox // nil without Config.Outbox

	m clientMetrics
}

type wantedChan struct{ name, key string }

type clientMetrics struct {
	connects, disconnects, linesIn, linesOut, badLines, queueFull, loginFailures, unsent counter
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
	if cfg.Outbox > 0 {
		c.out = newOutbox(cfg.Outbox, cfg.OutboxAge)
	}
	var nop nopCounter
	c.m = clientMetrics{nop, nop, nop, nop, nop, nop, nop, nop}
	if m := cfg.Metrics; m != nil {
		n := func(f string) counter { return m.Counter(obs.Name(f, "network", cfg.Network)) }
		c.m = clientMetrics{
			connects:    n("aldis_irc_connects_total"),
			disconnects: n("aldis_irc_disconnects_total"),
			linesIn:     n("aldis_irc_lines_in_total"),
			linesOut:    n("aldis_irc_lines_out_total"),
			badLines:    n("aldis_irc_bad_lines_total"),
			queueFull:   n("aldis_irc_send_queue_full_total"),
			// SASL refused, or NickServ not confirming IDENTIFY: the connection carries on without an account.
			loginFailures: n("aldis_irc_login_failures_total"),
			unsent:        n("aldis_irc_unsent_total"), // kept lines not sent in time (Unsent events)
		}
	}
	return c
}

// Events returns the channel of events; it is closed when Run returns. Consume it promptly: a
// consumer that falls Backlog events behind loses the connection.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when Run has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Fold is s in the server's case mapping, for comparing nicks and channels without the copy
// State makes.
func (c *Client) Fold(s string) string {
	c.mu.Lock()
	cm := c.state.ISupport.CaseMapping
	c.mu.Unlock()
	return cm.Fold(s)
}

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
	if c.out != nil {
		var wg sync.WaitGroup
		wg.Go(func() { c.reportUnsent(ctx) })
		defer func() {
			cancel()
			wg.Wait()
			c.reportClosed()
		}()
	}
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
	lines := make([]outLine, 0, len(msgs))
	for i := range msgs {
		b, err := Serialize(&msgs[i], int(s.lineLen.Load()))
		if err != nil {
			return err
		}
		lines = append(lines, outLine{b: b})
	}
	if err := s.enqueue(lines...); err != nil {
		c.m.queueFull.Inc()
		return err
	}
	return nil
}

// SendKept is Send for lines that must survive a lost connection (see Config.Outbox): while the
// client is not connected they wait, and what a connection that breaks has not had confirmed is
// sent again after the reconnect and the rejoin, in order. ref comes back in an Unsent event for
// each line that waited longer than OutboxAge. It fails with ErrOutboxFull (keeping none of msgs)
// when that many lines are already waiting, and with ErrSendQueueFull as Send does. Without an
// outbox it is Send.
func (c *Client) SendKept(ref string, msgs ...Message) error {
	if c.out == nil {
		return c.Send(msgs...)
	}
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	ks := make([]*kept, len(msgs))
	for i := range msgs {
		ks[i] = &kept{msg: msgs[i], ref: ref, at: now}
	}
	o := c.out
	o.mu.Lock()
	defer o.mu.Unlock()
	s := c.sess.Load()
	if s == nil || s.dead || !s.open || len(o.waiting) > 0 {
		return o.add(ks) // sent once connected, after what waits already
	}
	lines := make([]outLine, len(ks))
	for i, k := range ks {
		b, err := Serialize(&k.msg, int(s.lineLen.Load()))
		if err != nil {
			return err
		}
		lines[i] = outLine{b: b, k: k}
	}
	if err := s.enqueue(lines...); err != nil {
		c.m.queueFull.Inc()
		return err
	}
	return nil
}

// reportUnsent tells the consumer about kept lines that waited too long, as they expire.
func (c *Client) reportUnsent(ctx context.Context) {
	tick := time.NewTicker(min(c.cfg.OutboxAge/8, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.out.kick:
		}
		for _, k := range c.out.takeExpired(false) {
			c.m.unsent.Inc()
			if !c.emit(ctx, Event{Kind: Unsent, Msg: k.msg, Ref: k.ref, Time: k.at, Err: cmp.Or(k.err, ErrExpired)}) {
				return
			}
		}
	}
}

// reportClosed reports, as Run returns, the kept lines that will never be sent, as far as the
// events queue has room.
func (c *Client) reportClosed() {
	for _, k := range c.out.takeExpired(true) {
		c.m.unsent.Inc()
		err := ErrClosed
		if time.Since(k.at) > c.cfg.OutboxAge {
			err = ErrExpired
		}
		select {
		case c.events <- Event{Kind: Unsent, Msg: k.msg, Ref: k.ref, Time: k.at, Err: err}:
		default:
			c.cfg.Log.Warn("irc: kept line not sent and not reported: events queue full", "network", c.cfg.Network, "ref", k.ref)
		}
	}
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
	msgs := c.textMessages(cmd, target, text, action)
	if len(msgs) == 0 {
		return nil
	}
	return c.Send(msgs...)
}

// TextMessages are the PRIVMSGs Privmsg (or Action) would send: one per line of text, long lines
// split to fit the server's line length. For SendKept.
func (c *Client) TextMessages(target, text string, action bool) []Message {
	return c.textMessages("PRIVMSG", target, text, action)
}

func (c *Client) textMessages(cmd, target, text string, action bool) []Message {
	st := c.snapshotForSend()
	parts := SplitText(text, TextBudget(st.lineLen, st.nick, target, action))
	msgs := make([]Message, len(parts))
	for i, p := range parts {
		if action {
			p = "\x01ACTION " + p + "\x01"
		}
		msgs[i] = ircmsg.MakeMessage(nil, "", cmd, target, p)
	}
	return msgs
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
	s := c.sess.Load() // under mu: becomeReady takes the channels to rejoin and publishes the session under it
	c.mu.Unlock()
	if s == nil {
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
	out     chan outLine // paced by the limiter
	prio    chan []byte  // PONG, PING, QUIT and registration: sent at once
	enqMu   sync.Mutex   // keeps one Send's lines together in out
	lineLen atomic.Int32 // the server's LINELEN: set by Run's goroutine, read by senders

	// With an outbox, guarded by its lock: open once the channels are rejoined and the lines
	// that waited are queued (kept lines go straight to out only then); dead once the connection
	// ended and out was emptied.
	open, dead bool
	inHand     *kept // the kept line the writer held when it stopped; read after it stopped
	// echo: the server echoes our messages (echo-message), which confirms kept lines; without
	// it the writer PINGs after them. Set by Run's goroutine, read by the writer.
	echo atomic.Bool
}

// enqueue adds lines to the paced queue, all or none.
func (s *session) enqueue(lines ...outLine) error {
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
	// identify fires when NickServ has not confirmed our IDENTIFY (no 900 RPL_LOGGEDIN) in
	// time; nil when none is pending. nickservSaid is NickServ's last notice meanwhile.
	identify     *time.Timer
	nickservSaid string
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
		out:  make(chan outLine, c.cfg.SendQueue),
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
		if c.out != nil {
			c.out.lost(s) // what was not confirmed goes again on the next connection
		}
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
	defer func() {
		if r.identify != nil {
			r.identify.Stop()
		}
	}()
	// Events wait in backlog while the consumer's queue is full, so that this loop (and the reader
	// behind it) never stops: the reader must keep answering PINGs.
	var backlog []Event
	defer func() { c.drain(ctx, backlog) }()
	for {
		var (
			evc      chan<- Event
			next     Event
			identify <-chan time.Time
		)
		if len(backlog) > 0 {
			evc, next = c.events, backlog[0]
		}
		if r.identify != nil {
			identify = r.identify.C
		}
		select {
		case <-identify:
			r.identify = nil
			c.loginFailed(log, "irc NickServ did not confirm the login (no 900 RPL_LOGGEDIN); carrying on without an account",
				"account", cmp.Or(c.cfg.NickServAccount, r.nick), "nickserv", r.nickservSaid)
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

// writer sends the priority queue at once and the normal queue at the flood-control rate. With an
// outbox it refills the queue from it, records the kept lines it wrote, and, unless the server
// echoes them, PINGs after them (at the same rate) for the server's confirmation.
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
	// paced writes b once the limiter allows, letting priority lines (a PONG) through meanwhile;
	// before, if not nil, runs just before b is written.
	paced := func(b []byte, before func()) (stopped bool, err error) {
		r := lim.Reserve()
		for d := r.Delay(); d > 0; d = r.Delay() {
			t := time.NewTimer(d)
			select {
			case p := <-s.prio:
				t.Stop()
				if err := write(p); err != nil {
					r.Cancel()
					return false, err
				}
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return true, nil
			}
		}
		if before != nil {
			before()
		}
		return false, write(b)
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
		c.refill(s)
		select {
		case b := <-s.prio:
			if err := write(b); err != nil {
				return err
			}
		case l := <-s.out:
			// Until it is written, a kept line is the writer's to give back (outbox.lost).
			s.inHand = l.k
			var n uint64
			var ping bool
			record := func() {
				// Recorded as written before the write: on loopback the server's echo can be
				// read before Write returns, and must find the line to confirm it.
				n, ping = c.out.wrote(l.k, !s.echo.Load())
				s.inHand = nil
			}
			if l.k == nil {
				record = nil
			}
			if stopped, err := paced(l.b, record); stopped || err != nil {
				return err
			}
			s.inHand = nil
			if ping {
				if stopped, err := paced(fmt.Appendf(nil, "PING :%s%d\r\n", ackPrefix, n), nil); stopped || err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// refill moves the outbox's waiting lines onto s's queue once s is open.
func (c *Client) refill(s *session) {
	if c.out == nil {
		return
	}
	o := c.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if s.open && !s.dead && len(o.waiting) > 0 {
		o.refill(s, int(s.lineLen.Load()))
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
		if r.identify != nil {
			r.identify.Stop()
			r.identify = nil
			log.Info("irc logged in with NickServ", "account", r.account)
		}
		c.publish(r)
	case "PONG":
		if tok := LastParam(m); c.out != nil && strings.HasPrefix(tok, ackPrefix) {
			if n, ok := c.out.acked(tok); ok {
				s.priority(fmt.Appendf(nil, "PING :%s%d\r\n", ackPrefix, n))
			}
		}
	case "PRIVMSG", "NOTICE":
		if m.Command == "NOTICE" && r.identify != nil && cm.Equal(m.Nick(), "NickServ") {
			r.nickservSaid = truncate(Param(m, 1), 200)
		}
		if c.out != nil && s.echo.Load() {
			// Our own line echoed (or one we relayed with RELAYMSG): it, and what we wrote before, arrived.
			if ok, by := m.GetTag("draft/relaymsg"); fromMe || ok && cm.Equal(by, r.nick) {
				c.out.echoed(Param(m, 0), LastParam(m), cm)
			}
		}
	case "903": // RPL_SASLSUCCESS
		r.saslActive = false
		c.capEnd(s, r)
	case "902", "904", "905", "906", "908": // SASL failed, aborted, or mechanism unavailable
		if !r.saslActive {
			break
		}
		r.saslActive = false
		if c.cfg.SASL.Required {
			return fmt.Errorf("%w: %s %s", ErrSASLFailed, m.Command, LastParam(m))
		}
		c.loginFailed(log, "irc SASL login failed; carrying on without an account", "mechanism", c.cfg.SASL.Mechanism,
			"login", c.cfg.SASL.Login, "code", m.Command, "reason", truncate(LastParam(m), 200))
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
		_, echo := r.caps["echo-message"]
		s.echo.Store(echo)
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
		_, echo := r.caps["echo-message"]
		s.echo.Store(echo)
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
		c.loginFailed(c.cfg.Log.With("network", c.cfg.Network), "irc server does not offer SASL; carrying on without an account",
			"mechanism", c.cfg.SASL.Mechanism, "login", c.cfg.SASL.Login)
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
		r.identify = time.NewTimer(c.cfg.IdentifyTimeout)
	}
	// The session is published with the channels to rejoin taken under one lock, so that a Join
	// meanwhile is either rejoined here or sent by itself.
	c.mu.Lock()
	rejoin := make([]wantedChan, 0, len(c.wanted))
	wanted := make(map[string]wantedChan, len(c.wanted))
	for _, w := range c.wanted {
		rejoin = append(rejoin, w)
		wanted[r.iso.CaseMapping.Fold(w.name)] = w // the casemapping may differ from the last server's
	}
	c.wanted = wanted
	c.sess.Store(s)
	c.mu.Unlock()
	c.publish(r)
	for _, w := range rejoin {
		m := joinMessage(w.name, w.key)
		if b, err := Serialize(&m, int(s.lineLen.Load())); err == nil {
			if err := s.enqueue(outLine{b: b}); err != nil {
				log.Warn("irc rejoin not queued", "channel", w.name, "err", err)
			}
		}
	}
	// Then the kept lines that waited, after the JOINs: the server handles lines in order.
	waited := 0
	if o := c.out; o != nil {
		o.mu.Lock()
		waited = len(o.waiting)
		s.open = true
		o.refill(s, int(s.lineLen.Load()))
		o.mu.Unlock()
	}
	c.m.connects.Inc()
	log.Info("irc connected", "nick", r.nick, "caps", len(r.caps), "account", r.account, "rejoining", len(rejoin), "resending", waited)
}

// loginFailed logs that a login failed and counts it: the connection goes on without an account.
func (c *Client) loginFailed(log *slog.Logger, msg string, args ...any) {
	c.m.loginFailures.Inc()
	log.Warn(msg, args...)
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
