package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Multi-user chat (XEP-0045) namespaces.
const (
	nsMUC       = "http://jabber.org/protocol/muc"
	nsMUCUser   = nsMUC + "#user"
	nsMUCOwner  = nsMUC + "#owner"
	nsMUCAdmin  = nsMUC + "#admin"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsDiscoItem = "http://jabber.org/protocol/disco#items"
)

// mucStatus reports whether a room presence or message carries status code.
func mucStatus(e *elem, code string) bool {
	x := e.Child(nsMUCUser, "x")
	if x == nil {
		return false
	}
	for _, c := range x.Children {
		if c.XMLName.Local == "status" && c.Attr("code") == code {
			return true
		}
	}
	return false
}

// isSelfPresence matches the room's presence for the receiving occupant itself.
func isSelfPresence(typ, occupant string) func(*elem) bool {
	return func(e *elem) bool { return isPresence(typ, occupant)(e) && mucStatus(e, "110") }
}

// mucJoin sends the join presence to room/nick, with extra inside the MUC <x/>.
func mucJoin(c *client, occupant, extra string) {
	c.t.Helper()
	c.Send(fmt.Sprintf("<presence to='%s'><x xmlns='%s'>%s</x></presence>", occupant, nsMUC, extra))
}

// enterRoom joins and waits for the self-presence and the subject, which
// ends the join sequence; it returns the self-presence.
func enterRoom(c *client, room, nick, extra string) *elem {
	c.t.Helper()
	mucJoin(c, room+"/"+nick, extra)
	self := c.Expect("self-presence in "+room, isSelfPresence("", room+"/"+nick))
	c.Expect("the subject of "+room, func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Child("", "subject") != nil && strings.HasPrefix(e.Attr("from"), room)
	})
	return self
}

// createRoom creates room as an instant room (XEP-0045 §10.1.2).
func createRoom(c *client, room, nick string) {
	c.t.Helper()
	self := enterRoom(c, room, nick, "")
	if !mucStatus(self, "201") {
		c.t.Fatalf("%s: creating %s: self-presence %s lacks status 201", c.name, room, self)
	}
	c.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'/></query>", nsMUCOwner))
}

