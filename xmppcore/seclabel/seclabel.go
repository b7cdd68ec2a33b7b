// Package seclabel enforces security labels (XEP-0258) on stanzas: it reads and caches labels, stamps defaults, decides, audits and builds the sanitised errors.
//
// A nil *Guard means labels are off: every check passes and nothing is
// stamped, so callers need no separate switch.
package seclabel

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Decision points, as named in metrics and the audit log (PROTOCOLS.md §1.9).
const (
	PointIngress    = "ingress"     // from a local client: the sender's clearance
	PointDelivery   = "delivery"    // to a local user, offline storage included
	PointEgress     = "egress"      // to a remote server or component: the peer's clearance
	PointOffline    = "offline"     // offline message at its later delivery
	PointRoom       = "room"        // MUC submission: the room's clearance
	PointJoin       = "join"        // MUC join: the room label
	PointFanout     = "fanout"      // MUC fan-out to an occupant
	PointHistory    = "history"     // MUC history on join
	PointArchive    = "archive"     // MAM query results
	PointPresence   = "presence"    // label on a presence: a protocol violation
	PointIQ         = "iq"          // label on an iq: a protocol violation
	PointMalformed  = "malformed"   // unreadable label
	PointErrorLabel = "error_label" // error stanza carrying a label: discarded
)

// Mode says what a denial does.
type Mode int

const (
	// Enforce refuses what a clearance does not grant.
	Enforce Mode = iota
	// Warn logs and counts it, and lets it pass.
	Warn
)

// maxCache bounds the parsed-label cache; it is emptied when full.
const maxCache = 4096

// Guard makes the label decisions of one server. It is safe for concurrent use.
type Guard struct {
	dir   *identity.Directory
	local map[string]bool
	mode  Mode
	audit *slog.Logger
	m     *obs.Metrics

	mu     sync.Mutex
	cache  map[string]cached
	ess    map[string]cached              // the same, by ESS base64 text (see essKey)
	stamps map[*label.Label]*wire.Element // labels as stamped, by label
	bufs   sync.Pool                      // serialisation buffers: a cached decision allocates nothing

	denied sync.Map // point → *metrics.Counter
}

type cached struct {
	set *label.Set // the policies m was read under: after a reload it is stale
	m   *label.Marking
	err error
}

// Config configures a Guard.
type Config struct {
	Directory *identity.Directory
	// Local are the server's own domains: their users' clearances are in
	// the directory; anyone else has the clearance of their server as a
	// peer ("peer:<domain>").
	Local []string
	Mode  Mode
	// Audit receives one record per denial; nil discards them.
	Audit   *slog.Logger
	Metrics *obs.Metrics
}

