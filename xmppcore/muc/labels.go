package muc

import (
	"fmt"
	"strings"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Security labels in rooms (XEP-0258 §MUC, PROTOCOLS.md §1.12). A room has
// a label, the default of unlabelled messages that every occupant must be
// cleared for, and a clearance: the labels that may be sent in it. Both are
// label expressions in the room's configuration; empty means the policy's
// defaults.

// Room configuration form fields of XEP-0258.
const (
	fieldLabel           = "sec-label#label"
	fieldCustomLabel     = "sec-label#custom-label"
	fieldClearance       = "sec-label#clearance"
	fieldCustomClearance = "sec-label#custom-clearance"
	catalogPrefix        = "Catalog:"
	customOption         = "Custom"
)

// setupLabels reads the room's label and clearance from its configuration.
// An expression the policy no longer accepts gives nil, which refuses
// everything (fail closed), and is logged.
func (r *room) setupLabels() {
	g := r.s.cfg.Labels
	if g == nil {
		return
	}
	set := g.Policies()
	r.labSet = set
	r.lab, r.clr = set.Governing.DefaultLabel, set.Governing.RoomClearance
	if r.clr == nil {
		r.clr = set.Governing.Top()
	}
	var err error
	if r.conf.Label != "" {
		if r.lab, err = set.ParseLabel(r.conf.Label); err != nil {
			r.s.log.Error("room label does not fit the policy; the room refuses everything", "room", r.jid.String(), "label", r.conf.Label, "err", err)
		}
	}
	if r.conf.Clearance != "" {
		if r.clr, err = set.ParseClearance(r.conf.Clearance); err != nil {
			r.s.log.Error("room clearance does not fit the policy; the room refuses everything", "room", r.jid.String(), "clearance", r.conf.Clearance, "err", err)
		}
	}
}

// clearanceOf is the clearance of a user (bare JID).
func (r *room) clearanceOf(user jid.JID) *label.Clearance {
	return r.s.cfg.Labels.Clearance(r.s.ctx, user)
}

// mayEnter reports whether a user is cleared for the room label.
func (r *room) mayEnter(ev event) bool {
	g := r.s.cfg.Labels
	if g == nil {
		return true
	}
	if g.Policies().Grants(r.clearanceOf(ev.from.Bare()), r.lab) {
		return true
	}
	return g.Deny(seclabel.PointJoin, ev.st, ev.from.Bare().String(), r.lab, nil)
}

// admit checks a message sent to the room (groupchat or private) against
// the room's clearance, stamping it with the room label when it has none,
// and refuses it (E1 for the sender's clearance, E3 for the room's) when it
// may not be sent here. m is the room's own copy, which it may change.
func (r *room) admit(ev event, m *wire.Element) bool {
	g := r.s.cfg.Labels
	if g == nil {
		return true
	}
	user := ev.from.Bare().String()
	mk, err := g.Marking(m)
	if err != nil {
		if g.Deny(seclabel.PointMalformed, ev.st, user, nil, err) {
			return true
		}
		r.deliver(stanza.Error(ev.st, stanza.Modify, "bad-request", "the security label cannot be read"), ev.to, ev.from)
		return false
	}
	if mk == nil || mk.Element.Label == nil {
		if r.lab == nil {
			if g.Deny(seclabel.PointRoom, ev.st, r.jid.String(), nil, fmt.Errorf("room has no valid label")) {
				return true
			}
			r.deliver(seclabel.Forbidden(ev.st, r.jid.String()), ev.to, ev.from)
			return false
		}
		if err := g.Stamp(m, r.lab); err != nil {
			r.s.log.Error("stamp room label", "room", r.jid.String(), "err", err)
			return false
		}
		// The sender's server checked only a label the sender chose.
		if !g.Allowed(m, r.clearanceOf(ev.from.Bare()), r.lab, seclabel.PointIngress, user) {
			r.deliver(seclabel.Forbidden(ev.st, ""), ev.to, ev.from)
			return false
		}
	}
	if !g.Allowed(m, r.clr, r.lab, seclabel.PointRoom, r.jid.String()) {
		r.deliver(seclabel.Forbidden(ev.st, r.jid.String()), ev.to, ev.from)
		return false
	}
	return true
}

// mayReceive decides whether an occupant's user may receive m.
func (r *room) mayReceive(m *wire.Element, o *occupant, point string) bool {
	g := r.s.cfg.Labels
	if g == nil {
		return true
	}
	return g.Allowed(m, r.clearanceOf(o.real), r.lab, point, o.real.String())
}

// labelFields adds the XEP-0258 fields to the configuration form: the
// room label and clearance chosen from the catalog or written out.
func (r *room) labelFields(x *wire.Element) {
	g := r.s.cfg.Labels
	if g == nil {
		return
	}
	p := g.Policies().Governing
	f := field(x, "list-single", fieldLabel, "Room label (the default for unlabelled messages)", r.labelOption())
	for _, it := range p.Catalog {
		if it.Label != nil {
			option(f, it.Selector, catalogPrefix+it.Selector)
		}
	}
	option(f, "Custom (below)", customOption)
	field(x, "text-single", fieldCustomLabel, "Custom room label, e.g. SECRET; Releasable To: GBR", r.conf.Label)
	f = field(x, "list-multi", fieldClearance, "Labels allowed in the room")
	for _, it := range p.Catalog {
		if it.Label != nil {
			option(f, it.Selector, catalogPrefix+it.Selector)
		}
	}
	option(f, "Custom (below)", customOption)
	if r.conf.Clearance != "" {
		f.AddChild(wire.New("value", "")).AddText(customOption)
	}
	field(x, "text-single", fieldCustomClearance, "Custom room clearance, e.g. SECRET; Releasable To: GBR, USA", r.conf.Clearance)
}

// labelOption is the form value of the room's current label.
func (r *room) labelOption() string {
	if r.conf.Label == "" {
		return ""
	}
	p := r.s.cfg.Labels.Policies().Governing
	for _, it := range p.Catalog {
		if it.Label != nil && r.lab != nil && label.Dominates(it.Label, r.lab) && label.Dominates(r.lab, it.Label) {
			return catalogPrefix + it.Selector
		}
	}
	return customOption
}

// applyLabels reads the XEP-0258 fields of a submitted form into c. The
// owner must be cleared for the new room label, and the room clearance
// must admit it, so a room cannot be configured into one nobody may use.
func (r *room) applyLabels(c *roomConfig, fields map[string][]string, owner jid.JID) error {
	g := r.s.cfg.Labels
	if g == nil {
		return nil
	}
	set := g.Policies()
	catalog := func(v string) (*label.Label, error) {
		sel := strings.TrimPrefix(v, catalogPrefix)
		for _, it := range set.Governing.Catalog {
			if it.Label != nil && it.Selector == sel {
				return it.Label, nil
			}
		}
		return nil, fmt.Errorf("%q is not in the label catalog", v)
	}
	if v, ok := fields[fieldLabel]; ok {
		switch sel := first(v); {
		case sel == "":
			c.Label = ""
		case sel == customOption:
			c.Label = strings.TrimSpace(first(fields[fieldCustomLabel]))
		default:
			l, err := catalog(sel)
			if err != nil {
				return fmt.Errorf("%s: %w", fieldLabel, err)
			}
			c.Label = l.String()
		}
	} else if v, ok := fields[fieldCustomLabel]; ok {
		c.Label = strings.TrimSpace(first(v))
	}
	if v, ok := fields[fieldClearance]; ok {
		var labels []*label.Label
		custom := false
		for _, sel := range v {
			if sel == customOption {
				custom = true
				continue
			}
			l, err := catalog(sel)
			if err != nil {
				return fmt.Errorf("%s: %w", fieldClearance, err)
			}
			labels = append(labels, l)
		}
		switch {
		case custom:
			c.Clearance = strings.TrimSpace(first(fields[fieldCustomClearance]))
		case len(labels) == 0:
			c.Clearance = ""
		default:
			cl, err := clearanceOfLabels(labels)
			if err != nil {
				return fmt.Errorf("%s: %w", fieldClearance, err)
			}
			c.Clearance = cl.String()
		}
	} else if v, ok := fields[fieldCustomClearance]; ok {
		c.Clearance = strings.TrimSpace(first(v))
	}
	lab, clr := set.Governing.DefaultLabel, set.Governing.RoomClearance
	if clr == nil {
		clr = set.Governing.Top()
	}
	var err error
	if c.Label != "" {
		if lab, err = set.ParseLabel(c.Label); err != nil {
			return fmt.Errorf("room label: %w", err)
		}
	}
	if c.Clearance != "" {
		if clr, err = set.ParseClearance(c.Clearance); err != nil {
			return fmt.Errorf("room clearance: %w", err)
		}
	}
	if lab != nil && !set.Grants(clr, lab) {
		return fmt.Errorf("the room clearance does not admit the room label %s", lab)
	}
	if lab != nil && !set.Grants(r.clearanceOf(owner.Bare()), lab) {
		return fmt.Errorf("you are not cleared for the room label")
	}
	return nil
}

// clearanceOfLabels is the smallest clearance granting every label: the
// classifications and categories they use.
func clearanceOfLabels(ls []*label.Label) (*label.Clearance, error) {
	p := ls[0].Policy
	var classes []int
	var cats []label.Category
	for _, l := range ls {
		if l.Policy != p {
			return nil, fmt.Errorf("labels of different policies")
		}
		classes = append(classes, l.Class)
		cats = append(cats, l.Cats...)
	}
	return p.NewClearance(classes, cats)
}

// catalogIQ answers a catalog request (XEP-0258) with the items both the
// room's clearance and the user's grant. The user's server asks on the
// user's behalf (from= names the user); a client that asks the room
// directly is its own user.
func (r *room) catalogIQ(ev event, q *wire.Element) {
	g := r.s.cfg.Labels
	if g == nil {
		r.refuse(ev, stanza.Cancel, "service-unavailable", "")
		return
	}
	user := ev.from
	if ev.from.Local() == "" {
		var err error
		user, err = jid.Parse(q.Attr("from"))
		if err != nil || q.Attr("from") == "" || ev.from.String() != r.s.cfg.ServerDomain {
			// Only our own server asks for someone else.
			r.refuse(ev, stanza.Auth, "not-authorized", "")
			return
		}
	}
	uc := r.clearanceOf(user.Bare())
	p := g.Policies().Governing
	if uc != nil {
		p = uc.Policy
	}
	items := seclabel.CatalogItems(p, func(l *label.Label) bool {
		return label.Decide(uc, l) && g.Policies().Grants(r.clr, l)
	})
	res, err := seclabel.CatalogReply(ev.st, q, r.jid.String(), p, items)
	if err != nil {
		r.refuse(ev, stanza.Wait, "internal-server-error", "")
		return
	}
	r.deliver(res, ev.to, ev.from)
}