// TestMUCRoom: three client programs (two mellium sessions and slixmpp's
// XEP-0045 plugin) share a room while a fourth occupant's connection has
// stopped reading. The stalled occupant must not slow anyone down: a burst
// reaches the others in full, and slixmpp joins and talks meanwhile.
func TestMUCRoom(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		srv.AddUser(u, u+"-secret")
	}
	room := "coven@conference." + srv.Domain
	occ := func(nick string) string { return room + "/" + nick }

	// The service is listed by the server and describes itself.
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	items := alice.IQResult("get", srv.Domain, "<query xmlns='"+nsDiscoItem+"'/>")
	if it := items.Path("query", "item"); it == nil || it.Attr("jid") != "conference."+srv.Domain {
		t.Errorf("server disco#items %s, want the conference service", items)
	}
	info := alice.IQResult("get", "conference."+srv.Domain, "<query xmlns='"+nsDiscoInfo+"'/>")
	if id := info.Path("query", "identity"); id == nil || id.Attr("category") != "conference" || id.Attr("type") != "text" {
		t.Errorf("service disco#info %s, want identity conference/text", info)
	}

	createRoom(alice, room, "alice")
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob arrives", isPresence("", occ("bob")))

	// Dave connects through a proxy that can stop reading for him.
	proxy := newStallProxy(t, srv.Addr)
	dave := online(t, &server{t: t, Domain: srv.Domain, Addr: proxy.Addr()}, "dave", "dave-secret", loginOpts{})
	enterRoom(dave, room, "dave", "")
	alice.Expect("dave arrives", isPresence("", occ("dave")))
	bob.Expect("dave arrives", isPresence("", occ("dave")))
	proxy.Stall()

	const burst = 1500
	pad := strings.Repeat("·", 60)
	began := time.Now()
	for i := range burst {
		alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='b%d'><body>burst %d %s</body></message>", room, i, i, pad))
	}
	for i := range burst {
		m := bob.Expect(fmt.Sprintf("burst message %d", i), isMessage(occ("alice"), fmt.Sprintf("burst %d %s", i, pad)))
		if m.Attr("id") != fmt.Sprintf("b%d", i) {
			t.Fatalf("burst message %d has id %q, want the sender's", i, m.Attr("id"))
		}
	}
	took := time.Since(began)
	t.Logf("%d messages reached bob in %v while dave was stalled", burst, took)
	if took > 30*time.Second {
		t.Errorf("the burst took %v to reach bob: a stalled occupant slowed the room", took)
	}

	// slixmpp joins while dave is still stalled, and talks.
	carol := startSlixmppMUC(t, srv, "--jid", srv.JID("carol"), "--password", "carol-secret",
		"--room", room, "--nick", "carol", "--history", "5", "--say", "hello from slixmpp",
		"--expect", "hello from alice", "--expect", "hello from bob")
	joined := carol.wait(t, "joined")
	t.Logf("slixmpp joined: %v", joined)
	if codes := fmt.Sprint(joined["codes"]); !strings.Contains(codes, "110") {
		t.Errorf("slixmpp's self-presence codes %s lack 110", codes)
	}
	if joined.str("role") != "participant" || joined.str("affiliation") != "none" {
		t.Errorf("slixmpp joined as %s/%s, want participant/none", joined.str("role"), joined.str("affiliation"))
	}
	if occupants := joined.strs("occupants"); !slices.Contains(occupants, "alice") || !slices.Contains(occupants, "bob") {
		t.Errorf("slixmpp saw occupants %q, want alice and bob", occupants)
	}
	wantHistory := []string{}
	for i := burst - 5; i < burst; i++ {
		wantHistory = append(wantHistory, fmt.Sprintf("burst %d %s", i, pad))
	}
	if got := joined.strs("history"); !slices.Equal(got, wantHistory) {
		t.Errorf("slixmpp got history %q, want the last 5 messages", got)
	}
	if got := joined.strs("history_delay_from"); !slices.Equal(got, []string{room}) {
		t.Errorf("history delays from %q, want the room", got)
	}
	alice.Expect("carol arrives", isPresence("", occ("carol")))
	bob.Expect("carol arrives", isPresence("", occ("carol")))
	alice.Expect("carol speaks", isMessage(occ("carol"), "hello from slixmpp"))
	bob.Expect("carol speaks", isMessage(occ("carol"), "hello from slixmpp"))
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s'><body>hello from alice</body></message>", room))
	bob.Send(fmt.Sprintf("<message type='groupchat' to='%s'><body>hello from bob</body></message>", room))

	// A private message between occupants goes through the room.
	bob.Send(fmt.Sprintf("<message type='chat' to='%s'><body>psst</body></message>", occ("alice")))
	pm := alice.Expect("private message", isMessage(occ("bob"), "psst"))
	if pm.Attr("type") != "chat" || pm.Child(nsMUCUser, "x") == nil {
		t.Errorf("private message %s, want type chat with the muc#user marker", pm)
	}

	if s := carol.wait(t, "self_ping"); s["ok"] != true {
		t.Errorf("slixmpp's XEP-0410 self-ping: %v", s)
	}
	carol.wait(t, "done")
	for _, c := range []*client{alice, bob} {
		c.Expect("carol leaves", isPresence("unavailable", occ("carol")))
	}
	got := map[string]bool{}
	for _, s := range carol.all("got") {
		if s.str("frm") == occ("alice") || s.str("frm") == occ("bob") || s.str("frm") == occ("carol") {
			got[s.str("body")] = true
		}
	}
	for _, b := range []string{"hello from alice", "hello from bob", "hello from slixmpp"} {
		if !got[b] {
			t.Errorf("slixmpp did not get %q from the right occupant: %v", b, carol.all("got"))
		}
	}
	t.Logf("dave's session after the burst: ended %s", dave.ended())
	// The room still works for everyone who reads.
	bob.Send(fmt.Sprintf("<message type='groupchat' to='%s'><body>still here</body></message>", room))
	alice.Expect("after all that", isMessage(occ("bob"), "still here"))
	if t.Failed() {
		t.Logf("slixmpp:\n%s", carol)
	}
}