// New builds a guard.
func New(cfg Config) *Guard {
	if cfg.Audit == nil {
		cfg.Audit = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	local := map[string]bool{}
	for _, d := range cfg.Local {
		local[d] = true
	}
	return &Guard{dir: cfg.Directory, local: local, mode: cfg.Mode, audit: cfg.Audit, m: cfg.Metrics, cache: map[string]cached{}, ess: map[string]cached{}, stamps: map[*label.Label]*wire.Element{}}
}

// Clearance is the effective clearance of a user (bare JID): a local
// user's own, or that of their server.
func (g *Guard) Clearance(ctx context.Context, user jid.JID) *label.Clearance {
	if g.local[user.Domain()] {
		return g.dir.User(ctx, user.Bare().String())
	}
	return g.dir.Lookup("peer:" + user.Domain()).Clearance
}

// Reload switches to a new policy set and registered principals (SIGHUP).
// Nothing changes unless all of them fit the new policies; labels read
// under the old ones are read again.
func (g *Guard) Reload(set *label.Set, principals map[string]identity.Spec) error {
	if err := g.dir.Replace(set, principals); err != nil {
		return err
	}
	g.mu.Lock()
	clear(g.cache)
	clear(g.ess)
	clear(g.stamps)
	g.mu.Unlock()
	return nil
}

// Directory is where the guard finds clearances.
func (g *Guard) Directory() *identity.Directory {
	if g == nil {
		return nil
	}
	return g.dir
}

// Policies is the guard's policy set.
func (g *Guard) Policies() *label.Set {
	if g == nil {
		return nil
	}
	return g.dir.Policies()
}

// UserClearance is a local user's effective clearance.
func (g *Guard) UserClearance(ctx context.Context, bare string) *label.Clearance {
	return g.dir.User(ctx, bare)
}

// Count returns the <securitylabel/> children of st (not those nested in
// forwarded payloads, which never authorise the outer stanza) and the first.
func Count(st *wire.Element) (n int, first *wire.Element) {
	for c := range st.Elements() {
		if c.Space == label.NS && c.Local() == "securitylabel" {
			if n == 0 {
				first = c
			}
			n++
		}
	}
	return n, first
}

// Marking reads the label of st: (nil, nil) when it carries none.
func (g *Guard) Marking(st *wire.Element) (*label.Marking, error) {
	n, el := Count(st)
	switch {
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, label.ErrMalformed
	}
	// Most labels are one ESS label (and a display marking): look those up
	// by their base64 text, without serialising the element.
	set := g.Policies()
	if key, ok := essKey(el); ok {
		g.mu.Lock()
		c, hit := g.ess[key]
		g.mu.Unlock()
		if hit && c.set == set {
			return c.m, c.err
		}
		m, err := g.parse(el, set)
		g.mu.Lock()
		if len(g.ess) >= maxCache {
			clear(g.ess)
		}
		g.ess[key] = cached{set: set, m: m, err: err}
		g.mu.Unlock()
		return m, err
	}
	return g.parse(el, set)
}

// essKey returns the base64 text of a <securitylabel/> that holds exactly
// one <label> with one ESS label and at most a plain display marking with
// valid colours: the only things its decision and its validity depend on.
func essKey(sl *wire.Element) (string, bool) {
	key, labels := "", 0
	for c := range sl.Elements() {
		if c.Space != label.NS {
			return "", false
		}
		switch c.Local() {
		case "displaymarking":
			for _, a := range c.Attrs {
				switch a.Name {
				case "fgcolor", "bgcolor":
					if !label.ValidColour(a.Value) {
						return "", false
					}
				case "xmlns":
				default:
					return "", false
				}
			}
			if len(c.Nodes) > 1 || (len(c.Nodes) == 1 && (c.Nodes[0].Elem != nil || len(c.Nodes[0].Text) > 1024)) {
				return "", false
			}
		case "label":
			labels++
			if len(c.Nodes) != 1 || c.Nodes[0].Elem == nil {
				return "", false
			}
			e := c.Nodes[0].Elem
			if e.Space != label.NSESS || e.Local() != "esssecuritylabel" || len(e.Nodes) != 1 || e.Nodes[0].Elem != nil {
				return "", false
			}
			key = e.Nodes[0].Text
		default:
			return "", false
		}
	}
	return key, labels == 1 && len(key) <= label.MaxElementSize
}

func (g *Guard) parse(el *wire.Element, set *label.Set) (*label.Marking, error) {
	bp, _ := g.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := el.Append((*bp)[:0])
	defer func() { *bp = buf; g.bufs.Put(bp) }()
	if len(buf) > label.MaxElementSize {
		return nil, label.ErrMalformed
	}
	g.mu.Lock()
	c, ok := g.cache[string(buf)]
	g.mu.Unlock()
	if ok && c.set == set {
		return c.m, c.err
	}
	e, err := label.ParseElement(buf)
	var m *label.Marking
	if err == nil {
		m, err = set.Resolve(e)
	}
	g.mu.Lock()
	if len(g.cache) >= maxCache {
		clear(g.cache)
	}
	g.cache[string(buf)] = cached{set: set, m: m, err: err}
	g.mu.Unlock()
	return m, err
}

// Effective is the label that applies to st for a principal cleared under
// clearance's policy: the stanza's own, or def when it carries none (or an
// empty <label/>). nil means none applies, which is denied.
func (g *Guard) Effective(st *wire.Element, c *label.Clearance, def *label.Label) (*label.Label, error) {
	m, err := g.Marking(st)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, nil
	}
	if def != nil && def.Policy != c.Policy {
		def, _ = g.Policies().Translate(def, c.Policy)
	}
	return g.Policies().For(m, c.Policy, def), nil
}

// Default is the governing policy's default label.
func (g *Guard) Default() *label.Label {
	if g == nil || g.Policies().Governing == nil {
		return nil
	}
	return g.Policies().Governing.DefaultLabel
}

// EgressAllowed decides, as Allowed does, whether st may leave for an
// external principal ("peer:<domain>": a remote server, a component, a
// constrained link), with the clearance and default label the directory
// has for it now.
func (g *Guard) EgressAllowed(st *wire.Element, principal string) bool {
	p := g.dir.Lookup(principal)
	return g.Allowed(st, p.Clearance, p.Label, PointEgress, principal)
}

