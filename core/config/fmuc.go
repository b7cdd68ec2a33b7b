package config

import (
	"fmt"
	"strings"
	"time"
)

// MUCFederation is one [[muc.federate]]: a local room that joins a remote room (XEP-0289 FMUC).
// Only the joining side is configured; the joined side lists us in muc.federation_from.
type MUCFederation struct {
	// Room is the local room: its node ("ops", on the primary domain's chat service) or its bare JID.
	Room string `toml:"room"`
	// With is the remote room's bare JID, e.g. "ops@conference.shore.example".
	With string `toml:"with"`
	// Mode is "primary-primary" (both rooms work while the link is down) or "primary-replica"
	// (the remote room is the primary: local messages wait for its echo).
	Mode string `toml:"mode"`
	// GhostGrace is how long the remote occupants stay after the link is lost; 0 removes them at once.
	GhostGrace time.Duration `toml:"ghost_grace"`
}

// maxGhostGrace bounds muc ghost grace periods: hours make sense on HF, days are a unit mistake.
const maxGhostGrace = 48 * time.Hour

// FederatedRoom returns the bare JID of a [[muc.federate]] room: Room as given when it is a JID,
// else Room on the primary domain's chat service.
func (c Config) FederatedRoom(f MUCFederation) string {
	if strings.Contains(f.Room, "@") {
		return f.Room
	}
	return f.Room + "@" + c.MUCDomain()
}

// mucFederationProblems checks muc.federate and muc.federation_from.
func (c Config) mucFederationProblems(ck *checker) {
	chat := map[string]bool{}
	for _, d := range c.Domains() {
		chat[c.MUCDomainOf(d)] = true
	}
	rooms := map[string]bool{}
	for i, f := range c.MUC.Federate {
		key := indexKey("muc.federate", i)
		switch {
		case f.Room == "":
			ck.add("must be set: the local room's name", key+".room", key)
		case strings.ContainsAny(f.Room, "/ "):
			ck.add(fmt.Sprintf("%q must be a room name or a bare room JID", f.Room), key+".room")
		default:
			j := c.FederatedRoom(f)
			_, dom, _ := strings.Cut(j, "@")
			switch {
			case strings.HasPrefix(j, "@") || !chat[dom]:
				ck.add(fmt.Sprintf("%q is not a room of a chat service served here", f.Room), key+".room")
			case rooms[j]:
				ck.add(fmt.Sprintf("%q federates already (earlier in muc.federate): a room joins one room", f.Room), key+".room")
			}
			rooms[j] = true
		}
		if msg := checkBareJID(f.With); f.With == "" {
			ck.add("must be set: the remote room's bare JID", key+".with", key)
		} else if msg != "" {
			ck.add(msg, key+".with")
		} else if _, dom, _ := strings.Cut(f.With, "@"); chat[dom] {
			ck.add(fmt.Sprintf("%q is a room of this server: federate with another server's room", f.With), key+".with")
		}
		if f.Mode != "" {
			ck.oneOf(key+".mode", f.Mode, "primary-primary", "primary-replica")
		}
		ck.durRange(key+".ghost_grace", f.GhostGrace, 0, maxGhostGrace)
	}
	for i, d := range c.MUC.FederationFrom {
		if msg := checkHostname(d); msg != "" {
			ck.add(msg, indexKey("muc.federation_from", i), "muc.federation_from")
		}
	}
	ck.durRange("muc.federation_ghost_grace", c.MUC.FederationGrace, 0, maxGhostGrace)
	if !c.MUC.Enabled && len(c.MUC.Federate) > 0 {
		ck.add("needs muc.enabled", "muc.federate", "muc.enabled")
	}
}
