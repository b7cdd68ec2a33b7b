package stanza

import "github.com/aldis-im/aldis/xmppcore/wire"

// Namespaces of server and component streams.
const (
	NSDialback     = "jabber:server:dialback"
	NSDialbackFeat = "urn:xmpp:features:dialback"
	NSBidi         = "urn:xmpp:bidi"          // XEP-0288: the request
	NSBidiFeat     = "urn:xmpp:features:bidi" // XEP-0288: the stream feature
	NSComponent    = "jabber:component:accept"
)

// FromPeer moves a stanza read from a server or component stream, whose
// content namespace is ns, into jabber:client, the namespace the router and
// client streams use: the element and the descendants that inherited ns.
func FromPeer(st *wire.Element, ns string) {
	if st.Space != ns {
		return
	}
	st.Space = NSClient
	for c := range st.Elements() {
		if !c.HasAttr("xmlns") {
			FromPeer(c, ns)
		}
	}
}

// AppendForPeer serialises st for a server or component stream. Stanzas
// built in code may declare xmlns='jabber:client' on the top element; on a
// peer's stream the element must inherit the stream's namespace instead, so
// that declaration is left out. st is not changed.
func AppendForPeer(dst []byte, st *wire.Element) []byte {
	if st.Attr("xmlns") != NSClient {
		return st.Append(dst)
	}
	c := *st
	c.Attrs = make([]wire.Attr, 0, len(st.Attrs))
	for _, a := range st.Attrs {
		if a.Name != "xmlns" {
			c.Attrs = append(c.Attrs, a)
		}
	}
	return c.Append(dst)
}
