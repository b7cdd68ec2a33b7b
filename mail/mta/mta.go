// Package mta is the store-and-forward mail relay: mail the SMTP ingress accepts is checked, queued durably, sent on by the relay client, and bounced to its sender when it fails for good.
package mta

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/mail/dsn"
	"github.com/aldis-im/aldis/mail/mimemsg"
	"github.com/aldis-im/aldis/mail/relay"
	"github.com/aldis-im/aldis/mail/smtpin"
)

// QueueName is the mail queue's name in the store.
const QueueName = "mail"

// Sender sends one message to one recipient; relay.Client is one.
type Sender interface {
	Send(ctx context.Context, from, to string, data []byte) error
}

// Local delivers mail for the addresses it serves instead of relaying it:
// the mail ⇄ XMPP bridge.
type Local interface {
	// Recipient is asked first at RCPT time: local true takes the
	// recipient here, and a non-nil err refuses it (550 5.1.1 for an
	// unknown address in a local domain); local false leaves it to the
	// relay domains.
	Recipient(ctx context.Context, from, to string) (local bool, err error)
	// Check vets a message for its local recipients before the client is
	// told 250; an *smtp.SMTPError is passed to the client.
	Check(ctx context.Context, env smtpin.Envelope, msg *mimemsg.Message, to []string) error
	// Deliver delivers one queued message to one local recipient. Errors
	// are as for Sender: queue.Permanent ends in a bounce, others retry.
	Deliver(ctx context.Context, from, to string, data []byte) error
	// Failed is told that mail Submitted with an "origin" in its Meta has
	// failed for good, instead of a bounce being mailed; an error retries
	// the report later.
	Failed(ctx context.Context, meta map[string]string, cause error) error
}

// Config sets up an MTA.
type Config struct {
	// Hostname names this node: in bounces, and in the trace header that
	// detects loops.
	Hostname string
	// Domains are the recipient domains accepted; others get 550 5.7.1.
	Domains []string
	// MaxHops refuses mail with more Received fields (default 30).
	MaxHops int
	// Limits bound the MIME parsing of incoming mail.
	Limits mimemsg.Limits
	// Queue configures the queue; Name, Deliver and Failed are set here.
	Queue queue.Config
	// Logger; nil discards.
	Logger *slog.Logger
}

// MTA relays mail through a durable queue.
type MTA struct {
	cfg     Config
	domains map[string]bool
	q       *queue.Queue
	send    Sender
	log     *slog.Logger
	local   atomic.Pointer[localBox]
}

type localBox struct{ Local }

// SetLocal has l take the mail for the addresses it serves. Call it before
// the ingress serves; nil turns local delivery off.
func (m *MTA) SetLocal(l Local) {
	if l == nil {
		m.local.Store(nil)
		return
	}
	m.local.Store(&localBox{l})
}

func (m *MTA) getLocal() Local {
	if b := m.local.Load(); b != nil {
		return b.Local
	}
	return nil
}

