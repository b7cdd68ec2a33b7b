package loadgen

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func mucTestConfig(addr string) Config {
	cfg := testConfig(addr, TLSNone, 0)
	cfg.Rooms, cfg.Occupants, cfg.MUCRate = 3, 4, 100
	cfg.Window = 0                                 // RunMUC's default: 1
	cfg.MUCDomain = strings.ToUpper(fakeMUCDomain) // lowercased by RunMUC
	return cfg
}

func TestRunMUC(t *testing.T) {
	f := startFake(t, TLSNone, "secret")
	f.setMUC(fakeMUCLocked)
	cfg := mucTestConfig(f.ln.Addr().String())
	cfg.BigRoom, cfg.BigRoomRate = 15, 20 // 3 more sessions than the rooms' 12
	var log bytes.Buffer
	cfg.Log = &log
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := RunMUC(ctx, cfg)
	if err != nil {
		t.Fatalf("RunMUC: %v\nlog:\n%s", err, log.String())
	}
	t.Logf("\n%s", res.Table())
	if res.Logins != 15 || res.LoginErrors != 0 {
		t.Errorf("logins %d (%d failed), want 15", res.Logins, res.LoginErrors)
	}
	if len(res.RoomSets) != 2 {
		t.Fatalf("room sets %+v", res.RoomSets)
	}
	rooms, big := res.RoomSets[0], res.RoomSets[1]
	if rooms.Name != "3 rooms × 4" || rooms.Sessions != 12 || rooms.Joined != 12 || rooms.NotJoined != 0 || rooms.Created != 3 || rooms.JoinTime <= 0 {
		t.Errorf("rooms: %+v", rooms)
	}
	if big.Name != "big room × 15" || big.Joined != 15 || big.Created != 1 {
		t.Errorf("big room: %+v", big)
	}
	// Every locked room was configured by its creator, once.
	if got := f.roomConfigs.Load(); got != 4 {
		t.Errorf("instant configurations = %d, want 4", got)
	}
	if len(res.Phases) != 3 {
		t.Fatalf("phases %+v", res.Phases)
	}
	fixed, sat, bigp := res.Phases[0], res.Phases[1], res.Phases[2]
	if fixed.Name != "rooms fixed 100/s" || fixed.Rooms != rooms.Name || fixed.Saturating {
		t.Errorf("fixed phase named %q in %q", fixed.Name, fixed.Rooms)
	}
	// 0.5s × 100/s messages, each to the 4 occupants of its room.
	if fixed.Sent != 50 || fixed.Expected != 200 || fixed.Delivered != 200 || fixed.Lost() != 0 || fixed.Errors != 0 {
		t.Errorf("fixed: sent %d expected %d delivered %d lost %d errors %d; want 50, 200, 200, 0, 0",
			fixed.Sent, fixed.Expected, fixed.Delivered, fixed.Lost(), fixed.Errors)
	}
	if fixed.DeliveredPerSec <= 0 || fixed.DeliveredPerSec > 1.01*400 {
		t.Errorf("fixed: %.1f deliveries/s, want about 400", fixed.DeliveredPerSec)
	}
	if !sat.Saturating || sat.Sent < 12 || sat.Expected != 4*sat.Sent || sat.Delivered != sat.Expected || sat.Errors != 0 {
		t.Errorf("saturating: sent %d expected %d delivered %d errors %d", sat.Sent, sat.Expected, sat.Delivered, sat.Errors)
	}
	if bigp.Name != "big room fixed 20/s" || bigp.Rooms != big.Name || bigp.Sent != 10 || bigp.Delivered != 150 || bigp.Lost() != 0 {
		t.Errorf("big room: %+v", bigp)
	}
	for _, p := range res.Phases {
		if p.P50 <= 0 || p.P99 < p.P50 || p.P99 > 5*time.Second || p.LoadgenPer1000 <= 0 {
			t.Errorf("%s: p50 %v p99 %v loadgen CPU %v", p.Name, p.P50, p.P99, p.LoadgenPer1000)
		}
	}
	if got := f.bounced.Load(); got != 0 {
		t.Errorf("%d room messages bounced", got)
	}
	if strings.Contains(log.String(), "session ") || strings.Contains(log.String(), "join") && strings.Contains(log.String(), "refused") {
		t.Errorf("errors logged:\n%s", log.String())
	}
	table := res.Table()
	for _, s := range []string{"3 rooms × 4: 12 of 12 sessions joined", "big room × 15", "rooms saturating", "lost"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
}

// TestRunMUCInstantRooms: a service that opens new rooms at once (no
// status 201) needs no configuration; only the big room, without rooms.
func TestRunMUCInstantRooms(t *testing.T) {
	f := startFake(t, TLSNone, "secret")
	f.setMUC(fakeMUCInstant)
	cfg := mucTestConfig(f.ln.Addr().String())
	cfg.Rooms, cfg.BigRoom, cfg.BigRoomRate, cfg.Saturate = 0, 6, 10, false
	res, err := RunMUC(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Logins != 6 || len(res.RoomSets) != 1 || res.RoomSets[0].Joined != 6 || res.RoomSets[0].Created != 0 {
		t.Errorf("logins %d, room sets %+v", res.Logins, res.RoomSets)
	}
	if f.roomConfigs.Load() != 0 {
		t.Error("configured a room that was not locked")
	}
	if len(res.Phases) != 1 || res.Phases[0].Sent != 5 || res.Phases[0].Delivered != 30 {
		t.Errorf("phases %+v", res.Phases)
	}
}

func TestRunMUCUnavailable(t *testing.T) {
	f := startFake(t, TLSNone, "secret") // no MUC service: joins bounce
	cfg := mucTestConfig(f.ln.Addr().String())
	start := time.Now()
	res, err := RunMUC(context.Background(), cfg)
	if !errors.Is(err, ErrNoMUC) {
		t.Fatalf("RunMUC = %v, want ErrNoMUC", err)
	}
	if !strings.Contains(err.Error(), "remote-server-not-found") {
		t.Errorf("error does not say why: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to notice", d)
	}
	if len(res.RoomSets) != 1 || res.RoomSets[0].Joined != 0 || len(res.Phases) != 0 {
		t.Errorf("result %+v", res)
	}
}

func TestRunMUCConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Addr: "x:1", Domain: "d"}, // neither rooms nor a big room
		{Addr: "x:1", Domain: "d", Rooms: 2, Occupants: -1},
		{Addr: "x:1", Domain: "d", BigRoom: 10, MUCRate: -5},
	} {
		if _, err := RunMUC(context.Background(), cfg); err == nil {
			t.Errorf("RunMUC(%+v) accepted an invalid config", cfg)
		}
	}
}

