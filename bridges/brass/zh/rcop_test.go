package zh

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/linksim"
	"github.com/aldis-im/aldis/bridges/brass/relay"
	"github.com/aldis-im/aldis/bridges/brass/sis"
)

var nodeA, nodeB = sis.Addr{Node: 1}, sis.Addr{Node: 2}

// hfLink runs a simulated 2,400 bit/s HF link; MTU 256 keeps the
// too-large boundary quick to cross.
func hfLink(t *testing.T) (*linksim.Sim, string, string) {
	t.Helper()
	s, a, b, _ := hfLinkStop(t)
	return s, a, b
}

// hfLinkStop is hfLink with a function that takes both nodes down.
func hfLinkStop(t *testing.T) (*linksim.Sim, string, string, func()) {
	t.Helper()
	s, err := linksim.New(linksim.Config{ListenA: "127.0.0.1:0", ListenB: "127.0.0.1:0", Rate: 2400,
		Latency: 50 * time.Millisecond, MTU: 256, NodeA: nodeA, NodeB: nodeB})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	a, b := s.Addrs()
	return s, a, b, sync.OnceFunc(stop)
}

func rcopA(node string) RCOPConfig {
	return RCOPConfig{Name: "b", Node: node, Peer: nodeB, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		LocalDomains: []string{"a.example", "conference.a.example"}, PeerDomains: []string{"b.example"}}
}

// rawClient binds a plain SIS client at SAP 6: a peer with no Aldis
// code above the SIS layer.
func rawClient(t *testing.T, node string) *sis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c, err := sis.Dial(ctx, node, sis.ClientConfig{SAP: DefaultSAP, Service: sis.Service{Mode: sis.ModeARQ, Confirm: sis.ConfirmNode}, EventQueue: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// indication returns the next U_PDU the raw client receives.
func indication(t *testing.T, c *sis.Client, d time.Duration) *sis.Primitive {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case p, ok := <-c.Events():
			if !ok {
				t.Fatalf("raw client stopped: %v", c.Err())
			}
			if p.Type == sis.UnidataIndication {
				return p
			}
		case <-timeout:
			t.Fatalf("no U_PDU within %v", d)
		}
	}
}

func TestRCOPOverHF(t *testing.T) {
	sim, nodeAddrA, nodeAddrB := hfLink(t)
	peer := rawClient(t, nodeAddrB)
	a, err := NewRCOP(rcopA(nodeAddrA))
	if err != nil {
		t.Fatal(err)
	}
	ev := run(t, a)
	next(t, ev, relay.Up)

	stanzas := []string{msgAB, "<presence from='room@conference.a.example/n' to='bob@b.example'/>", msgAB}
	var ids []brlink.ID
	air := 0
	for i, s := range stanzas {
		ids = append(ids, send(t, a, byte(i+1), s))
		air += RCOPHeaderLen + len(s)
	}
	for i, s := range stanzas {
		p := indication(t, peer, 10*time.Second)
		want := append([]byte{0x00, byte(i), 0, 0, 0, 0}, s...)
		if !bytes.Equal(p.Data, want) {
			t.Fatalf("U_PDU %d = %q, want header %x then the stanza", i, p.Data, want[:6])
		}
		if p.SrcSAP != DefaultSAP || p.SAP != DefaultSAP {
			t.Fatalf("SAPs %d→%d, want 6", p.SrcSAP, p.SAP)
		}
	}
	// Node confirmations are acknowledgements.
	var acked []brlink.ID
	for len(acked) < len(ids) {
		acked = append(acked, next(t, ev, relay.Acked, relay.Down).IDs...)
	}
	for i := range ids {
		if acked[i] != ids[i] {
			t.Fatalf("acked %v, want %v", acked, ids)
		}
	}

	// The peer's stanza: header stripped, addressing checked (a forged
	// from is dropped, with no stream to report it on).
	for _, s := range []string{
		"<message from='mallory@evil.example' to='alice@a.example'><body>x</body></message>",
		"not xml",
		msgBA,
	} {
		u := AppendRCOP(nil, RCOPHeader{PDUID: 7}, []byte(s))
		if err := peer.Send(context.Background(), sis.Unidata{Dest: nodeA, DestSAP: DefaultSAP, Service: sis.Service{Mode: sis.ModeARQ}, Data: u}); err != nil {
			t.Fatal(err)
		}
	}
	if e := next(t, ev, relay.Received); string(e.Item.Payload) != msgBA {
		t.Fatalf("received %q", e.Item.Payload)
	}

	// Quiet link: nothing else crosses, in either direction: no
	// keepalives, no pings, no XEP-0198.
	none(t, ev, relay.Received, 2*time.Second)
	select {
	case p := <-peer.Events():
		if p.Type == sis.UnidataIndication {
			t.Fatalf("unexpected U_PDU %q", p.Data)
		}
	default:
	}
	st := sim.Stats()
	if st.Delivered[0] != int64(len(stanzas)) || st.AirBytes[0] != int64(air) {
		t.Fatalf("A→B carried %d U_PDUs, %d bytes; want exactly the %d stanzas, %d bytes", st.Delivered[0], st.AirBytes[0], len(stanzas), air)
	}
}

