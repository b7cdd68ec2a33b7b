package ircbench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIRCd is a scripted IRC server: nicks in taken are refused with 433, channels in refused
// with 474, a silent server never answers; joined users get a PING, then every line a test
// queues with say.
type fakeIRCd struct {
	ln      net.Listener
	taken   map[string]bool
	refused map[string]bool
	silent  bool

	mu    sync.Mutex
	conns []net.Conn
	pongs []string
	lines []string // everything the clients sent
}

func startIRCd(t *testing.T) *fakeIRCd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIRCd{ln: ln, taken: map[string]bool{}, refused: map[string]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			wg.Go(func() { f.serve(c) })
		}
	})
	return f
}

func (f *fakeIRCd) serve(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	nick, user := "", false
	send := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
	welcome := func() {
		send(":irc.test 001 %s :Welcome", nick)
		send(":irc.test PING :cookie") // some servers check liveness at once
	}
	for sc.Scan() {
		line := sc.Text()
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		if f.silent {
			continue
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "NICK":
			if f.taken[arg] {
				send(":irc.test 433 * %s :Nickname is already in use", arg)
				continue
			}
			nick = arg
			if user {
				welcome()
			}
		case "USER":
			user = true
			if nick != "" {
				welcome()
			}
		case "JOIN":
			if f.refused[arg] {
				send(":irc.test 474 %s %s :Cannot join channel (+b)", nick, arg)
				continue
			}
			send(":%s!u@h JOIN %s", nick, arg)
			send(":irc.test 353 %s = %s :%s", nick, arg, nick)
			send(":irc.test 366 %s %s :End of /NAMES list.", nick, strings.ToUpper(arg))
			send("PING :after-join")
			send(":alice!u@h PRIVMSG %s :hello %s", arg, nick)
			send(":bob!u@h NOTICE %s :notice", arg)
		case "PONG":
			f.mu.Lock()
			f.pongs = append(f.pongs, arg)
			f.mu.Unlock()
		case "QUIT":
			return
		}
	}
}

func (f *fakeIRCd) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

func TestDialIRC(t *testing.T) {
	f := startIRCd(t)
	f.taken["ircb0"] = true
	f.taken["ircb0_"] = true
	texts := make(chan string, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := dialIRC(ctx, f.ln.Addr().String(), "ircb0", "#bench", func(text string) { texts <- text })
	if err != nil {
		t.Fatal(err)
	}
	if u.nick != "ircb0__" {
		t.Errorf("nick %q, want ircb0__", u.nick)
	}
	for _, want := range []string{"hello ircb0__", "notice"} {
		select {
		case got := <-texts:
			if got != want {
				t.Errorf("text %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %q", want)
		}
	}
	if err := u.say("hi there"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(f.sent(), "\n"), "PRIVMSG #bench :hi there") {
		if time.Now().After(deadline) {
			t.Fatalf("sent %q", f.sent())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	pongs := strings.Join(f.pongs, " ")
	f.mu.Unlock()
	if pongs != ":cookie :after-join" {
		t.Errorf("pongs %q", pongs)
	}
	if u.lines.Load() < 3 || u.alive() != nil {
		t.Errorf("lines %d, alive %v", u.lines.Load(), u.alive())
	}
	u.close()
	if u.alive() == nil {
		t.Error("alive after close")
	}
	sent := f.sent()
	if want := []string{"NICK ircb0", "USER ircb0 0 * :aldis bench", "NICK ircb0_", "NICK ircb0__", "JOIN #bench"}; strings.Join(sent[:5], "|") != strings.Join(want, "|") {
		t.Errorf("registration %q", sent)
	}
}

func TestDialIRCRefused(t *testing.T) {
	f := startIRCd(t)
	f.refused["#closed"] = true
	for i := range nickTries {
		f.taken["ircb"+strings.Repeat("_", i)] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dialIRC(ctx, f.ln.Addr().String(), "x", "#closed", nil)
	if err == nil || !strings.Contains(err.Error(), "JOIN #closed refused: 474 Cannot join channel (+b)") {
		t.Errorf("refused join: %v", err)
	}
	_, err = dialIRC(ctx, f.ln.Addr().String(), "ircb", "#bench", nil)
	if err == nil || !strings.Contains(err.Error(), "nick ircb____ refused (433 Nickname is already in use)") {
		t.Errorf("nicks all taken: %v", err)
	}
}

func TestDialIRCTimeout(t *testing.T) {
	f := startIRCd(t)
	f.silent = true
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := dialIRC(ctx, f.ln.Addr().String(), "ircb0", "#bench", nil)
	if err == nil || !strings.Contains(err.Error(), "registering") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("silent server: %v", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("gave up after %v", d)
	}
}
