package integration

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/sis"
)

// TestLinksim runs `aldis linksim` at 2,400 bit/s with a scheduled outage
// and two SIS clients: a 300-byte U_PDU takes its air time plus the
// latency, one sent during the outage arrives after it, and the
// simulator reports the bytes it carried when stopped.
func TestLinksim(t *testing.T) {
	integration(t)
	cmd := exec.Command(aldisBin, "linksim", "-a", "127.0.0.1:0", "-b", "127.0.0.1:0",
		"--rate", "2400", "--latency", "500ms", "--outage", "3s@4s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatal("no banner from aldis linksim")
	}
	m := regexp.MustCompile(`end A (\S+) .* end B (\S+) `).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("banner %q", lines.Text())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc := sis.Service{Mode: sis.ModeARQ, Confirm: sis.ConfirmNode}
	a, err := sis.Dial(ctx, m[1], sis.ClientConfig{SAP: 13, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sis.Dial(ctx, m[2], sis.ClientConfig{SAP: 13, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	recv := func(c *sis.Client, within time.Duration) *sis.Primitive {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case p := <-c.Events():
				if p == nil {
					t.Fatalf("client stopped: %v", c.Err())
				}
				if p.Type == sis.UnidataIndication {
					return p
				}
			case <-deadline:
				t.Fatalf("nothing within %v", within)
			}
		}
	}

	t0 := time.Now()
	data := []byte(strings.Repeat("x", 300))
	if err := a.Send(ctx, sis.Unidata{Dest: sis.Addr{Node: 2}, DestSAP: 13, Priority: 7, Data: data}); err != nil {
		t.Fatal(err)
	}
	recv(b, 5*time.Second)
	took := time.Since(t0)
	t.Logf("300 bytes at 2400 bit/s with 500 ms latency: %v", took)
	if took < 1400*time.Millisecond || took > 6*time.Second {
		t.Fatalf("took %v, want ≈ 1.5 s", took)
	}

	time.Sleep(time.Until(started.Add(4500 * time.Millisecond))) // inside the outage
	t1 := time.Now()
	if err := b.Send(ctx, sis.Unidata{Dest: sis.Addr{Node: 1}, DestSAP: 13, Data: []byte("during the outage")}); err != nil {
		t.Fatal(err)
	}
	p := recv(a, 10*time.Second)
	if string(p.Data) != "during the outage" {
		t.Fatalf("got %q", p.Data)
	}
	if at := time.Since(started); at < 7*time.Second {
		t.Fatalf("arrived %v after start, inside the outage (sent %v)", at, t1.Sub(started))
	}

	cmd.Process.Signal(syscall.SIGTERM)
	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	if !strings.Contains(last, "A→B 300 bytes on air, 1 delivered") || !strings.Contains(last, "B→A 17 bytes, 1 delivered") {
		t.Fatalf("stats line %q", last)
	}
}
