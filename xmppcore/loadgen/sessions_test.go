package loadgen

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	f := startFake(t, TLSStartTLS, "secret")
	f.setMUC(fakeMUCLocked)
	cfg := testConfig(f.ln.Addr().String(), TLSStartTLS, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type got struct {
		session         int
		from, typ, body string
	}
	var mu sync.Mutex
	var msgs []got
	s, err := Login(ctx, cfg, func(m Received) {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, got{m.Session, string(m.From), string(m.Type), string(m.Body)})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 3 {
		t.Fatalf("Len = %d", s.Len())
	}
	if err := s.SendToRoom(0, "too early"); err == nil {
		t.Error("SendToRoom before JoinRoom succeeded")
	}
	room := "bench@" + fakeMUCDomain
	set, err := s.JoinRoom(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if set.Joined != 3 || set.Created != 1 {
		t.Errorf("room set %+v", set)
	}
	if n := s.Nick(2); n != "bench2" {
		t.Errorf("Nick(2) = %q", n)
	}
	if err := s.SendToRoom(1, "a <b> & c"); err != nil {
		t.Fatal(err)
	}
	// Every occupant gets it, the sender included, still escaped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		var n int
		for _, m := range msgs {
			if m.body == "a &lt;b&gt; &amp; c" && m.from == room+"/bench1" && m.typ == "groupchat" {
				n++
			}
		}
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 deliveries; received %+v", n, msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Inbound() == 0 {
		t.Error("Inbound = 0")
	}
}

func TestSessionsLoginFails(t *testing.T) {
	f := startFake(t, TLSNone, "secret")
	cfg := testConfig(f.ln.Addr().String(), TLSNone, 2)
	cfg.Password = "wrong"
	_, err := Login(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "2 of 2 logins failed, first: login bench") {
		t.Fatalf("Login = %v", err)
	}
}
