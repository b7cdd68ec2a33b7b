package loadgen

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func testConfig(addr, mode string, users int) Config {
	return Config{
		Addr:               addr,
		Domain:             "example.test",
		Password:           "secret",
		Users:              users,
		TLS:                mode,
		InsecureSkipVerify: true,
		Concurrency:        3,
		Rate:               200,
		Duration:           500 * time.Millisecond,
		Saturate:           true,
		Window:             4,
	}
}

func TestRunTLSModes(t *testing.T) {
	for _, mode := range []string{TLSNone, TLSStartTLS, TLSDirect} {
		t.Run(mode, func(t *testing.T) {
			f := startFake(t, mode, "secret")
			var log bytes.Buffer
			cfg := testConfig(f.ln.Addr().String(), mode, 5)
			cfg.Log = &log
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
			}
			t.Logf("\n%s", res.Table())
			checkResult(t, res, cfg)
			// The fake's noise must have been handled like a client should.
			if got := f.pongs.Load(); got != int64(cfg.Users) {
				t.Errorf("ping replies = %d, want %d", got, cfg.Users)
			}
			if got := f.pushAcks.Load(); got != int64(cfg.Users) {
				t.Errorf("roster push acks = %d, want %d", got, cfg.Users)
			}
			if got := f.sessionIQs.Load(); got != int64(cfg.Users) {
				t.Errorf("session IQs = %d, want %d (non-optional session feature)", got, cfg.Users)
			}
			if got := f.bounced.Load(); got != 0 {
				t.Errorf("%d messages bounced: pairing by full JID is wrong", got)
			}
			if strings.Contains(log.String(), "session ") {
				t.Errorf("session errors logged:\n%s", log.String())
			}
		})
	}
}

func checkResult(t *testing.T, res Result, cfg Config) {
	t.Helper()
	if res.Logins != cfg.Users || res.LoginErrors != 0 || res.LoginsPerSec <= 0 {
		t.Errorf("logins = %d (%d errors, %.1f/s), want %d", res.Logins, res.LoginErrors, res.LoginsPerSec, cfg.Users)
	}
	if len(res.Phases) != 2 {
		t.Fatalf("phases = %+v, want fixed and saturating", res.Phases)
	}
	fixed, sat := res.Phases[0], res.Phases[1]
	if fixed.Name != "fixed 200/s" || sat.Name != "saturating" {
		t.Errorf("phase names %q, %q", fixed.Name, sat.Name)
	}
	want := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	if fixed.Sent != want || fixed.Delivered != want || fixed.Errors != 0 {
		t.Errorf("fixed: sent %d delivered %d errors %d, want %d each and no errors", fixed.Sent, fixed.Delivered, fixed.Errors, want)
	}
	// Loose bounds: CI machines stall for hundreds of milliseconds.
	if fixed.DeliveredPerSec <= 0 || fixed.DeliveredPerSec > 1.01*float64(cfg.Rate) {
		t.Errorf("fixed: %.1f delivered/s, want about %d", fixed.DeliveredPerSec, cfg.Rate)
	}
	if sat.Delivered < cfg.Users*cfg.Window || sat.Delivered != sat.Sent || sat.Errors != 0 {
		t.Errorf("saturating: sent %d delivered %d errors %d", sat.Sent, sat.Delivered, sat.Errors)
	}
	for _, p := range res.Phases {
		if p.P50 <= 0 || p.P99 < p.P50 || p.P99 > 5*time.Second {
			t.Errorf("%s: p50 %v p99 %v", p.Name, p.P50, p.P99)
		}
	}
	table := res.Table()
	for _, s := range []string{"logins: 5 ok", "fixed 200/s", "saturating", "p99"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
}

func TestRunSCRAM(t *testing.T) {
	for _, mech := range []string{"SCRAM-SHA-1", "scram-sha-256"} {
		t.Run(mech, func(t *testing.T) {
			f := startFake(t, TLSNone, "secret")
			cfg := testConfig(f.ln.Addr().String(), TLSNone, 3)
			cfg.Mech, cfg.Rate, cfg.Saturate = mech, 0, false
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Logins != 3 || len(res.Phases) != 0 {
				t.Errorf("got %+v", res)
			}
		})
	}
}

func TestRegisterThenRun(t *testing.T) {
	f := startFake(t, TLSStartTLS, "") // only registered accounts may log in
	cfg := testConfig(f.ln.Addr().String(), TLSStartTLS, 4)
	cfg.Password = "pw'<&>" // must survive XML escaping both ways
	cfg.Rate, cfg.Saturate = 0, false
	ctx := context.Background()
	if err := Register(ctx, cfg, 4); err != nil {
		t.Fatal(err)
	}
	// Existing accounts are not an error.
	if err := Register(ctx, cfg, 4); err != nil {
		t.Fatalf("second Register: %v", err)
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Logins != 4 {
		t.Errorf("logins = %d, want 4", res.Logins)
	}
}

func TestRunBadPassword(t *testing.T) {
	f := startFake(t, TLSNone, "secret")
	cfg := testConfig(f.ln.Addr().String(), TLSNone, 3)
	cfg.Password = "wrong"
	var log bytes.Buffer
	cfg.Log = &log
	res, err := Run(context.Background(), cfg)
	if err == nil || res.LoginErrors != 3 || res.Logins != 0 {
		t.Fatalf("Run = %+v, %v; want all logins failing", res, err)
	}
	if !strings.Contains(log.String(), "not-authorized") {
		t.Errorf("log does not explain the failure:\n%s", log.String())
	}
}

func TestRunStartTLSNotOffered(t *testing.T) {
	f := startFake(t, TLSNone, "secret")
	cfg := testConfig(f.ln.Addr().String(), TLSStartTLS, 1)
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Fatal("Run succeeded against a server without STARTTLS")
	}
}

func TestRunCancel(t *testing.T) {
	f := startFake(t, TLSNone, "secret")
	cfg := testConfig(f.ln.Addr().String(), TLSNone, 2)
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, cfg)
	if err == nil {
		t.Fatal("Run ignored cancellation")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v to notice cancellation", d)
	}
}