// Allowed decides whether a principal with clearance c may receive st,
// whose unlabelled form has the label def (nil: the governing default).
// A denial is audited and counted under point; in warn mode it is then
// allowed anyway. Error stanzas are never subject to label checks.
func (g *Guard) Allowed(st *wire.Element, c *label.Clearance, def *label.Label, point, principal string) bool {
	if g == nil || st.Attr("type") == "error" {
		return true
	}
	if def == nil {
		def = g.Default()
	}
	l, err := g.Effective(st, c, def)
	if err == nil && label.Decide(c, l) {
		return true
	}
	return g.Deny(point, st, principal, l, err)
}

// Permits is Allowed without auditing a denial, for a caller that asks
// Allowed when the answer is no: false is also what warn mode would let
// pass.
func (g *Guard) Permits(st *wire.Element, c *label.Clearance, def *label.Label) bool {
	if g == nil || st.Attr("type") == "error" {
		return true
	}
	if def == nil {
		def = g.Default()
	}
	l, err := g.Effective(st, c, def)
	return err == nil && label.Decide(c, l)
}

// Deny records a refusal and reports whether to let the stanza pass anyway
// (warn mode). l may be nil.
func (g *Guard) Deny(point string, st *wire.Element, principal string, l *label.Label, err error) bool {
	g.counter(point).Inc()
	attrs := []any{
		"point", point, "principal", principal,
		"stanza", st.Local(), "from", st.Attr("from"), "to", st.Attr("to"), "id", st.Attr("id"),
		"mode", g.modeName(),
	}
	if l != nil {
		attrs = append(attrs, "label", l.String())
	}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	g.audit.Warn("security label denied", attrs...)
	return g.mode == Warn
}

func (g *Guard) modeName() string {
	if g.mode == Warn {
		return "warn"
	}
	return "enforce"
}

func (g *Guard) counter(point string) *metrics.Counter {
	if c, ok := g.denied.Load(point); ok {
		return c.(*metrics.Counter)
	}
	c := g.m.Counter(`aldis_label_denied_total{point="` + point + `"}`)
	g.denied.Store(point, c)
	return c
}

// Verdict is what Ingress decided.
type Verdict int

const (
	// Pass: go on with the stanza (it may have been stamped).
	Pass Verdict = iota
	// Refuse: send Reply to the sender and stop.
	Refuse
	// Discard: drop the stanza silently.
	Discard
)

// Ingress checks a stanza entering from a client or a channel whose
// clearance is sender, and stamps an unlabelled message with def (or the
// governing default when def is nil). It implements the ingress rules of
// PROTOCOLS.md §1.9 and returns the sanitised error of §1.11 to send back
// on refusal.
//
// sender is called only for messages. With stamp false an unlabelled
// message passes unstamped, for a service (a MUC room) that applies a
// default of its own and checks it.
func (g *Guard) Ingress(st *wire.Element, sender func() *label.Clearance, def *label.Label, principal string, stamp bool) (Verdict, *wire.Element) {
	if g == nil {
		return Pass, nil
	}
	n, _ := Count(st)
	switch st.Local() {
	case "presence":
		if n == 0 {
			return Pass, nil
		}
		if g.Deny(PointPresence, st, principal, nil, nil) {
			return Pass, nil
		}
		if st.Attr("type") == "error" {
			return Discard, nil
		}
		return Refuse, stanza.Error(st, stanza.Modify, "bad-request", "security labels are not allowed in presence")
	case "iq":
		if n == 0 {
			return Pass, nil
		}
		if g.Deny(PointIQ, st, principal, nil, nil) {
			return Pass, nil
		}
		if t := st.Attr("type"); t == "error" || t == "result" {
			return Discard, nil
		}
		return Refuse, stanza.Error(st, stanza.Modify, "bad-request", "security labels are not allowed in iq")
	case "message":
	default:
		return Pass, nil
	}
	if st.Attr("type") == "error" {
		if n > 0 {
			// X258: an error carrying a label must be discarded.
			g.Deny(PointErrorLabel, st, principal, nil, nil)
			return Discard, nil
		}
		return Pass, nil
	}
	if def == nil {
		def = g.Default()
	}
	m, err := g.Marking(st)
	if err != nil {
		point := PointMalformed
		if errors.Is(err, label.ErrUndefined) {
			// A value the policy does not define: the decision is Deny.
			point = PointIngress
		}
		if g.Deny(point, st, principal, nil, err) {
			return Pass, nil
		}
		if point == PointIngress {
			return Refuse, Forbidden(st, "")
		}
		return Refuse, stanza.Error(st, stanza.Modify, "bad-request", "the security label cannot be read")
	}
	if m == nil || m.Element.Label == nil {
		if !stamp {
			return Pass, nil
		}
		// Unlabelled, or an empty <label/>: the default applies and is stamped.
		if def == nil {
			if g.Deny(PointIngress, st, principal, nil, errors.New("no label and no default label")) {
				return Pass, nil
			}
			return Refuse, Forbidden(st, "")
		}
		if err := g.Stamp(st, def); err != nil {
			g.Deny(PointMalformed, st, principal, def, err)
			return Refuse, stanza.Error(st, stanza.Wait, "internal-server-error", "")
		}
		c := sender()
		if !g.Policies().Grants(c, def) {
			if g.Deny(PointIngress, st, principal, def, nil) {
				return Pass, nil
			}
			return Refuse, Forbidden(st, "")
		}
		return Pass, nil
	}
	c := sender()
	l, _ := g.Effective(st, c, def)
	if !label.Decide(c, l) {
		if g.Deny(PointIngress, st, principal, l, nil) {
			return Pass, nil
		}
		return Refuse, Forbidden(st, "")
	}
	if m != nil && m.Element.Label != nil {
		setDisplay(st, m)
	}
	return Pass, nil
}

