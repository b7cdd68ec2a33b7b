package loadgen

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// fakeServer is a minimal in-process XMPP server for the generator's own
// tests: STARTTLS or direct TLS, PLAIN and SCRAM, XEP-0077, bind, a
// mandatory legacy session, routing of messages between its sessions, and
// a bare-bones MUC service on fakeMUCDomain (joins, self-presence with
// status 110, 201 and locking for new rooms, the owner's instant
// configuration, groupchat fan-out with the sender's echo).
// It deliberately sends stanzas the generator must cope with: a roster
// push, a ping, presence, a headline and whitespace keepalives.
type fakeServer struct {
	ln       net.Listener
	domain   string
	mode     string // TLSNone, TLSStartTLS or TLSDirect
	tlsConf  *tls.Config
	password string // when set, any user may log in with it
	// reflect makes a session echo the client's own bytes back after
	// initial presence: the server then costs next to nothing, which
	// isolates the generator's cost in BenchmarkLoadgenCost.
	reflect bool

	mu       sync.Mutex
	users    map[string]string
	sessions map[string]*fakeConn
	mucMode  string // "" (no MUC service: joins bounce), fakeMUCLocked or fakeMUCInstant
	rooms    map[string]*fakeRoom

	pongs, pushAcks, sessionIQs, bounced atomic.Int64
	roomConfigs                          atomic.Int64
	wg                                   sync.WaitGroup
}

type fakeConn struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *fakeConn) send(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.w, s)
}

type fakeElem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   []byte     `xml:",innerxml"`
	Text    string     `xml:",chardata"`
}

func (e *fakeElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func newFakeServer(mode, password string, reflect bool) (*fakeServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cert, err := selfSigned("example.test")
	if err != nil {
		ln.Close()
		return nil, err
	}
	f := &fakeServer{
		ln: ln, domain: "example.test", mode: mode, password: password, reflect: reflect,
		tlsConf:  &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"xmpp-client"}},
		users:    map[string]string{},
		sessions: map[string]*fakeConn{},
		rooms:    map[string]*fakeRoom{},
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	return f, nil
}

func startFake(t testing.TB, mode, password string) *fakeServer {
	t.Helper()
	f, err := newFakeServer(mode, password, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ln.Close() })
	return f
}

func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (f *fakeServer) checkPassword(user, pw string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.users[user]; ok {
		return p == pw
	}
	return f.password != "" && pw == f.password
}

func (f *fakeServer) scramServer(mech string) *scram.Server {
	hash := scram.SHA1
	if mech == "SCRAM-SHA-256" {
		hash = scram.SHA256
	}
	s, _ := hash.NewServer(func(user string) (scram.StoredCredentials, error) {
		pw := f.password
		f.mu.Lock()
		if p, ok := f.users[user]; ok {
			pw = p
		}
		f.mu.Unlock()
		c, err := hash.NewClient(user, pw, "")
		if err != nil {
			return scram.StoredCredentials{}, err
		}
		return c.GetStoredCredentials(scram.KeyFactors{Salt: "salt:" + user, Iters: 4096}), nil
	})
	return s
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	var conn net.Conn = c
	if f.mode == TLSDirect {
		tc := tls.Server(c, f.tlsConf)
		if tc.Handshake() != nil {
			return
		}
		conn = tc
	}
	fc := &fakeConn{w: conn}
	secure := f.mode != TLSStartTLS
	var user, jid string
	authed := false
	var conv *scram.ServerConversation
	var scramMech string
	defer func() {
		if jid != "" {
			f.mu.Lock()
			delete(f.sessions, jid)
			f.mu.Unlock()
		}
	}()
	br := bufio.NewReader(conn)
	for {
		// A fresh decoder per stream; br survives SASL restarts so no
		// read-ahead is lost.
		d := xml.NewDecoder(br)
		if !waitHeader(d) {
			return
		}
		// Double quotes here and single elsewhere: the client must take both.
		fc.send(`<?xml version="1.0"?><stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" id="s1" from="` + f.domain + `" version="1.0" xml:lang="en">`)
		switch {
		case !secure:
			fc.send("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
		case !authed:
			fc.send("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>")
		default:
			fc.send("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>")
		}
		restart := false
		for !restart {
			tok, err := d.Token()
			if err != nil {
				return
			}
			var start xml.StartElement
			switch t := tok.(type) {
			case xml.EndElement:
				fc.send("</stream:stream>")
				return
			case xml.StartElement:
				start = t
			default:
				continue
			}
			var e fakeElem
			if err := d.DecodeElement(&e, &start); err != nil {
				return
			}
			switch e.XMLName.Local {
			case "starttls":
				fc.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
				tc := tls.Server(conn, f.tlsConf)
				if tc.Handshake() != nil {
					return
				}
				conn, secure, restart = tc, true, true
				fc = &fakeConn{w: conn}
				br = bufio.NewReader(conn)
			case "auth":
				data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Text))
				switch mech := e.attr("mechanism"); mech {
				case "PLAIN":
					parts := strings.Split(string(data), "\x00")
					if len(parts) == 3 && f.checkPassword(parts[1], parts[2]) {
						user, authed, restart = parts[1], true, true
						fc.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
					} else {
						fc.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
					}
				case "SCRAM-SHA-1", "SCRAM-SHA-256":
					conv, scramMech = f.scramServer(mech).NewConversation(), mech
					ch, err := conv.Step(string(data))
					if err != nil {
						fc.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
						continue
					}
					fc.send("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString([]byte(ch)) + "</challenge>")
				}
			case "response":
				data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Text))
				if conv == nil {
					return
				}
				if conv.Done() {
					// The empty response after a server-final challenge.
					if len(data) != 0 || !conv.Valid() {
						return
					}
					user, authed, restart = conv.Username(), true, true
					fc.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
					continue
				}
				final, err := conv.Step(string(data))
				if err != nil || !conv.Valid() {
					fc.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
					continue
				}
				final64 := base64.StdEncoding.EncodeToString([]byte(final))
				if scramMech == "SCRAM-SHA-1" {
					// Both ways of delivering server-final occur in the wild.
					fc.send("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + final64 + "</challenge>")
					continue
				}
				user, authed, restart = conv.Username(), true, true
				fc.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + final64 + "</success>")
			case "iq":
				if strings.HasSuffix(e.attr("to"), fakeMUCDomain) {
					f.mucIQ(fc, &e, jid)
					continue
				}
				jid = f.handleIQ(fc, &e, user, jid)
			case "presence":
				if e.attr("to") != "" {
					f.mucPresence(fc, &e, jid)
					continue
				}
				if f.reflect {
					// Hand the raw byte stream back to the client.
					io.Copy(conn, br)
					return
				}
				// Noise a real server sends too.
				fc.send("<presence from='" + jid + "' to='" + jid + "'/> \n")
				fc.send("<iq type='set' id='push1' to='" + jid + "'><query xmlns='jabber:iq:roster'><item jid='friend@" + f.domain + "' subscription='none'/></query></iq>")
				fc.send(`<iq type="get" id="ping1" from="` + f.domain + `" to="` + jid + `"><ping xmlns="urn:xmpp:ping"/></iq>`)
				fc.send("<message from='" + f.domain + "' type='headline'><body>Welcome &amp; enjoy</body></message>")
			case "message":
				if e.attr("type") == "groupchat" {
					f.mucMessage(fc, &e, jid)
					continue
				}
				f.route(fc, &e, jid)
			}
		}
	}
}