// New builds an MTA over the store st; Run delivers.
func New(st queue.Store, send Sender, cfg Config) (*MTA, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("mta: no hostname")
	}
	if cfg.MaxHops <= 0 {
		cfg.MaxHops = 30
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &MTA{cfg: cfg, domains: map[string]bool{}, send: send, log: log}
	for _, d := range cfg.Domains {
		m.domains[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	qc := cfg.Queue
	qc.Name = QueueName
	qc.Deliver = m.deliver
	qc.Failed = m.failed
	if qc.Owner == "" {
		qc.Owner = cfg.Hostname
	}
	if qc.Logger == nil {
		qc.Logger = log
	}
	q, err := queue.New(st, qc)
	if err != nil {
		return nil, fmt.Errorf("mta: %w", err)
	}
	m.q = q
	return m, nil
}

// Run delivers queued mail until ctx ends.
func (m *MTA) Run(ctx context.Context) error { return m.q.Run(ctx) }

// Queued returns how many deliveries wait.
func (m *MTA) Queued(ctx context.Context) (int, error) { return m.q.Count(ctx) }

func reply(code int, class, subject, detail int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: msg}
}

// Recipient is the ingress's RCPT check.
func (m *MTA) Recipient(ctx context.Context, from, to string) error {
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || at == len(to)-1 || strings.ContainsAny(to, " \t\r\n<>") {
		return reply(553, 5, 1, 3, "Bad recipient address syntax")
	}
	if l := m.getLocal(); l != nil {
		if local, err := l.Recipient(ctx, from, to); local || err != nil {
			return err
		}
	}
	if !m.domains[strings.ToLower(strings.TrimSuffix(to[at+1:], "."))] {
		return reply(550, 5, 7, 1, "Relaying denied: not a domain served here")
	}
	return nil
}

// Accept is the ingress's consumer: it checks the message and queues one
// delivery per recipient, all in one transaction, before the client is
// told 250.
func (m *MTA) Accept(ctx context.Context, env smtpin.Envelope, data []byte) error {
	msg, err := mimemsg.Parse(bytes.NewReader(data), m.cfg.Limits)
	if err != nil {
		return reply(554, 5, 6, 0, "Message refused: "+oneLine(err.Error()))
	}
	if msg.Hops > m.cfg.MaxHops {
		return reply(554, 5, 4, 6, fmt.Sprintf("Too many hops (%d > %d): mail loop?", msg.Hops, m.cfg.MaxHops))
	}
	if slices.Contains(msg.Trace, m.cfg.Hostname) {
		return reply(554, 5, 4, 6, "Mail loop: this message has passed through "+m.cfg.Hostname+" before")
	}
	if msg.LabelErr != nil {
		return reply(554, 5, 7, 1, "Message refused: "+oneLine(msg.LabelErr.Error()))
	}
	var local []string
	if l := m.getLocal(); l != nil {
		for _, to := range env.To {
			if ok, _ := l.Recipient(ctx, env.From, to); ok {
				local = append(local, to)
			}
		}
		if len(local) > 0 {
			if err := l.Check(ctx, env, msg, local); err != nil {
				return err
			}
		}
	}
	now := time.Now()
	items := make([]queue.Item, 0, len(env.To))
	for _, to := range env.To {
		it := queue.Item{
			Key:  env.ID + "/" + to,
			Dest: DomainOf(to),
			Meta: map[string]string{
				"from": env.From, "to": to, "arrival": now.UTC().Format(time.RFC3339), "id": env.ID,
			},
			Payload: data,
		}
		if slices.Contains(local, to) {
			it.Dest = localDest
			it.Meta["local"] = "1"
		}
		items = append(items, it)
	}
	if _, err := m.q.Add(ctx, items...); errors.Is(err, store.ErrExists) {
		// The same transaction again (a carrier that delivers at least
		// once): it is queued already.
		return nil
	} else if err != nil {
		m.log.Error("queueing mail", "id", env.ID, "err", err)
		return reply(451, 4, 3, 0, "Temporary failure storing the message, try again later")
	}
	m.log.Info("mail queued", "id", env.ID, "from", env.From, "to", env.To, "message_id", msg.MessageID)
	return nil
}

// localDest is the queue destination of local deliveries.
const localDest = "local"

// Submission is a message from a local source (the bridge) to send on.
type Submission struct {
	ID   string // unique; each delivery's key is ID/recipient
	From string // the envelope sender; "" for a report
	To   []string
	Data []byte
	// Meta is kept with each delivery. With "origin" set, a final failure
	// goes to Local.Failed rather than back as a bounce.
	Meta map[string]string
}

// Submit queues a message for each of its recipients, durably, before it
// returns.
func (m *MTA) Submit(ctx context.Context, s Submission) error {
	if s.ID == "" || len(s.To) == 0 {
		return errors.New("mta: submission without an ID or recipients")
	}
	now := time.Now().UTC().Format(time.RFC3339)
	items := make([]queue.Item, 0, len(s.To))
	for _, to := range s.To {
		meta := map[string]string{"from": s.From, "to": to, "arrival": now, "id": s.ID}
		for k, v := range s.Meta {
			if _, taken := meta[k]; !taken {
				meta[k] = v
			}
		}
		items = append(items, queue.Item{Key: s.ID + "/" + to, Dest: DomainOf(to), Meta: meta, Payload: s.Data})
	}
	if _, err := m.q.Add(ctx, items...); err != nil {
		return fmt.Errorf("mta: queueing a submission: %w", err)
	}
	m.log.Info("mail submitted", "id", s.ID, "from", s.From, "to", s.To)
	return nil
}

// deliver sends one queued message to one recipient, adding our trace
// field, or hands it to Local.
func (m *MTA) deliver(ctx context.Context, it queue.Item) error {
	if it.Meta["local"] != "" {
		l := m.getLocal()
		if l == nil {
			return errors.New("mta: a local delivery but no local deliverer")
		}
		err := l.Deliver(ctx, it.Meta["from"], it.Meta["to"], it.Payload)
		if err == nil {
			m.log.Info("mail delivered locally", "id", it.Meta["id"], "to", it.Meta["to"], "attempt", it.Attempts)
		}
		return err
	}
	data := make([]byte, 0, len(it.Payload)+64)
	data = append(data, mimemsg.TraceHeader+": "+m.cfg.Hostname+"\r\n"...)
	data = append(data, it.Payload...)
	err := m.send.Send(ctx, it.Meta["from"], it.Meta["to"], data)
	if err == nil {
		m.log.Info("mail delivered", "id", it.Meta["id"], "to", it.Meta["to"], "attempt", it.Attempts)
		return nil
	}
	if relay.IsPermanent(err) {
		return queue.Permanent(err)
	}
	return err
}

// failed turns a final failure into a bounce to the sender, unless the
// mail was itself a bounce.
func (m *MTA) failed(ctx context.Context, it queue.Item, cause error) ([]queue.Item, error) {
	if l := m.getLocal(); it.Meta["origin"] != "" && l != nil {
		if errors.Is(cause, queue.ErrExpired) && it.LastError != "" {
			cause = fmt.Errorf("%w (last error: %s)", cause, it.LastError)
		}
		return nil, l.Failed(ctx, it.Meta, cause)
	}
	from := it.Meta["from"]
	if from == "" {
		m.log.Warn("undeliverable bounce dropped", "id", it.Meta["id"], "to", it.Meta["to"], "err", cause)
		return nil, nil
	}
	f := dsn.Failure{Recipient: it.Meta["to"], Diagnostic: cause.Error(), LastTry: time.Now()}
	var re *relay.Error
	if errors.As(cause, &re) {
		f.RemoteMTA = re.Host
		f.Diagnostic = re.Err.Error()
	}
	var se *smtp.SMTPError
	if errors.As(cause, &se) {
		// The remote server's own words, with its status code.
		f.Diagnostic = fmt.Sprintf("%d %s", se.Code, se.Message)
		if ec := se.EnhancedCode; ec[0] == 5 {
			f.Status = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
			f.Diagnostic = fmt.Sprintf("%d %s %s", se.Code, f.Status, se.Message)
		}
	}
	if errors.Is(cause, queue.ErrExpired) {
		f.Status = "4.4.7" // RFC 3463: delivery time expired
		f.Diagnostic = fmt.Sprintf("delivery time expired after %d attempts: %s", it.Attempts, it.LastError)
	}
	arrival, _ := time.Parse(time.RFC3339, it.Meta["arrival"])
	report, ok := m.buildReport(from, []dsn.Failure{f}, it.Payload, arrival)
	if !ok {
		return nil, nil
	}
	return []queue.Item{{
		Key:  "dsn:" + it.Key,
		Dest: DomainOf(from),
		Meta: map[string]string{
			"from": "", "to": from, "arrival": time.Now().UTC().Format(time.RFC3339), "id": it.Meta["id"] + "-dsn",
		},
		Payload: report,
	}}, nil
}

// DomainOf is the lowercased domain of a mail address.
func DomainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return strings.ToLower(addr[at+1:])
	}
	return ""
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func newID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
