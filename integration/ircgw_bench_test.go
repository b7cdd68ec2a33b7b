package integration

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// cpuTime is the user+system CPU time a process has used, from /proc.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may contain spaces): utime is the 14th field overall.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestIRCBridgeBench measures the IRC bridge (ALDIS_BENCH=1): three XMPP
// users in the room and two IRC users in the channel, on InspIRCd without
// fakelag and with the bridge's flood control out of the way. Latency is one
// message at a time (send, wait for it on the other side); throughput is a
// burst, with the CPU time aldis and InspIRCd used for it.
func TestIRCBridgeBench(t *testing.T) {
	if os.Getenv("ALDIS_BENCH") == "" {
		t.Skip("set ALDIS_BENCH=1 to measure")
	}
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	maps := ircMap(t, ircd.Addr, "flood_interval = \"1us\"\nflood_burst = 1000", ircLink{room: room, channel: "#lab"})
	srv := startServer(t, serverOpts{Domain: domain, Unthrottled: true, LogLevel: "warn",
		Extra: fmt.Sprintf("\n[irc]\nmaps = [%q]\nrejoin_interval = \"1s\"\n", maps)})
	for _, u := range []string{"alice", "carol", "dave"} {
		srv.AddUser(u, u+"-secret")
	}
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.Expect("the bridge", isPresence("", occ("#lab")))
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	erin := ircd.Connect(t, "erin")
	erin.Join("#lab")
	alice.Expect("bob", isPresence("", occ("bob")))
	for _, u := range []string{"carol", "dave"} {
		c := online(t, srv, u, u+"-secret", loginOpts{})
		enterRoom(c, room, u, "")
	}
	ircWaitNames(t, bob, "#lab", "dave")
	ircWaitNames(t, bob, "#lab", "alice")

	const lat = 300
	var toXMPP, toIRC []time.Duration
	for i := range lat {
		body := fmt.Sprintf("lat-irc %d", i)
		began := time.Now()
		bob.Send("PRIVMSG #lab :" + body)
		alice.Expect("IRC → XMPP", isMessage(occ("bob"), body))
		toXMPP = append(toXMPP, time.Since(began))
	}
	for i := range lat {
		body := fmt.Sprintf("lat-xmpp %d", i)
		began := time.Now()
		alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='l%d'><body>%s</body></message>", room, i, body))
		bob.Expect(ircSaid("alice", "#lab", body))
		toIRC = append(toIRC, time.Since(began))
	}

	const burst, window = 2000, 100
	measure := func(send func(i int), recv func(i int)) (rate float64, aldisCPU, ircdCPU time.Duration) {
		a0, i0 := cpuTime(t, srv.PID()), cpuTime(t, ircd.PID())
		began := time.Now()
		// At most window messages in flight: a sustained rate, within the bounded queues on the
		// way (the room's 1,024 stanzas, an IRC connection's 256 lines), which an unpaced burst
		// overflows (see doc/performance.md).
		received := make(chan int, burst)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range burst {
				if i >= window {
					<-received
				}
				send(i)
			}
		}()
		for i := range burst {
			recv(i)
			received <- i
		}
		took := time.Since(began)
		<-done
		return burst / took.Seconds(), (cpuTime(t, srv.PID()) - a0) * 1000 / burst, (cpuTime(t, ircd.PID()) - i0) * 1000 / burst
	}
	inRate, inAldis, inIRCd := measure(
		func(i int) { bob.Send(fmt.Sprintf("PRIVMSG #lab :burst-irc %d", i)) },
		func(i int) { alice.Expect("burst IRC → XMPP", isMessage(occ("bob"), fmt.Sprintf("burst-irc %d", i))) })
	outRate, outAldis, outIRCd := measure(
		func(i int) {
			alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='b%d'><body>burst-xmpp %d</body></message>", room, i, i))
		},
		func(i int) { bob.Expect(ircSaid("alice", "#lab", fmt.Sprintf("burst-xmpp %d", i))) })

	t.Logf("IRC bridge, InspIRCd without fakelag, 3 XMPP users in the room, 2 IRC users in the channel")
	t.Logf("| direction | p50 | p99 | messages/s (%d, ≤ %d in flight) | aldis CPU / 1,000 msgs | InspIRCd CPU / 1,000 msgs |", burst, window)
	t.Logf("| IRC → XMPP | %v | %v | %.0f | %v | %v |", percentile(toXMPP, 0.5), percentile(toXMPP, 0.99), inRate, inAldis, inIRCd)
	t.Logf("| XMPP → IRC | %v | %v | %.0f | %v | %v |", percentile(toIRC, 0.5), percentile(toIRC, 0.99), outRate, outAldis, outIRCd)
}