// Stamp replaces st's label (if any) with l. The element for each label
// is built once and shared by every stanza stamped with it, so nothing may
// change a stamped label in place (replace it instead).
func (g *Guard) Stamp(st *wire.Element, l *label.Label) error {
	g.mu.Lock()
	el, ok := g.stamps[l]
	g.mu.Unlock()
	if !ok {
		b, err := l.Marshal()
		if err != nil {
			return err
		}
		if el, err = wire.ParseElement(string(b)); err != nil {
			return err
		}
		g.mu.Lock()
		if len(g.stamps) >= maxCache {
			clear(g.stamps)
		}
		g.stamps[l] = el
		g.mu.Unlock()
	}
	st.RemoveChildren("securitylabel", label.NS)
	// Shared, not copied: a stamped label is never changed in place.
	st.AddChild(el)
	return nil
}

// setDisplay replaces the display marking a sender chose with the one the
// policy prescribes, so that nobody is shown "UNCLASSIFIED" on a SECRET
// label. A label under no known policy keeps its own.
func setDisplay(st *wire.Element, m *label.Marking) {
	l := m.Primary
	if l == nil && len(m.Equivalents) > 0 {
		l = m.Equivalents[0]
	}
	_, el := Count(st)
	if l == nil || el == nil {
		return
	}
	dm := l.Display()
	d := wire.New("displaymarking", "")
	d.SetAttr("fgcolor", dm.FG).SetAttr("bgcolor", dm.BG)
	d.AddText(dm.Text)
	el.RemoveChildren("displaymarking", label.NS)
	el.Nodes = append([]wire.Node{{Elem: d}}, el.Nodes...)
}

// Strip removes any label from st (a MUC subject change carries none).
func Strip(st *wire.Element) { st.RemoveChildren("securitylabel", label.NS) }

// Rewrite returns st with its label rewritten for a principal cleared under
// policy p (PROTOCOLS.md §1.7): the label under p becomes the primary one
// and the original primary is kept as an equivalent, so a client shows the
// marking of its own policy. st itself is not changed; it is returned as is
// when it needs no rewrite or none is possible. Equivalents in formats the
// server cannot read are dropped from the rewritten label.
func (g *Guard) Rewrite(st *wire.Element, p *label.Policy) *wire.Element {
	if g == nil || p == nil || st.Attr("type") == "error" {
		return st
	}
	m, err := g.Marking(st)
	if err != nil || m == nil || m.Primary == nil || m.Primary.Policy == p {
		return st
	}
	l := g.Policies().For(m, p, nil)
	if l == nil {
		return st
	}
	eqs := []*label.Label{m.Primary}
	for _, e := range m.Equivalents {
		if e != l {
			eqs = append(eqs, e)
		}
	}
	b, err := l.Marshal(eqs...)
	if err != nil {
		return st
	}
	el, err := wire.ParseElement(string(b))
	if err != nil {
		return st
	}
	out := st.Copy()
	out.RemoveChildren("securitylabel", label.NS)
	out.AddChild(el)
	return out
}

// Forbidden is the sanitised refusal E1/E2/E3 of PROTOCOLS.md §1.11:
// addresses swapped, the same id, a forbidden error of type auth (by the
// room when by is set), and nothing else: no body, subject or label.
func Forbidden(st *wire.Element, by string) *wire.Element {
	e := stanza.Error(st, stanza.Auth, "forbidden", "")
	if by != "" {
		e.Child("error", "").SetAttr("by", by)
	}
	return e
}
