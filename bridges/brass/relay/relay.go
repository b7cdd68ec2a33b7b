package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// State is a link's state (PROTOCOLS.md §4.4 item 4).
type State int

// Link states.
const (
	// StateDown: the bearer is not connected; traffic waits in the queue.
	StateDown State = iota
	// StateUp: traffic flows.
	StateUp
	// StateEMCON: receive only (emission control); traffic waits in the
	// queue, inbound traffic is still processed. It holds whether or not
	// the bearer is connected: it is the operator's choice.
	StateEMCON
	// StateDegraded: up, but slower than the bearer's threshold.
	StateDegraded
)

func (s State) String() string {
	switch s {
	case StateDown:
		return "DOWN"
	case StateUp:
		return "UP"
	case StateEMCON:
		return "EMCON_RX"
	case StateDegraded:
		return "DEGRADED"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Defaults of Config.
const (
	DefaultChatTTL      = time.Hour
	DefaultGroupchatTTL = time.Hour
	DefaultEmailTTL     = 72 * time.Hour
	DefaultWindow       = 256
	DefaultIntake       = 1024
	// maxFolded bounds the presence kept in memory per link.
	maxFolded = 4096
	// intakeBatch bounds the stanzas committed in one transaction.
	intakeBatch = 64
)

// Config sets up a Link. Name, LocalDomains, PeerDomains, Bearer, Store,
// Inject and Bounce are required.
type Config struct {
	// Name names the link in queue names ("link-out:<Name>",
	// "link-in:<Name>"), logs and metrics.
	Name string
	// LocalDomains are the domains served here whose traffic may cross
	// the link (services included); inbound stanzas must be addressed to
	// one of them. PeerDomains are the far side's: inbound stanzas must
	// come from one of them, outbound ones go to one of them.
	LocalDomains, PeerDomains []string
	Bearer                    Bearer
	// Store keeps both queues; it survives restarts.
	Store queue.Store
	// Owner names this node among those sharing the store (see
	// queue.Config.Owner).
	Owner string
	// Inject routes a stanza that crossed the link (router.Inject). It
	// must not block.
	Inject func(st *wire.Element, from, to jid.JID)
	// Bounce routes an error the link generates back to a local sender
	// (router.Deliver or Inject): from is the unreachable recipient. It
	// must not block.
	Bounce func(st *wire.Element, from, to jid.JID)
	// Mail hands a mail that crossed the link to the local MTA; an error
	// retries it later. Nil: inbound mail is dropped and logged.
	Mail func(ctx context.Context, env Envelope, msg []byte) error
	// MailFailed reports a mail that could not cross (a DSN to its
	// sender); an error retries the report later. Nil: SendMail is
	// refused.
	MailFailed func(ctx context.Context, env Envelope, msg []byte, cause error) error
	// Allowed checks a stanza against the link's clearance, at enqueue
	// and again when it is handed to the bearer. Nil allows everything.
	Allowed func(st *wire.Element) bool
	// OnState is told each state change, from the link's own goroutine:
	// it must not block. Nil: changes are only logged.
	OnState func(State)
	// Presence is the presence policy; "" is PresenceFold.
	Presence PresenceMode
	// StripChatStates drops chat state notifications without a body
	// (and removes them from messages with one); StripXHTML removes
	// XHTML-IM bodies.
	StripChatStates, StripXHTML bool
	// TTLs by class: chat (and iq, durable presence), groupchat (and
	// FMUC), email. Zero takes the defaults above.
	ChatTTL, GroupchatTTL, EmailTTL time.Duration
	// Window bounds the items handed to the bearer and not yet
	// acknowledged (default 256).
	Window int
	// Intake bounds the stanzas waiting to be committed (default 1024);
	// beyond it Send bounces them with resource-constraint.
	Intake int
	// EMCON starts the link receive-only; see SetEMCON.
	EMCON   bool
	Metrics *obs.Metrics // nil: metrics are kept but not exported
	Logger  *slog.Logger // nil discards
	Now     func() time.Time
}

// Errors an item can fail with.
var (
	ErrExpired   = queue.ErrExpired
	ErrForbidden = errors.New("relay: the link is not cleared for the stanza")
	ErrRejected  = errors.New("relay: the far side refused the item")
)

// Link is one configured link to a far-side server: it implements
// router.Remote for stanzas, takes mail with SendMail, and keeps both
// directions in durable queues over its Bearer.
type Link struct {
	cfg    Config
	log    *slog.Logger
	pol    policy
	local  map[string]bool
	peer   map[string]bool
	maxTTL time.Duration
	out    *queue.Queue
	in     *queue.Queue
	m      *metrics

	// mu orders Send against Run's final drain of the intake, so that no
	// stanza is left in it unseen.
	mu      sync.RWMutex
	stopped bool
	intake  chan outStanza

	running atomic.Bool
	emcon   atomic.Bool
	snap    atomic.Pointer[snapshot]

	// Channels of the link's goroutine (loop.go), which owns the link
	// state, the items waiting for the bearer and the folded presence.
	register   chan *waiter
	unregister chan *waiter
	fold       chan *waiter
	emconKick  chan struct{} // capacity 1
	offers     chan offer
	results    chan result
	received   chan Event
	loopDone   chan struct{}
}

// outStanza is a stanza from the router waiting to be committed.
type outStanza struct {
	st       *wire.Element // the link's own copy
	from, to jid.JID
}

// New checks cfg and returns a link; Run starts it.
func New(cfg Config) (*Link, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, " \t\r\n:") {
		bad("name %q must be non-empty, without spaces or colons", cfg.Name)
	}
	local, err := domainSet(cfg.LocalDomains)
	if err != nil {
		bad("local domains: %w", err)
	}
	peer, err := domainSet(cfg.PeerDomains)
	if err != nil {
		bad("peer domains: %w", err)
	}
	for d := range peer {
		if local[d] {
			bad("domain %s is both local and a peer's", d)
		}
	}
	if cfg.Bearer == nil {
		bad("no bearer")
	}
	if cfg.Store == nil {
		bad("no store")
	}
	if cfg.Inject == nil {
		bad("no Inject function")
	}
	if cfg.Bounce == nil {
		bad("no Bounce function")
	}
	switch cfg.Presence {
	case "":
		cfg.Presence = PresenceFold
	case PresenceFold, PresenceStrip, PresencePass:
	default:
		bad("presence mode %q: want fold, strip or pass", cfg.Presence)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"chat", &cfg.ChatTTL, DefaultChatTTL}, {"groupchat", &cfg.GroupchatTTL, DefaultGroupchatTTL}, {"email", &cfg.EmailTTL, DefaultEmailTTL}} {
		if *d.v < 0 {
			bad("negative %s TTL", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.Window < 0 || cfg.Intake < 0 {
		bad("negative window or intake")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("relay: link %q: %w", cfg.Name, errors.Join(errs...))
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Intake == 0 {
		cfg.Intake = DefaultIntake
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	l := &Link{
		cfg:        cfg,
		log:        cfg.Logger.With("link", cfg.Name),
		pol:        policy{presence: cfg.Presence, stripChatStates: cfg.StripChatStates, stripXHTML: cfg.StripXHTML},
		local:      local,
		peer:       peer,
		maxTTL:     max(cfg.ChatTTL, cfg.GroupchatTTL, cfg.EmailTTL),
		intake:     make(chan outStanza, cfg.Intake),
		register:   make(chan *waiter),
		unregister: make(chan *waiter),
		fold:       make(chan *waiter),
		emconKick:  make(chan struct{}, 1),
		offers:     make(chan offer),
		results:    make(chan result),
		received:   make(chan Event),
		loopDone:   make(chan struct{}),
	}
	l.emcon.Store(cfg.EMCON)
	initial := StateDown
	if cfg.EMCON {
		initial = StateEMCON
	}
	l.snap.Store(&snapshot{state: initial})
	// Duplicates must be refused for as long as the far side may still
	// send an item again: its longest TTL, and an hour for clock skew.
	keep := l.maxTTL + time.Hour
	l.out, err = queue.New(cfg.Store, queue.Config{
		Name:    "link-out:" + cfg.Name,
		Deliver: l.deliverOut,
		Failed:  l.failedOut,
		// Every item of the window stays claimed until acknowledged, and
		// a FLASH item added later is claimed at once.
		Workers: cfg.Window, PerDest: cfg.Window,
		// Deliver returns by the item's expiry; the lease only matters
		// if this process dies, and then Owner releases it at the next
		// start.
		Lease:      2*l.maxTTL + time.Hour,
		MinBackoff: 5 * time.Second, MaxBackoff: 5 * time.Minute,
		MaxAge: l.maxTTL, KeepDone: keep,
		Owner: cfg.Owner, Logger: l.log, Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: link %q: outbound queue: %w", cfg.Name, err)
	}
	l.in, err = queue.New(cfg.Store, queue.Config{
		Name:    "link-in:" + cfg.Name,
		Deliver: l.deliverIn,
		// One delivery at a time per class keeps stanzas in the order
		// they crossed; mail does not hold stanzas up.
		Workers: 2, PerDest: 1,
		MinBackoff: 10 * time.Second, MaxBackoff: 10 * time.Minute,
		MaxAge: l.maxTTL, KeepDone: keep,
		Owner: cfg.Owner, Logger: l.log, Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: link %q: inbound queue: %w", cfg.Name, err)
	}
	l.m = newMetrics(l)
	return l, nil
}

func domainSet(ds []string) (map[string]bool, error) {
	if len(ds) == 0 {
		return nil, errors.New("none given")
	}
	m := make(map[string]bool, len(ds))
	for _, d := range ds {
		j, err := jid.Parse(d)
		if err != nil || !j.IsBare() || j.Local() != "" {
			return nil, fmt.Errorf("%q is not a domain", d)
		}
		m[j.Domain()] = true
	}
	return m, nil
}

// State returns the link's current state.
func (l *Link) State() State { return l.snap.Load().state }

// SetEMCON switches receive-only operation on or off at run time.
func (l *Link) SetEMCON(on bool) {
	l.emcon.Store(on)
	select {
	case l.emconKick <- struct{}{}:
	default:
	}
}

// Send queues a stanza for the far side (router.Remote). It never blocks:
// when the intake is full the stanza is bounced with resource-constraint.
// st is not changed.
func (l *Link) Send(st *wire.Element, from, to jid.JID) {
	c := outStanza{st: st.Copy(), from: from, to: to}
	l.mu.RLock()
	stopped := l.stopped
	queued := false
	if !stopped {
		select {
		case l.intake <- c:
			queued = true
		default:
		}
	}
	l.mu.RUnlock()
	switch {
	case queued:
	case stopped:
		l.bounce(c.st, from, to, stanza.Wait, "remote-server-timeout")
	default:
		l.m.intakeFull.Inc()
		l.log.Warn("intake full: bouncing a stanza", "from", from.String(), "to", to.String())
		l.bounce(c.st, from, to, stanza.Wait, "resource-constraint")
	}
}

// SendMail queues a mail for the far side. When it returns nil the mail
// is committed to the store: the SMTP side may accept it.
func (l *Link) SendMail(ctx context.Context, env Envelope, msg []byte, prec brlink.Precedence) error {
	if l.cfg.MailFailed == nil {
		return fmt.Errorf("relay: link %s does not carry mail (no MailFailed)", l.cfg.Name)
	}
	payload, err := appendMail(nil, env, msg)
	if err != nil {
		return fmt.Errorf("relay: link %s: %w", l.cfg.Name, err)
	}
	id := newID()
	_, err = l.out.Add(ctx, queue.Item{
		Key:      hex.EncodeToString(id[:]),
		Dest:     l.cfg.Name,
		Priority: int(min(prec, brlink.Override)),
		Expires:  l.cfg.Now().Add(l.cfg.EmailTTL),
		Meta:     map[string]string{"class": className(brlink.ClassEmail), "from": env.From, "to": strings.Join(env.To, ",")},
		Payload:  payload,
	})
	if err != nil {
		return fmt.Errorf("relay: link %s: queueing mail: %w", l.cfg.Name, err)
	}
	return nil
}

// Run runs the bearer, the intake and both queues until ctx ends, then
// commits what is left in the intake and returns nil. It returns an error
// if the bearer cannot work. A Link runs once.
func (l *Link) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return fmt.Errorf("relay: link %s: Run called twice", l.cfg.Name)
	}
	l.log.Info("link starting", "state", l.State().String(), "window", l.cfg.Window)
	front, cancel := context.WithCancel(ctx)
	defer cancel()
	// The link's goroutine and the sender outlive the queues, whose
	// deliveries talk to them until they return.
	back, cancelBack := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBack()

	ev := make(chan Event, 64)
	var fwg, bwg sync.WaitGroup
	bwg.Go(func() { l.runLoop(back, front.Done(), ev) })
	bwg.Go(func() { l.runSender(back) })

	bearerErr := make(chan error, 1)
	fwg.Go(func() { bearerErr <- l.cfg.Bearer.Run(front, ev) })
	fwg.Go(func() { _ = l.out.Run(front) })
	fwg.Go(func() { _ = l.in.Run(front) })
	fwg.Go(func() { l.runIntake(front) })
	fwg.Go(func() { l.runReceiver(front) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-bearerErr:
		if err == nil {
			err = errors.New("bearer stopped")
		}
		err = fmt.Errorf("relay: link %s: bearer: %w", l.cfg.Name, err)
		l.log.Error("link stopping", "err", err)
	}
	cancel()
	fwg.Wait()
	cancelBack()
	bwg.Wait()
	l.log.Info("link stopped")
	return err
}

// bounce sends an error for st back to its sender, for messages and iq
// requests only; from and to are st's.
func (l *Link) bounce(st *wire.Element, from, to jid.JID, typ, cond string) {
	t := st.Attr("type")
	switch {
	case t == "error", st.Local() == "presence", st.Local() == "iq" && t != "get" && t != "set":
		return
	}
	e := stanza.Error(st, typ, cond, "")
	e.SetAttr("from", to.String())
	e.SetAttr("to", from.String())
	l.m.bounced.Inc()
	l.cfg.Bounce(e, to, from)
}

func newID() brlink.ID {
	var id brlink.ID
	_, _ = rand.Read(id[:])
	return id
}

func className(c brlink.Class) string {
	switch c {
	case brlink.ClassXMPP:
		return "xmpp"
	case brlink.ClassEmail:
		return "email"
	case brlink.ClassFMUC:
		return "fmuc"
	}
	return "ctl"
}

func parseClass(s string) (brlink.Class, bool) {
	for _, c := range []brlink.Class{brlink.ClassXMPP, brlink.ClassEmail, brlink.ClassFMUC} {
		if className(c) == s {
			return c, true
		}
	}
	return 0, false
}
