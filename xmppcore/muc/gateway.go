package muc

import "slices"

// A trusted gateway (a domain in Config.Observers, such as the IRC gateway)
// shows the users of another network as occupants. It knows their standing
// there — a channel operator, a voiced user in a moderated channel, a kick,
// a netsplit — which the room cannot derive from affiliations it does not
// hold, so the room takes what the gateway's presence claims in a muc#user
// <x/>: <item role='…'/> on an available presence; status codes 307 or 333
// with <item><actor nick='…'/><reason>…</reason></item> on an unavailable
// one. Presence from anyone else never sets these.

// gatewayExitCodes are the status codes a gateway may give an occupant's
// departure: kicked (307) and removed by an error or a netsplit (333).
var gatewayExitCodes = []string{"307", "333"}

// isGateway reports whether the session's domain is a trusted gateway.
func (r *room) isGateway(ev event) bool {
	return r.s.observers[ev.from.Domain()]
}

// gatewayRole is the role a gateway occupant's available presence claims.
func (r *room) gatewayRole(ev event) (role, bool) {
	if !r.isGateway(ev) {
		return roleNone, false
	}
	x := ev.st.Child("x", NSUser)
	if x == nil {
		return roleNone, false
	}
	it := x.Child("item", "")
	if it == nil {
		return roleNone, false
	}
	rl, ok := parseRole(it.Attr("role"))
	if !ok || rl == roleNone {
		return roleNone, false
	}
	return rl, true
}

// gatewayExit adds to opts the codes, actor and reason of a gateway
// occupant's unavailable presence.
func (r *room) gatewayExit(ev event, opts *presOpts) {
	if !r.isGateway(ev) {
		return
	}
	x := ev.st.Child("x", NSUser)
	if x == nil {
		return
	}
	for c := range x.Elements() {
		if code := c.Attr("code"); c.Local() == "status" && slices.Contains(gatewayExitCodes, code) && !slices.Contains(opts.codes, code) {
			opts.codes = append(opts.codes, code)
		}
	}
	if it := x.Child("item", ""); it != nil {
		if a := it.Child("actor", ""); a != nil {
			opts.actor = a.Attr("nick")
		}
		opts.reason = it.ChildText("reason", "")
	}
}