func TestHasStatus(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		code string
		want bool
	}{
		{`<presence><x><item/><status code="110"/><status code='201'/></x></presence>`, "110", true},
		{`<presence><x><item/><status code="110"/><status code='201'/></x></presence>`, "201", true},
		{`<presence><x><item/><status code='170'/></x></presence>`, "110", false},
		{`<presence><status>away</status></presence>`, "110", false},
		{`<presence/>`, "110", false},
	} {
		if got := hasStatus([]byte(tc.raw), tc.code); got != tc.want {
			t.Errorf("hasStatus(%s, %s) = %v", tc.raw, tc.code, got)
		}
	}
}

func TestErrorCondition(t *testing.T) {
	for raw, want := range map[string]string{
		`<presence type='error'><x/><error type='cancel'><item-not-found xmlns='s'/><text xmlns='s'>Room locked</text></error></presence>`: `item-not-found "Room locked"`,
		`<presence type="error"><error type="auth" by="x"><registration-required xmlns="s"/></error></presence>`:                           "registration-required",
		`<presence type='error'><error/></presence>`: "<error/></presence>",
		`<presence type='error'/>`:                   "error without <error/>: <presence type='error'/>",
	} {
		if got := errorCondition([]byte(raw)); got != want {
			t.Errorf("errorCondition(%s) = %q, want %q", raw, got, want)
		}
	}
}
