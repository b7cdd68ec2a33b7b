package muc

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// roomConfig is a room's configuration (the muc#roomconfig form), stored
// as JSON for persistent rooms.
type roomConfig struct {
	Name          string `json:"name,omitempty"`
	Description   string `json:"description,omitempty"`
	Persistent    bool   `json:"persistent,omitempty"`
	Public        bool   `json:"public"`
	Password      string `json:"password,omitempty"` // non-empty: password-protected
	MembersOnly   bool   `json:"members_only,omitempty"`
	Moderated     bool   `json:"moderated,omitempty"`
	NonAnonymous  bool   `json:"non_anonymous,omitempty"` // whois = anyone
	MaxUsers      int    `json:"max_users"`
	ChangeSubject bool   `json:"change_subject,omitempty"` // participants may change the subject
	AllowPM       string `json:"allow_pm"`                 // anyone, participants, moderators or none
	AllowInvites  bool   `json:"allow_invites,omitempty"`  // occupants may invite to a members-only room
	// NoArchive turns off the archive of a persistent room
	// (muc#roomconfig_enablearchiving false); archiving is on by default.
	NoArchive bool `json:"no_archive,omitempty"`
	// Label and Clearance are the room label and room clearance as label
	// expressions (XEP-0258); empty means the policy's defaults.
	Label     string `json:"label,omitempty"`
	Clearance string `json:"clearance,omitempty"`
	// PresenceBroadcast lists the roles whose presence occupants see
	// (muc#roomconfig_presencebroadcast); nil means every role.
	PresenceBroadcast []string `json:"presence_broadcast,omitempty"`
	// Nicks are the registered nicknames (XEP-0045 §7.10) by bare JID;
	// kept with the configuration, though the form does not show them.
	Nicks map[string]string `json:"nicks,omitempty"`
}

// broadcasts reports whether occupants see the presence of a role.
func (c *roomConfig) broadcasts(rl role) bool {
	if c.PresenceBroadcast == nil {
		return true
	}
	return slices.Contains(c.PresenceBroadcast, rl.String())
}

func defaultConfig(maxUsers int) roomConfig {
	return roomConfig{Public: true, MaxUsers: maxUsers, AllowPM: "anyone"}
}

// normalise brings stored values within what the service allows now.
func (c *roomConfig) normalise(maxUsers int) {
	if c.MaxUsers <= 0 || c.MaxUsers > maxUsers {
		c.MaxUsers = maxUsers
	}
	if !validPM(c.AllowPM) {
		c.AllowPM = "anyone"
	}
}

// validPM reports whether s is a muc#roomconfig_allowpm value.
func validPM(s string) bool {
	switch s {
	case "anyone", "participants", "moderators", "none":
		return true
	}
	return false
}

// ownerIQ handles muc#owner: the configuration form and destruction.
func (r *room) ownerIQ(ev event, q *wire.Element) {
	if r.affiliationOf(ev.from) != affOwner {
		r.refuse(ev, stanza.Auth, "forbidden", "only owners configure the room")
		return
	}
	if ev.st.Attr("type") == "get" {
		res := reply(ev)
		res.AddChild(wire.New("query", NSOwner)).AddChild(r.configForm())
		r.deliver(res, ev.to, ev.from)
		return
	}
	if d := q.Child("destroy", ""); d != nil {
		r.destroy(ev, d)
		return
	}
	x := q.Child("x", NSData)
	if x == nil {
		r.refuse(ev, stanza.Modify, "bad-request", "a data form or destroy is required")
		return
	}
	switch x.Attr("type") {
	case "cancel":
		if r.locked {
			// The creator gave up on configuring a new room (§10.1.3).
			r.destroy(ev, wire.New("destroy", ""))
			return
		}
		r.deliver(reply(ev), ev.to, ev.from)
	case "submit":
		fields := formValues(x)
		conf, err := r.conf.apply(fields, r.s.cfg.MaxOccupants)
		if err == nil {
			err = r.applyLabels(&conf, fields, ev.from)
		}
		var changes []change
		if err == nil {
			changes, err = r.listChanges(fields)
		}
		if err != nil {
			r.refuse(ev, stanza.Modify, "not-acceptable", err.Error())
			return
		}
		if len(changes) > 0 {
			actor := ""
			if o := r.sessions[ev.from]; o != nil {
				actor = o.nick
			}
			r.applyChanges(changes, actor, nil)
		}
		r.configure(ev, conf)
	default:
		r.refuse(ev, stanza.Modify, "bad-request", "the form must be submitted or cancelled")
	}
}