// TestMUCPersistentRoomSurvivesRestart: a persistent room keeps its
// configuration, subject and affiliations when aldis restarts; a temporary
// one does not.
func TestMUCPersistentRoomSurvivesRestart(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	room := "keep@conference." + srv.Domain
	temp := "gone@conference." + srv.Domain

	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"+
		"<field var='muc#roomconfig_persistentroom'><value>1</value></field>"+
		"<field var='muc#roomconfig_roomname'><value>Kept Room</value></field>"+
		"<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>", nsMUCOwner))
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item affiliation='member' jid='%s'/></query>", nsMUCAdmin, srv.JID("bob")))
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>Survives restarts</subject></message>", room))
	alice.Expect("subject reflected", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.ChildText("", "subject") == "Survives restarts"
	})
	createRoom(alice, temp, "alice")

	srv.restart()
	// The rooms close before the sessions do and tell their occupants
	// (status 332), but the router may still be handing those presences
	// to the session when it closes, so they are not guaranteed.
	if p, ok := alice.wait(func(e *elem) bool { return isSelfPresence("unavailable", room+"/alice")(e) }, time.Second); ok && !mucStatus(p, "332") {
		t.Errorf("shutdown presence %s lacks status 332", p)
	} else if !ok {
		t.Logf("the shutdown presence (332) did not reach alice before her session closed")
	}

	alice = online(t, srv, "alice", "alice-secret", loginOpts{})
	self := enterRoom(alice, room, "alice", "")
	if mucStatus(self, "201") {
		t.Errorf("the persistent room was created anew after the restart: %s", self)
	}
	if it := self.Path("x", "item"); it == nil || it.Attr("affiliation") != "owner" {
		t.Errorf("alice's affiliation after the restart: %s", self)
	}
	info := alice.IQResult("get", room, "<query xmlns='"+nsDiscoInfo+"'/>")
	features := map[string]bool{}
	for _, c := range info.Child("", "query").Children {
		if c.XMLName.Local == "feature" {
			features[c.Attr("var")] = true
		}
	}
	if id := info.Path("query", "identity"); id == nil || id.Attr("name") != "Kept Room" {
		t.Errorf("room name after the restart: %s", info)
	}
	for _, f := range []string{"muc_persistent", "muc_membersonly"} {
		if !features[f] {
			t.Errorf("room disco#info after the restart lacks %s: %s", f, info)
		}
	}
	// The member may enter the members-only room, and sees the kept subject.
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	mucJoin(bob, room+"/bob", "")
	bobSelf := bob.Expect("bob's self-presence", isSelfPresence("", room+"/bob"))
	if it := bobSelf.Path("x", "item"); it == nil || it.Attr("affiliation") != "member" {
		t.Errorf("bob's affiliation after the restart: %s", bobSelf)
	}
	subj := bob.Expect("the kept subject", func(e *elem) bool { return e.XMLName.Local == "message" && e.Child("", "subject") != nil })
	if subj.ChildText("", "subject") != "Survives restarts" || subj.Attr("from") != room+"/alice" || subj.Child(nsDelay, "delay") == nil {
		t.Errorf("subject after the restart: %s", subj)
	}
	r := alice.IQ("get", temp, "<query xmlns='"+nsDiscoInfo+"'/>")
	if r.ErrorCondition() != "item-not-found" {
		t.Errorf("the temporary room after the restart: %s, want item-not-found", r)
	}
}

// stallProxy forwards TCP connections to target and can stop reading from
// the server's side, as a client that stops reading its socket does.
type stallProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled bool
	resume  chan struct{} // closed when the stall ends
	conns   []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{t: t, ln: ln, target: target, resume: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

// Stall stops reading from the server until the proxy closes.
func (p *stallProxy) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume:
	default:
		close(p.resume)
	}
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *stallProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		// A small receive buffer toward the server, so that a stall backs
		// up into the server quickly instead of into kernel buffers.
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}); err != nil {
				return err
			}
			return serr
		}}
		upstream, err := d.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, upstream)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(upstream, client)
			upstream.Close()
		}()
		go p.down(upstream, client)
	}
}

// down copies server to client unless stalled.
func (p *stallProxy) down(upstream, client net.Conn) {
	defer client.Close()
	buf := make([]byte, 4096)
	for {
		p.mu.Lock()
		stalled, resume := p.stalled, p.resume
		p.mu.Unlock()
		if stalled {
			<-resume
			return
		}
		n, err := upstream.Read(buf)
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// liveScript is testdata/slixmpp_muc.py running; its observations arrive
// as it makes them.
type liveScript struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	steps  chan step

	mu   sync.Mutex
	seen []step
}

func startSlixmppMUC(t *testing.T, srv *server, args ...string) *liveScript {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	argv := append([]string{"testdata/slixmpp_muc.py", "--addr", srv.Addr, "--debug"}, args...)
	cmd := exec.CommandContext(ctx, debianPython, argv...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &liveScript{cmd: cmd, stderr: &syncBuffer{}, steps: make(chan step, 64)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.steps)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var st step
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				s.steps <- st
			}
		}
	}()
	t.Cleanup(func() {
		<-done
		_ = cmd.Wait()
		cancel()
	})
	return s
}

// wait returns the next observation called name; it fails the test if the
// script ends or reports an exception first.
func (s *liveScript) wait(t *testing.T, name string) step {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case st, ok := <-s.steps:
			if !ok {
				t.Fatalf("slixmpp ended before %q:\n%s", name, s)
			}
			s.mu.Lock()
			s.seen = append(s.seen, st)
			s.mu.Unlock()
			if st.str("step") == "exception" {
				t.Fatalf("slixmpp failed before %q:\n%s", name, s)
			}
			if st.str("step") == name {
				return st
			}
		case <-deadline:
			t.Fatalf("slixmpp did not report %q in time:\n%s", name, s)
		}
	}
}

// all returns the observations called name seen so far.
func (s *liveScript) all(name string) []step {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []step
	for _, st := range s.seen {
		if st.str("step") == name {
			out = append(out, st)
		}
	}
	return out
}

func (s *liveScript) String() string {
	s.mu.Lock()
	var b strings.Builder
	for _, st := range s.seen {
		j, _ := json.Marshal(st)
		b.Write(j)
		b.WriteByte('\n')
	}
	s.mu.Unlock()
	return fmt.Sprintf("observations:\n%sslixmpp log:\n%s", b.String(), tail(s.stderr.String(), 80))
}