func TestRCOPTooLarge(t *testing.T) {
	_, nodeAddrA, nodeAddrB := hfLink(t)
	peer := rawClient(t, nodeAddrB)
	a, err := NewRCOP(rcopA(nodeAddrA))
	if err != nil {
		t.Fatal(err)
	}
	ev := run(t, a)
	next(t, ev, relay.Up)
	stanzaOf := func(n int) []byte {
		head, tail := "<message from='a.example' to='b.example'><body>", "</body></message>"
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	// MTU 256: 250 bytes of stanza fill a U_PDU; 251 cannot cross.
	if err := a.Send(context.Background(), &relay.Item{ID: brlink.ID{1}, Payload: stanzaOf(251)}); !errors.Is(err, relay.ErrTooLarge) {
		t.Fatalf("251-byte stanza: %v, want ErrTooLarge", err)
	}
	if err := a.Send(context.Background(), &relay.Item{ID: brlink.ID{2}, Payload: stanzaOf(250)}); err != nil {
		t.Fatalf("250-byte stanza: %v", err)
	}
	if p := indication(t, peer, 10*time.Second); len(p.Data) != 256 {
		t.Fatalf("U_PDU of %d bytes", len(p.Data))
	}
	if e := next(t, ev, relay.Acked); e.IDs[0] != (brlink.ID{2}) {
		t.Fatalf("acked %v", e.IDs)
	}
}

// TestRCOPPair runs two bearers over the link, with client delivery
// confirmation, and a peer that binds late: the first attempt is
// rejected (SAP not bound) and the stanza is sent again.
func TestRCOPPair(t *testing.T) {
	_, nodeAddrA, nodeAddrB := hfLink(t)
	ca := rcopA(nodeAddrA)
	ca.ClientConfirm, ca.RetryDelay = true, 300*time.Millisecond
	a, err := NewRCOP(ca)
	if err != nil {
		t.Fatal(err)
	}
	evA := run(t, a)
	next(t, evA, relay.Up)
	id := send(t, a, 1, msgAB)
	time.Sleep(600 * time.Millisecond) // the first copy meets an unbound SAP

	b, err := NewRCOP(RCOPConfig{Name: "a", Node: nodeAddrB, Peer: nodeA, ClientConfirm: true,
		LocalDomains: []string{"b.example"}, PeerDomains: []string{"a.example", "conference.a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	evB := run(t, b)
	next(t, evB, relay.Up)
	if e := next(t, evB, relay.Received); string(e.Item.Payload) != msgAB {
		t.Fatalf("B got %q", e.Item.Payload)
	}
	if e := next(t, evA, relay.Acked, relay.Rejected); e.IDs[0] != id {
		t.Fatalf("acked %v", e.IDs)
	}
	send(t, b, 2, msgBA)
	if e := next(t, evA, relay.Received); string(e.Item.Payload) != msgBA {
		t.Fatalf("A got %q", e.Item.Payload)
	}
	next(t, evB, relay.Acked)
}

func TestRCOPDownWithoutNode(t *testing.T) {
	a, err := NewRCOP(rcopA("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	if err := a.Send(context.Background(), &relay.Item{Payload: []byte(msgAB)}); !errors.Is(err, relay.ErrDown) {
		t.Fatalf("Send with no node = %v, want ErrDown", err)
	}
}

func TestRCOPHeader(t *testing.T) {
	h := RCOPHeader{ConnID: 3, PDUID: 0xFE, Segment: 0x0102, AppID: 0x2000}
	b := AppendRCOP(nil, h, []byte("hi"))
	if want := []byte{0x30, 0xFE, 0x01, 0x02, 0x20, 0x00, 'h', 'i'}; !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	got, data, err := ParseRCOP(b)
	if err != nil || got != h || string(data) != "hi" {
		t.Fatalf("decoded %+v %q %v", got, data, err)
	}
	if _, _, err := ParseRCOP(b[:5]); err == nil {
		t.Fatal("5-byte U_PDU accepted")
	}
	// The low nibble of byte 0 is reserved: a peer that sets it is not
	// refused, and the bits do not leak into the connection ID.
	b[0] |= 0x0F
	if got, _, err := ParseRCOP(b); err != nil || got != h {
		t.Fatalf("reserved bits set: decoded %+v %v, want %+v", got, err, h)
	}
}

// TestRCOPRebind: the node refuses the bind while another client holds
// the SAP; the bearer keeps trying with backoff, comes up once the SAP
// is free, and goes down when the node connection is lost.
func TestRCOPRebind(t *testing.T) {
	_, nodeAddrA, _, stopLink := hfLinkStop(t)
	squatter := rawClient(t, nodeAddrA)
	a, err := NewRCOP(rcopA(nodeAddrA))
	if err != nil {
		t.Fatal(err)
	}
	ev := run(t, a)
	none(t, ev, relay.Up, 300*time.Millisecond)
	squatter.Close()
	next(t, ev, relay.Up)
	if err := a.Send(context.Background(), &relay.Item{Payload: []byte(msgAB)}); err != nil {
		t.Fatalf("Send once bound: %v", err)
	}
	stopLink()
	next(t, ev, relay.Down)
	if err := a.Send(context.Background(), &relay.Item{Payload: []byte(msgAB)}); !errors.Is(err, relay.ErrDown) {
		t.Fatalf("Send after the node went = %v, want ErrDown", err)
	}
}