// configure applies a new configuration and tells the occupants what changed.
func (r *room) configure(ev event, conf roomConfig) {
	old, wasLocked, wasLogged := r.conf, r.locked, r.archiving()
	r.conf, r.locked = conf, false
	r.setupLabels()
	switch {
	case conf.Persistent && (!old.Persistent || wasLocked):
		r.saveAll()
	case conf.Persistent:
		r.save()
	case old.Persistent:
		r.unsave()
	}
	r.deliver(reply(ev), ev.to, ev.from)
	if conf.MembersOnly && !old.MembersOnly {
		for _, o := range slices.Clone(r.order) {
			if r.affiliationOf(o.real) < affMember {
				r.dropOccupant(o)
				r.tellSelf(o, presOpts{unavailable: true, codes: []string{"322"}})
				r.broadcastPresence(o, presOpts{unavailable: true, codes: []string{"322"}}, false)
			}
		}
	}
	if !wasLocked {
		// Status codes for the change (§10.2.1): 104, and 172/173 when
		// the room's anonymity changed.
		codes := []string{"104"}
		switch {
		case conf.NonAnonymous && !old.NonAnonymous:
			codes = append(codes, "172")
		case !conf.NonAnonymous && old.NonAnonymous:
			codes = append(codes, "173")
		}
		switch logged := r.archiving(); {
		case logged && !wasLogged:
			codes = append(codes, "170")
		case !logged && wasLogged:
			codes = append(codes, "171")
		}
		m := wire.New("message", "")
		m.SetAttr("from", r.jid.String()).SetAttr("type", "groupchat").SetAttr("id", randomID())
		x := m.AddChild(wire.New("x", NSUser))
		for _, c := range codes {
			x.AddChild(wire.New("status", "")).SetAttr("code", c)
		}
		r.broadcast(m, r.jid)
	}
	r.publish()
}

// destroy ends the room (§10.9): every occupant is told, with the
// alternate venue and reason the owner gave, then the owner gets its result.
func (r *room) destroy(ev event, d *wire.Element) {
	de := wire.New("destroy", "")
	if alt := d.Attr("jid"); alt != "" {
		j, err := jid.Parse(alt)
		if err != nil {
			r.refuse(ev, stanza.Modify, "jid-malformed", "the alternate venue is not a JID")
			return
		}
		de.SetAttr("jid", j.String())
	}
	if reason := d.ChildText("reason", ""); reason != "" {
		de.AddChild(wire.New("reason", "")).AddText(reason)
	}
	if pw := d.ChildText("password", ""); pw != "" {
		de.AddChild(wire.New("password", "")).AddText(pw)
	}
	for _, o := range slices.Clone(r.order) {
		r.dropOccupant(o)
		r.tellSelf(o, presOpts{unavailable: true, destroy: de})
	}
	r.destroyed = true
	if r.conf.Persistent {
		r.unsave()
	}
	r.s.forget(r)
	r.publish()
	r.deliver(reply(ev), ev.to, ev.from)
}

