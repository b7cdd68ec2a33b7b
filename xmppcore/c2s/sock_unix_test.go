//go:build unix

package c2s

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStalledClientSparesItsWriter: connections that share a writer
// goroutine go on receiving while one of them has stopped reading and its
// socket is full; that one gets everything, in order, once it reads again.
func TestStalledClientSparesItsWriter(t *testing.T) {
	oneWriter := func(s *Server) { s.writers = s.writers[:1] } // everyone on one writer
	e := newTestEnvWith(t, Config{SendQueue: 1 << 16}, oneWriter, "alice", "bob", "carol")
	a := login(t, e.addr, "alice", "a")
	c := login(t, e.addr, "carol", "c")
	// Bob's receive buffer is small from the start (set after connecting,
	// it would shrink a window already advertised, and TCP would stall).
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192)
		}); err != nil {
			return err
		}
		return serr
	}}
	bc, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close() })
	b := loginOn(&rawClient{tb: t, c: bc, r: bufio.NewReader(bc)}, "bob", "b")
	for _, r := range []*rawClient{a, b, c} {
		r.send("<presence/>")
		r.until("<presence")
	}
	// Bob stops reading while alice sends him more than his socket and
	// ours buffer, a few messages at a time, so that the writer meets his
	// full socket: his stanzas then wait for his own flush goroutine.
	body := strings.Repeat("y", 1000)
	const n = 12000
	for i := range n {
		a.send(fmt.Sprintf("<message to='bob@example.org/b' type='chat' id='b%d'><body>%s</body></message>", i, body))
		if i%8 == 7 {
			a.send(fmt.Sprintf("<iq type='get' id='p%d' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>", i))
			a.until(fmt.Sprintf("id='p%d'", i))
		}
	}
	// Carol, on the same writer, is not held up.
	for i := range 20 {
		a.send(fmt.Sprintf("<message to='carol@example.org/c' type='chat' id='c%d'><body>hi</body></message>", i))
		c.until(fmt.Sprintf("id='c%d'", i))
	}
	// Bob reads again and gets all of alice's messages, in order.
	next := 0
	buf := make([]byte, 64<<10)
	var tail []byte
	for next < n {
		b.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := b.c.Read(buf)
		if err != nil {
			t.Fatalf("after %d messages: %v", next, err)
		}
		tail = append(tail, buf[:k]...)
		for {
			i := bytes.Index(tail, []byte(" id='b"))
			if i < 0 {
				break
			}
			j := bytes.IndexByte(tail[i+6:], '\'')
			if j < 0 {
				break
			}
			if id := string(tail[i+6 : i+6+j]); id != fmt.Sprint(next) {
				t.Fatalf("message b%s arrived where b%d was due", id, next)
			}
			next++
			tail = tail[i+6+j:]
		}
	}
}
