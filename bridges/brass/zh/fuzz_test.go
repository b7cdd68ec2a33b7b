package zh

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const fuzzMaxInput = 16 << 10

// checkItemPayload asserts what the relay relies on for a received
// stanza: one stanza, no namespace declaration, within the agreement.
func checkItemPayload(t *testing.T, payload []byte, class brlink.Class, peer, local domainSet) {
	t.Helper()
	el, err := parseStanza(payload, len(payload)+1)
	if err != nil {
		t.Fatalf("received payload %q does not parse: %v", payload, err)
	}
	if !isStanza(el) || el.HasAttr("xmlns") {
		t.Fatalf("received payload %q is not a bare stanza", payload)
	}
	if cond := checkAddressing(el, peer, local); cond != "" {
		t.Fatalf("received payload %q breaks the agreement: %s", payload, cond)
	}
	if fm := el.Child("fmuc", nsFMUC) != nil; fm != (class == brlink.ClassFMUC) {
		t.Fatalf("payload %q classed %d", payload, class)
	}
}

func FuzzZeroHandshakeReceiver(f *testing.F) {
	for _, s := range []string{
		msgAB,
		msgAB + "\n " + msgAB + "</stream:stream>",
		"<message from='mallory@evil.example' to='bob@b.example'/>",
		"<iq xmlns='jabber:server' from='a.example' to='b.example' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
		"<message from='r@conference.a.example/n' to='r@b.example'><fmuc xmlns='http://isode.com/protocol/fmuc' from='x@a.example'/></message>",
		"<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='4294967295'/>",
		"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
		"<stream:stream xmlns='jabber:server'>",
		"<message from='a.example' to='b.example'><![CDATA[x]]></message>",
		"<?xml version='1.0'?><message/>",
	} {
		f.Add(byte(0), []byte(s))
		f.Add(byte(3), []byte(s))
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		cfg := cfgB(Accept, "")
		cfg.Lenient, cfg.SM, cfg.MaxStanza = mode&1 != 0, mode&2 != 0, 4096
		s, err := NewStream(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := &conn{log: s.log}
		d := wire.NewDecoder(io.MultiReader(strings.NewReader(streamPrefix), bytes.NewReader(data)), wire.Limits{MaxStanza: cfg.MaxStanza})
		if tok, err := d.Next(); err != nil || tok.Kind != wire.StreamStart {
			t.Fatalf("implied header: %v", err)
		}
		for range len(data) + 1 { // each token consumes at least one byte
			e, more := s.readOne(c, d)
			switch e.kind {
			case evStanza:
				checkItemPayload(t, e.item.Payload, e.item.Class, s.peer, s.local)
			case evBad:
				if e.cond == "" {
					t.Fatal("stream error without a condition")
				}
			case evR, evA:
				if !cfg.SM {
					t.Fatal("SM element reported with SM off")
				}
			}
			if !more {
				return
			}
		}
		t.Fatal("the receiver did not stop at the end of its input")
	})
}

func FuzzRCOPUPDU(f *testing.F) {
	f.Add(AppendRCOP(nil, RCOPHeader{PDUID: 1}, []byte(msgBA)))
	f.Add(AppendRCOP(nil, RCOPHeader{ConnID: 15, PDUID: 255, Segment: 9, AppID: 0x2000}, []byte("<presence from='b.example' to='a.example'/>")))
	f.Add([]byte{0, 1, 0})
	f.Add(AppendRCOP(nil, RCOPHeader{}, []byte("<message from='b.example' to='a.example'>")))
	f.Add(AppendRCOP(nil, RCOPHeader{}, []byte(msgBA+msgBA)))
	f.Add(append([]byte{0x31, '0', '0', '0', '0', '0'}, msgBA...)) // reserved bits set
	peer, _ := newDomainSet("peer", []string{"b.example"})
	local, _ := newDomainSet("local", []string{"a.example", "conference.a.example"})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		it, h, err := parseUPDU(data, 2048, peer, local)
		if err != nil {
			return
		}
		if len(data) < RCOPHeaderLen {
			t.Fatal("U_PDU shorter than its header accepted")
		}
		// Re-encoding gives the input back except the reserved low
		// nibble of byte 0, which is ignored on receipt and sent as 0.
		if back := AppendRCOP(nil, h, data[RCOPHeaderLen:]); back[0] != data[0]&0xF0 || !bytes.Equal(back[1:], data[1:]) {
			t.Fatalf("header does not round-trip: % x vs % x", back[:6], data[:6])
		}
		checkItemPayload(t, it.Payload, it.Class, peer, local)
	})
}
