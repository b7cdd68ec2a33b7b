package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestPIDList(t *testing.T) {
	var l pidList
	self := strconv.Itoa(os.Getpid())
	for _, v := range []string{"aldis=123", self, "0"} {
		if err := l.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if len(l) != 2 || l[0].Name != "aldis" || l[0].PID != 123 || l[1].PID != os.Getpid() || l[1].Name == "" || l[1].Name == "pid"+self {
		t.Errorf("list %+v", l)
	}
	if got := l.String(); !strings.HasPrefix(got, "aldis=123,") {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"", "x", "aldis=", "=12", "a=-1"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--irc", "127.0.0.1:1"}, 2, "--irc needs --room"},
		{[]string{"--pid", "a=1", "--pid", "b=2"}, 2, "more than one --pid is only for --irc"},
		{[]string{"--irc", "127.0.0.1:1", "--room", "r@c.example", "--irc-nicks", "x"}, 1, "nick pattern"},
		{[]string{"stray"}, 2, "unexpected arguments"},
	} {
		var out, errb bytes.Buffer
		if code := cmdBench(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("aldis bench %q = %d, %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.err)
		}
	}
}