func waitHeader(d *xml.Decoder) bool {
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s.Name.Local == "stream"
		}
	}
}

// handleIQ answers register, bind and session requests and records the
// client's replies to our ping and roster push; it returns the bound JID.
func (f *fakeServer) handleIQ(fc *fakeConn, e *fakeElem, user, jid string) string {
	id, typ := e.attr("id"), e.attr("type")
	switch {
	case typ == "result" && id == "ping1":
		f.pongs.Add(1)
	case typ == "result" && id == "push1":
		f.pushAcks.Add(1)
	case bytes.Contains(e.Inner, []byte("jabber:iq:register")):
		var q struct {
			Username string `xml:"username"`
			Password string `xml:"password"`
		}
		xml.Unmarshal(e.Inner, &q)
		f.mu.Lock()
		_, exists := f.users[q.Username]
		if !exists {
			f.users[q.Username] = q.Password
		}
		f.mu.Unlock()
		if exists {
			fc.send("<iq type='error' id='" + id + "'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
		} else {
			fc.send("<iq type='result' id='" + id + "'/>")
		}
	case bytes.Contains(e.Inner, []byte("xmpp-bind")):
		var b struct {
			Resource string `xml:"resource"`
		}
		xml.Unmarshal(e.Inner, &b)
		jid = user + "@" + f.domain + "/" + b.Resource
		f.mu.Lock()
		f.sessions[jid] = fc
		f.mu.Unlock()
		fc.send("<iq type='result' id='" + id + "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>" + jid + "</jid></bind></iq>")
	case bytes.Contains(e.Inner, []byte("xmpp-session")):
		f.sessionIQs.Add(1)
		fc.send("<iq type='result' id='" + id + "'/>")
	}
	return jid
}

func (f *fakeServer) route(from *fakeConn, e *fakeElem, jid string) {
	to := e.attr("to")
	f.mu.Lock()
	dst := f.sessions[to]
	f.mu.Unlock()
	if dst == nil {
		f.bounced.Add(1)
		from.send("<message type='error' from='" + to + "' to='" + jid + "' id='" + e.attr("id") + "'>" + string(e.Inner) +
			"<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
		return
	}
	dst.send("<message from='" + jid + "' to='" + to + "' type='chat' id='" + e.attr("id") + "'>" + string(e.Inner) + "</message>\n")
}

const (
	fakeMUCDomain  = "conference.example.test"
	fakeMUCLocked  = "locked"  // new rooms: status 201, locked until the owner configures them
	fakeMUCInstant = "instant" // new rooms: open at once, no status 201
)

type fakeRoom struct {
	locked bool
	owner  string            // full JID of the creator
	nicks  []string          // in join order
	occ    map[string]string // nick → full JID
}

func (f *fakeServer) setMUC(mode string) {
	f.mu.Lock()
	f.mucMode = mode
	f.mu.Unlock()
}

// mucPresence handles a join. The caller's lock order is f.mu, then a
// connection's: sends to occupants happen under f.mu.
func (f *fakeServer) mucPresence(fc *fakeConn, e *fakeElem, jid string) {
	to := e.attr("to")
	room, nick, _ := strings.Cut(to, "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mucMode == "" || !strings.HasSuffix(room, "@"+fakeMUCDomain) || nick == "" {
		fc.send("<presence type='error' from='" + to + "' to='" + jid + "'><error type='cancel'>" +
			"<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
		return
	}
	rm := f.rooms[room]
	created := rm == nil
	if created {
		rm = &fakeRoom{locked: f.mucMode == fakeMUCLocked, owner: jid, occ: map[string]string{}}
		f.rooms[room] = rm
	} else if rm.locked {
		fc.send("<presence type='error' from='" + to + "' to='" + jid + "'><error type='cancel'>" +
			"<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>locked</text></error></presence>")
		return
	}
	for _, n := range rm.nicks {
		other := f.sessions[rm.occ[n]]
		fc.send("<presence from='" + room + "/" + n + "' to='" + jid + "'><x xmlns='http://jabber.org/protocol/muc#user'>" +
			"<item affiliation='none' role='participant'/></x></presence>")
		if other != nil {
			other.send("<presence from='" + to + "' to='" + rm.occ[n] + "'><x xmlns='http://jabber.org/protocol/muc#user'>" +
				"<item affiliation='none' role='participant'/></x></presence>")
		}
	}
	rm.nicks = append(rm.nicks, nick)
	rm.occ[nick] = jid
	codes := `<status code="110"/>`
	if created && rm.locked {
		codes += `<status code="201"/>`
		// A real server tells the creator in a message too.
		fc.send("<message type='groupchat' from='" + room + "' to='" + jid + "'><body>Room locked until configured</body></message>")
	}
	// Double quotes: the generator must read both kinds.
	fc.send(`<presence from="` + to + `" to="` + jid + `"><x xmlns="http://jabber.org/protocol/muc#user">` +
		`<item affiliation="owner" role="moderator"/>` + codes + `</x></presence>`)
}

// mucIQ accepts the owner's configuration of a locked room.
func (f *fakeServer) mucIQ(fc *fakeConn, e *fakeElem, jid string) {
	room, id := e.attr("to"), e.attr("id")
	f.mu.Lock()
	rm := f.rooms[room]
	ok := rm != nil && rm.owner == jid && e.attr("type") == "set" && bytes.Contains(e.Inner, []byte("muc#owner"))
	if ok {
		rm.locked = false
	}
	f.mu.Unlock()
	if !ok {
		fc.send("<iq type='error' from='" + room + "' to='" + jid + "' id='" + id + "'><error type='cancel'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
		return
	}
	f.roomConfigs.Add(1)
	fc.send("<iq type='result' from='" + room + "' to='" + jid + "' id='" + id + "'/>")
}

// mucMessage fans a groupchat message out to every occupant, the sender
// included, or bounces it when the sender is not in the room.
func (f *fakeServer) mucMessage(fc *fakeConn, e *fakeElem, jid string) {
	room := e.attr("to")
	f.mu.Lock()
	defer f.mu.Unlock()
	rm := f.rooms[room]
	nick := ""
	if rm != nil {
		for n, j := range rm.occ {
			if j == jid {
				nick = n
			}
		}
	}
	if nick == "" {
		f.bounced.Add(1)
		fc.send("<message type='error' from='" + room + "' to='" + jid + "' id='" + e.attr("id") + "'>" + string(e.Inner) +
			"<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
		return
	}
	for _, n := range rm.nicks {
		if dst := f.sessions[rm.occ[n]]; dst != nil {
			dst.send("<message from='" + room + "/" + nick + "' to='" + rm.occ[n] + "' type='groupchat' id='" + e.attr("id") + "'>" +
				string(e.Inner) + "</message>")
		}
	}
}

// TestMain doubles as a fake server process, so the generator can be
// measured with the server's CPU in another process.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LOADGEN_FAKE_SERVER"); mode != "" {
		f, err := newFakeServer(mode, "secret", os.Getenv("LOADGEN_FAKE_REFLECT") != "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(f.ln.Addr())
		io.Copy(io.Discard, os.Stdin) // runs until the parent closes stdin
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startFakeProcess runs the fake server in a child process and returns
// its address and PID.
func startFakeProcess(t testing.TB, mode string, reflect bool) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADGEN_FAKE_SERVER="+mode)
	if reflect {
		cmd.Env = append(cmd.Env, "LOADGEN_FAKE_REFLECT=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("fake server process: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid
}