// configForm is the muc#roomconfig form with the current values.
func (r *room) configForm() *wire.Element {
	c := r.conf
	x := wire.New("x", NSData)
	x.SetAttr("type", "form")
	x.AddChild(wire.New("title", "")).AddText("Configuration for " + r.jid.String())
	hidden(x, "FORM_TYPE", NSRoomConfig)
	field(x, "text-single", "muc#roomconfig_roomname", "Natural-language room name", c.Name)
	field(x, "text-single", "muc#roomconfig_roomdesc", "Short description of the room", c.Description)
	field(x, "boolean", "muc#roomconfig_persistentroom", "Make the room persistent", boolValue(c.Persistent))
	field(x, "boolean", "muc#roomconfig_publicroom", "Make the room publicly searchable", boolValue(c.Public))
	field(x, "boolean", "muc#roomconfig_membersonly", "Make the room members-only", boolValue(c.MembersOnly))
	field(x, "boolean", "muc#roomconfig_moderatedroom", "Make the room moderated", boolValue(c.Moderated))
	whois := "moderators"
	if c.NonAnonymous {
		whois = "anyone"
	}
	f := field(x, "list-single", "muc#roomconfig_whois", "Who may discover real JIDs?", whois)
	option(f, "Moderators only", "moderators")
	option(f, "Anyone", "anyone")
	field(x, "boolean", "muc#roomconfig_passwordprotectedroom", "Password required to enter", boolValue(c.Password != ""))
	field(x, "text-private", "muc#roomconfig_roomsecret", "Password", c.Password)
	f = field(x, "list-single", "muc#roomconfig_maxusers", "Maximum number of occupants", strconv.Itoa(c.MaxUsers))
	for _, n := range maxUsersOptions(r.s.cfg.MaxOccupants, c.MaxUsers) {
		option(f, "", strconv.Itoa(n))
	}
	field(x, "boolean", "muc#roomconfig_changesubject", "Allow occupants to change the subject", boolValue(c.ChangeSubject))
	f = field(x, "list-single", "muc#roomconfig_allowpm", "Who may send private messages?", c.AllowPM)
	for _, p := range []string{"anyone", "participants", "moderators", "none"} {
		option(f, "", p)
	}
	field(x, "boolean", "muc#roomconfig_allowinvites", "Allow occupants to invite others", boolValue(c.AllowInvites))
	roles := c.PresenceBroadcast
	if roles == nil {
		roles = allRoles
	}
	f = field(x, "list-multi", "muc#roomconfig_presencebroadcast", "Roles whose presence is broadcast", roles...)
	for _, rl := range allRoles {
		option(f, "", rl)
	}
	field(x, "jid-multi", "muc#roomconfig_roomowners", "Full list of room owners", r.affiliated(affOwner)...)
	field(x, "jid-multi", "muc#roomconfig_roomadmins", "Full list of room admins", r.affiliated(affAdmin)...)
	if r.s.cfg.Archive != nil {
		field(x, "boolean", "muc#roomconfig_enablearchiving", "Archive messages (persistent rooms only)", boolValue(!c.NoArchive))
	}
	r.labelFields(x)
	return x
}

// allRoles are the roles whose presence a room may broadcast.
var allRoles = []string{"moderator", "participant", "visitor"}

// affiliated lists the bare JIDs with an affiliation, sorted.
func (r *room) affiliated(a affiliation) []string {
	var out []string
	for j, e := range r.affs {
		if e.aff == a {
			out = append(out, j.String())
		}
	}
	slices.Sort(out)
	return out
}

// listChanges turns the owner and admin lists of a submitted form into
// affiliation changes: listed JIDs get the affiliation, those no longer
// listed lose it.
func (r *room) listChanges(fields map[string][]string) ([]change, error) {
	var changes []change
	for _, l := range []struct {
		name string
		aff  affiliation
	}{{"muc#roomconfig_roomowners", affOwner}, {"muc#roomconfig_roomadmins", affAdmin}} {
		v, ok := fields[l.name]
		if !ok {
			continue
		}
		want := map[jid.JID]bool{}
		for _, s := range v {
			if strings.TrimSpace(s) == "" {
				continue
			}
			j, err := jid.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a JID", l.name, s)
			}
			want[j.Bare()] = true
		}
		for j := range want {
			if r.affs[j].aff != l.aff {
				changes = append(changes, change{user: j, aff: l.aff})
			}
		}
		for j, e := range r.affs {
			if e.aff == l.aff && !want[j] {
				changes = append(changes, change{user: j, aff: affNone})
			}
		}
	}
	if len(changes) > 0 && r.ownersAfter(changes) == 0 {
		return nil, fmt.Errorf("a room needs at least one owner")
	}
	return changes, nil
}

