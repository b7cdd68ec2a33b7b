package integration

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// linksim is a running `aldis linksim`: two STANAG 5066 nodes joined by a
// simulated HF link.
type linksim struct {
	A, B    string    // SIS addresses of ends A (node 0.0.0.1) and B (node 0.0.0.2)
	Started time.Time // outages are scheduled from here
	cmd     *exec.Cmd
	mu      sync.Mutex
	lines   []string
	done    chan struct{}
}

// startLinksim runs the simulator with args (rate, latency, loss,
// outages) on free loopback ports.
func startLinksim(t *testing.T, args ...string) *linksim {
	t.Helper()
	cmd := exec.Command(aldisBin, append([]string{"linksim", "-a", "127.0.0.1:0", "-b", "127.0.0.1:0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ls := &linksim{cmd: cmd, Started: time.Now(), done: make(chan struct{})}
	t.Cleanup(func() { ls.stop() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("no banner from aldis linksim")
	}
	m := regexp.MustCompile(`end A (\S+) .* end B (\S+) `).FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("linksim banner %q", sc.Text())
	}
	ls.A, ls.B = m[1], m[2]
	go func() {
		defer close(ls.done)
		for sc.Scan() {
			ls.mu.Lock()
			ls.lines = append(ls.lines, sc.Text())
			ls.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	return ls
}

// stop ends the simulator and returns its statistics line.
func (ls *linksim) stop() string {
	_ = ls.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ls.done:
	case <-time.After(5 * time.Second):
		_ = ls.cmd.Process.Kill()
		<-ls.done
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.lines) == 0 {
		return ""
	}
	return ls.lines[len(ls.lines)-1]
}

// linkConfig is the [[link]] of a server reaching peer over the SIS node
// at sis, the far node being sisPeer.
func linkConfig(peer, sis, sisPeer, extra string) string {
	return fmt.Sprintf("\n[[link]]\nname = \"hf\"\ntransport = \"brlink-sis\"\npeer_domains = [%q, %q]\nsis = %q\nsis_peer = %q\nrate = 2400\n%s",
		peer, "conference."+peer, sis, sisPeer, extra)
}

// ExpectWithin is Expect with a deadline of its own: traffic over HF takes
// seconds, and an outage holds it back for longer.
func (c *client) ExpectWithin(what string, match func(*elem) bool, d time.Duration) *elem {
	c.t.Helper()
	e, ok := c.wait(match, d)
	if !ok {
		c.t.Fatalf("%s: no %s within %v; inbox:\n%s", c.name, what, d, c.dump())
	}
	return e
}

// countBodies counts what c has received (and not yet matched) with each body.
func countBodies(c *client, within time.Duration, bodies ...string) map[string]int {
	seen := map[string]int{}
	want := map[string]bool{}
	for _, b := range bodies {
		want[b] = true
	}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, ok := c.wait(func(e *elem) bool {
			if e.XMLName.Local != "message" || !want[e.ChildText("", "body")] {
				return false
			}
			seen[e.ChildText("", "body")]++
			return true
		}, time.Until(deadline)); !ok {
			break
		}
	}
	return seen
}

func waitUntil(t *testing.T, at time.Time, what string) {
	t.Helper()
	if time.Now().After(at) {
		t.Fatalf("too slow: %s was due %v ago", what, time.Since(at).Round(time.Millisecond))
	}
	time.Sleep(time.Until(at))
}

// TestLinkShipShore: a ship and a shore server joined by an HF link at
// 2,400 bit/s with loss (aldis linksim): chat both ways, a federated room
// used on both sides through a scheduled outage (each side keeps talking;
// the copies converge afterwards, every message once), and a FLASH
// message overtaking the ROUTINE ones queued before it.
func TestLinkShipShore(t *testing.T) {
	integration(t)
	const outageAt, outageFor = 40 * time.Second, 20 * time.Second
	ls := startLinksim(t, "--rate", "2400", "--latency", "300ms", "--loss", "0.02",
		"--outage", fmt.Sprintf("%v@%v", outageFor, outageAt))
	ship := "ship" + randHex(3) + ".example"
	shore := "shore" + randHex(3) + ".example"
	shipRoom, shoreRoom := "ops@conference."+ship, "ops@conference."+shore
	s := startServer(t, serverOpts{Domain: ship, Extra: fmt.Sprintf("\n[[muc.federate]]\nroom = \"ops\"\nwith = %q\n", shoreRoom) +
		linkConfig(shore, ls.A, "0.0.0.2", "")})
	b := startServer(t, serverOpts{Domain: shore, Extra: fmt.Sprintf("\n[muc]\nfederation_from = [%q]\n", "conference."+ship) +
		linkConfig(ship, ls.B, "0.0.0.1", "")})
	s.AddUser("sam", "sam-password")
	b.AddUser("bea", "bea-password")
	sam := online(t, s, "sam", "sam-password", loginOpts{})
	bea := online(t, b, "bea", "bea-password", loginOpts{})
	samJ, beaJ := sam.JID.Bare().String(), bea.JID.Bare().String()

	// Chat both ways over the link.
	sam.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>ahoy shore</body></message>", beaJ, nextID("c")))
	bea.ExpectWithin("the ship's message", isMessage(samJ, "ahoy shore"), 30*time.Second)
	bea.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>ahoy ship</body></message>", samJ, nextID("c")))
	sam.ExpectWithin("the shore's message", isMessage(beaJ, "ahoy ship"), 30*time.Second)

	// The room, federated from the ship to the shore.
	createRoom(bea, shoreRoom, "bea")
	mucJoin(sam, shipRoom+"/sam", "")
	sam.ExpectWithin("bea, from the shore", isPresence("", shipRoom+"/bea"), 30*time.Second)
	sam.ExpectWithin("his own presence", isSelfPresence("", shipRoom+"/sam"), 30*time.Second)
	bea.ExpectWithin("sam, from the ship", isPresence("", shoreRoom+"/sam"), 30*time.Second)
	sam.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='%s'><body>room: from the ship</body></message>", shipRoom, nextID("g")))
	bea.ExpectWithin("sam's room message", isMessage(shoreRoom+"/sam", "room: from the ship"), 30*time.Second)
	t.Logf("link up, chat and room working %v after linksim started", time.Since(ls.Started).Round(time.Millisecond))

	// During the outage each side keeps using its copy of the room.
	waitUntil(t, ls.Started.Add(outageAt+time.Second), "the outage")
	sam.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='%s'><body>room: ship in the outage</body></message>", shipRoom, nextID("g")))
	sam.ExpectWithin("his reflection, at once", isMessage(shipRoom+"/sam", "room: ship in the outage"), 5*time.Second)
	bea.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='%s'><body>room: shore in the outage</body></message>", shoreRoom, nextID("g")))
	bea.ExpectWithin("her reflection, at once", isMessage(shoreRoom+"/bea", "room: shore in the outage"), 5*time.Second)
	bea.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>chat: shore in the outage</body></message>", samJ, nextID("c")))
	sam.ExpectNone("traffic across the outage", isMessage(beaJ, "chat: shore in the outage"), 5*time.Second)

	// After it, everything queued arrives once.
	waitUntil(t, ls.Started.Add(outageAt+outageFor), "the end of the outage")
	sam.ExpectWithin("the shore's chat from the outage", isMessage(beaJ, "chat: shore in the outage"), 60*time.Second)
	sam.ExpectWithin("the shore's room message from the outage", isMessage(shipRoom+"/bea", "room: shore in the outage"), 60*time.Second)
	bea.ExpectWithin("the ship's room message from the outage", isMessage(shoreRoom+"/sam", "room: ship in the outage"), 60*time.Second)

	// FLASH overtakes ROUTINE: ten routine messages, then one flash.
	var routine []string
	for i := range 10 {
		body := fmt.Sprintf("routine %d %s", i, strings.Repeat("r", 120))
		routine = append(routine, body)
		bea.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>%s</body></message>", samJ, nextID("r"), body))
	}
	bea.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>FLASH</body><precedence xmlns='urn:x-bridge:precedence:0'>flash</precedence></message>", samJ, nextID("f")))
	order := []string{}
	for len(order) < 11 {
		e := sam.ExpectWithin("the routine and flash messages", func(e *elem) bool {
			body := e.ChildText("", "body")
			return e.XMLName.Local == "message" && (body == "FLASH" || strings.HasPrefix(body, "routine "))
		}, 60*time.Second)
		order = append(order, strings.Fields(e.ChildText("", "body"))[0]+strings.Join(strings.Fields(e.ChildText("", "body"))[1:2], ""))
	}
	pos := -1
	for i, o := range order {
		if o == "FLASH" {
			pos = i
		}
	}
	t.Logf("arrival order: %v", order)
	if pos < 0 || pos > 4 {
		t.Errorf("FLASH arrived at position %d of 11, want among the first few (it overtakes queued ROUTINE traffic)", pos)
	}

	// Exactly once: no second copies of anything.
	all := append([]string{"ahoy ship", "chat: shore in the outage", "room: shore in the outage", "room: from the ship", "FLASH"}, routine...)
	for body, n := range countBodies(sam, 3*time.Second, all...) {
		t.Errorf("sam received %q %d more time(s)", body, n)
	}
	for body, n := range countBodies(bea, time.Second, "ahoy shore", "room: ship in the outage", "room: from the ship") {
		t.Errorf("bea received %q %d more time(s)", body, n)
	}
	t.Logf("linksim: %s", ls.stop())
}

// TestLinkKill: both servers are killed with SIGKILL while the link is in
// an outage and each has chat queued for the other; after restarting, and
// once the outage ends, every message arrives exactly once.
func TestLinkKill(t *testing.T) {
	integration(t)
	const outageAt, outageFor = 25 * time.Second, 20 * time.Second
	ls := startLinksim(t, "--rate", "2400", "--latency", "300ms", "--outage", fmt.Sprintf("%v@%v", outageFor, outageAt))
	ship := "ship" + randHex(3) + ".example"
	shore := "shore" + randHex(3) + ".example"
	s := startServer(t, serverOpts{Domain: ship, Extra: linkConfig(shore, ls.A, "0.0.0.2", "")})
	b := startServer(t, serverOpts{Domain: shore, Extra: linkConfig(ship, ls.B, "0.0.0.1", "")})
	s.AddUser("sam", "sam-password")
	b.AddUser("bea", "bea-password")
	sam := online(t, s, "sam", "sam-password", loginOpts{})
	bea := online(t, b, "bea", "bea-password", loginOpts{})
	samJ, beaJ := sam.JID.Bare().String(), bea.JID.Bare().String()
	sam.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>before</body></message>", beaJ, nextID("c")))
	bea.ExpectWithin("a message before the outage", isMessage(samJ, "before"), 30*time.Second)

	waitUntil(t, ls.Started.Add(outageAt+time.Second), "the outage")
	const n = 5
	var fromSam, fromBea []string
	for i := range n {
		fromSam = append(fromSam, fmt.Sprintf("queued on the ship %d", i))
		fromBea = append(fromBea, fmt.Sprintf("queued on the shore %d", i))
		sam.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>%s</body></message>", beaJ, nextID("k"), fromSam[i]))
		bea.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>%s</body></message>", samJ, nextID("k"), fromBea[i]))
	}
	// A round trip to each server: the messages have passed its router.
	sam.IQResult("get", "", "<ping xmlns='urn:xmpp:ping'/>")
	bea.IQResult("get", "", "<ping xmlns='urn:xmpp:ping'/>")
	time.Sleep(500 * time.Millisecond) // the link's intake commits within milliseconds
	for _, srv := range []*server{s, b} {
		srv.Signal(syscall.SIGKILL)
		srv.mu.Lock()
		exited := srv.exited
		srv.mu.Unlock()
		<-exited
		srv.WriteConfig(srv.opts) // the same ports again
		srv.start()
	}
	sam = online(t, s, "sam", "sam-password", loginOpts{})
	bea = online(t, b, "bea", "bea-password", loginOpts{})

	waitUntil(t, ls.Started.Add(outageAt+outageFor), "the end of the outage")
	for _, c := range []struct {
		who  *client
		want []string
	}{{bea, fromSam}, {sam, fromBea}} {
		for _, body := range c.want {
			c.who.ExpectWithin(body, func(e *elem) bool { return e.XMLName.Local == "message" && e.ChildText("", "body") == body }, 90*time.Second)
		}
	}
	for body, k := range countBodies(bea, 5*time.Second, fromSam...) {
		t.Errorf("bea received %q %d more time(s)", body, k)
	}
	for body, k := range countBodies(sam, time.Second, fromBea...) {
		t.Errorf("sam received %q %d more time(s)", body, k)
	}
	t.Logf("linksim: %s", ls.stop())
}