// TestRunServerPID exercises the /proc sampling against a server in
// another process.
func TestRunServerPID(t *testing.T) {
	addr, pid := startFakeProcess(t, TLSNone, false)
	cfg := testConfig(addr, TLSNone, 5)
	cfg.ServerPID = pid
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Table())
	if res.MemPerConnKiB == 0 {
		t.Error("no memory per connection measured")
	}
	if len(res.Phases) != 2 || res.Phases[0].Delivered != 100 {
		t.Errorf("phases %+v", res.Phases)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addr: "x:1", Domain: "d", TLS: "ssl"},
		{Addr: "x:1", Domain: "d", Mech: "DIGEST-MD5"},
		{Addr: "x:1", Domain: "d", UserPattern: "bench"},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted an invalid config", cfg)
		}
	}
}

// BenchmarkLoadgenCost measures the generator's own CPU per message with
// the server in another process that merely reflects each client's bytes
// back, so nearly all work left is the generator's: building, writing,
// reading, framing and timing messages. Run with -bench LoadgenCost
// -benchtime 1x.
func BenchmarkLoadgenCost(b *testing.B) {
	addr, pid := startFakeProcess(b, TLSNone, true)
	cfg := testConfig(addr, TLSNone, 200)
	cfg.Concurrency = 16
	cfg.Rate = 20000
	cfg.Duration = 3 * time.Second
	cfg.Window = 20
	cfg.ServerPID = pid
	for b.Loop() {
		res, err := Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("\n%s", res.Table())
		for _, p := range res.Phases {
			unit := "fixed"
			if p.Name == "saturating" {
				unit = "sat"
			}
			b.ReportMetric(float64(p.LoadgenPer1000.Nanoseconds())/1000, unit+"-loadgen-cpu-ns/msg")
			b.ReportMetric(p.DeliveredPerSec, unit+"-msg/s")
		}
	}
}
