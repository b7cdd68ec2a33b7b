package c2s

import (
	"testing"
	"time"
)

func TestAuthLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewAuthLimiter(3, 2, time.Minute)
	l.now = func() time.Time { return now }
	if l.Blocked("1.2.3.4", "alice") {
		t.Fatal("blocked before any failure")
	}
	l.Fail("1.2.3.4", "alice")
	l.Fail("1.2.3.4", "alice")
	if !l.Blocked("9.9.9.9", "alice") {
		t.Error("account not blocked after 2 failures")
	}
	if l.Blocked("1.2.3.4", "bob") {
		t.Error("ip blocked after 2 failures, limit is 3")
	}
	l.Fail("1.2.3.4", "bob")
	if !l.Blocked("1.2.3.4", "carol") {
		t.Error("ip not blocked after 3 failures")
	}
	now = now.Add(time.Minute)
	if l.Blocked("1.2.3.4", "alice") {
		t.Error("still blocked after the window")
	}
}
