package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// TestIRCBridgeBench runs `aldis bench --irc` against aldis's own IRC gateway on InspIRCd
// without fakelag (the gateway's flood control out of the way): three XMPP users in the room,
// two IRC users in the linked channel, the CPU of aldis and InspIRCd measured. It is quick (a
// few dozen messages each way) and checks that the figures are sane, then that a room that is
// not linked ends the run with an error in time; with ALDIS_BENCH=1 it runs the full-size
// scenario (300 messages one at a time, 2,000 with 100 in flight) and logs the table.
// integration/bench runs the same scenario side by side with Biboumi.
func TestIRCBridgeBench(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "bench@conference." + domain
	maps := ircMap(t, ircd.Addr, "flood_interval = \"1us\"\nflood_burst = 1000", ircLink{room: room, channel: "#bench"})
	srv := startServer(t, serverOpts{Domain: domain, Unthrottled: true, LogLevel: "warn",
		Extra: fmt.Sprintf("\n[irc]\nmaps = [%q]\nrejoin_interval = \"1s\"\n", maps)})
	for i := range 3 {
		srv.AddUser(fmt.Sprintf("bench%d", i), "bench-secret")
	}
	latency, burst := "40", "300"
	if os.Getenv("ALDIS_BENCH") != "" {
		latency, burst = "300", "2000"
	}
	args := []string{"bench", "--addr", srv.Addr, "--domain", domain, "--password", "bench-secret", "--insecure",
		"--irc", ircd.Addr, "--irc-channel", "#bench", "--room", room, "--irc-latency", latency, "--irc-burst", burst,
		"--pid", fmt.Sprintf("aldis=%d", srv.PID()), "--pid", fmt.Sprintf("inspircd=%d", ircd.PID()), "--ready-timeout", "30s"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, aldisBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("aldis %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &out, &errb)
	}
	t.Logf("aldis %s\n%s", strings.Join(args, " "), &out)

	// The rows: direction, phase, sent, delivered, lost, duplicates, errors, msg/s, p50, p99, then
	// CPU per 1,000 messages of aldis, InspIRCd, their total and the benchmark's own.
	want := map[string]int{"IRC→XMPP latency": 3, "XMPP→IRC latency": 2, "IRC→XMPP throughput": 3, "XMPP→IRC throughput": 2}
	for line := range strings.Lines(out.String()) {
		f := strings.Fields(line)
		if len(f) != 14 {
			continue
		}
		receivers, ok := want[f[0]+" "+f[1]]
		if !ok {
			continue
		}
		delete(want, f[0]+" "+f[1])
		num := func(i int) float64 {
			v, err := strconv.ParseFloat(strings.TrimSuffix(f[i], "ms"), 64)
			if err != nil {
				t.Fatalf("%s %s: column %d is %q", f[0], f[1], i, f[i])
			}
			return v
		}
		dur := func(i int) time.Duration {
			d, err := time.ParseDuration(f[i])
			if err != nil {
				t.Fatalf("%s %s: column %d is %q", f[0], f[1], i, f[i])
			}
			return d
		}
		sent := latency
		if f[1] == "throughput" {
			sent = burst
		}
		n, _ := strconv.Atoi(sent)
		if f[2] != sent || int(num(3)) != n*receivers || num(4) != 0 || num(5) != 0 || num(6) != 0 {
			t.Errorf("%s %s: sent %s, delivered %s, lost %s, duplicates %s, errors %s; want %d, each once at %d receivers",
				f[0], f[1], f[2], f[3], f[4], f[5], f[6], n, receivers)
		}
		if p50, p99 := dur(8), dur(9); p50 <= 0 || p99 < p50 || p99 > 5*time.Second || num(7) <= 0 {
			t.Errorf("%s %s: p50 %v, p99 %v, %s msg/s", f[0], f[1], p50, p99, f[7])
		}
		// CPU is read in 10 ms ticks: a short phase may see none, never a negative or absurd amount.
		for i := 10; i < 14; i++ {
			if v := num(i); v < 0 || v > 10000 {
				t.Errorf("%s %s: CPU column %d is %s", f[0], f[1], i, f[i])
			}
		}
		if num(12) != num(10)+num(11) && num(12)-num(10)-num(11) > 0.15 {
			t.Errorf("%s %s: total CPU %s is not aldis %s + InspIRCd %s", f[0], f[1], f[12], f[10], f[11])
		}
	}
	if len(want) > 0 {
		t.Errorf("rows missing from the table: %v", want)
	}

	// A room that is not linked to the channel: nothing crosses, and the run says so in time.
	args = []string{"bench", "--addr", srv.Addr, "--domain", domain, "--password", "bench-secret", "--insecure",
		"--irc", ircd.Addr, "--irc-channel", "#bench", "--room", "unlinked@conference." + domain, "--ready-timeout", "3s"}
	cmd = exec.CommandContext(ctx, aldisBin, args...)
	out.Reset()
	errb.Reset()
	cmd.Stdout, cmd.Stderr = &out, &errb
	began := time.Now()
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 ||
		!strings.Contains(errb.String(), "no message went from #bench on "+ircd.Addr+" to the room unlinked@conference."+domain+
			" within 3s: is the room linked to the channel") {
		t.Errorf("unlinked room: %v (exit %d)\nstdout:\n%s\nstderr:\n%s", err, code, &out, &errb)
	}
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("unlinked room: gave up after %v", took)
	}
}