func maxUsersOptions(limit, current int) []int {
	var out []int
	for _, n := range []int{10, 20, 30, 50, 100, 200, 500, 1000, 5000} {
		if n < limit {
			out = append(out, n)
		}
	}
	out = append(out, limit)
	if !slices.Contains(out, current) {
		out = append(out, current)
		slices.Sort(out)
	}
	return out
}

// apply returns c changed by a submitted form; fields it does not know are
// ignored, and fields left out keep their value (an empty form makes an
// instant room).
func (c roomConfig) apply(fields map[string][]string, maxUsers int) (roomConfig, error) {
	if ft, ok := fields["FORM_TYPE"]; ok && first(ft) != NSRoomConfig {
		return c, fmt.Errorf("FORM_TYPE is not %s", NSRoomConfig)
	}
	boolean := func(name string, dst *bool) error {
		v, ok := fields[name]
		if !ok {
			return nil
		}
		b, err := parseBool(first(v))
		if err != nil {
			return fmt.Errorf("%s: %q is not a boolean", name, first(v))
		}
		*dst = b
		return nil
	}
	text := func(name string, dst *string) {
		if v, ok := fields[name]; ok {
			*dst = first(v)
		}
	}
	text("muc#roomconfig_roomname", &c.Name)
	text("muc#roomconfig_roomdesc", &c.Description)
	archive := !c.NoArchive
	protected := c.Password != ""
	secret := c.Password
	text("muc#roomconfig_roomsecret", &secret)
	if _, ok := fields["muc#roomconfig_passwordprotectedroom"]; !ok && secret != c.Password {
		protected = secret != ""
	}
	for name, dst := range map[string]*bool{
		"muc#roomconfig_persistentroom":        &c.Persistent,
		"muc#roomconfig_publicroom":            &c.Public,
		"muc#roomconfig_membersonly":           &c.MembersOnly,
		"muc#roomconfig_moderatedroom":         &c.Moderated,
		"muc#roomconfig_changesubject":         &c.ChangeSubject,
		"muc#roomconfig_allowinvites":          &c.AllowInvites,
		"muc#roomconfig_passwordprotectedroom": &protected,
		"muc#roomconfig_enablearchiving":       &archive,
	} {
		if err := boolean(name, dst); err != nil {
			return c, err
		}
	}
	c.NoArchive = !archive
	switch {
	case protected && secret == "":
		return c, fmt.Errorf("a password-protected room needs muc#roomconfig_roomsecret")
	case protected:
		c.Password = secret
	default:
		c.Password = ""
	}
	if v, ok := fields["muc#roomconfig_whois"]; ok {
		switch first(v) {
		case "moderators":
			c.NonAnonymous = false
		case "anyone":
			c.NonAnonymous = true
		default:
			return c, fmt.Errorf("muc#roomconfig_whois: %q is not moderators or anyone", first(v))
		}
	}
	if v, ok := fields["muc#roomconfig_maxusers"]; ok {
		s := first(v)
		if s == "none" || s == "" {
			c.MaxUsers = maxUsers
		} else if n, err := strconv.Atoi(s); err != nil || n < 1 || n > maxUsers {
			return c, fmt.Errorf("muc#roomconfig_maxusers: %q is not a number from 1 to %d", s, maxUsers)
		} else {
			c.MaxUsers = n
		}
	}
	if v, ok := fields["muc#roomconfig_presencebroadcast"]; ok {
		c.PresenceBroadcast = []string{}
		for _, rl := range v {
			if !slices.Contains(allRoles, rl) {
				return c, fmt.Errorf("muc#roomconfig_presencebroadcast: %q is not one of moderator, participant, visitor", rl)
			}
			if !slices.Contains(c.PresenceBroadcast, rl) {
				c.PresenceBroadcast = append(c.PresenceBroadcast, rl)
			}
		}
		if len(c.PresenceBroadcast) == len(allRoles) {
			c.PresenceBroadcast = nil
		}
	}
	if v, ok := fields["muc#roomconfig_allowpm"]; ok {
		if !validPM(first(v)) {
			return c, fmt.Errorf("muc#roomconfig_allowpm: %q is not one of anyone, participants, moderators, none", first(v))
		}
		c.AllowPM = first(v)
	}
	return c, nil
}
