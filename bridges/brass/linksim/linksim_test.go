package linksim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/sis"
)

const sap = 13

var arq = sis.Service{Mode: sis.ModeARQ, Confirm: sis.ConfirmNode}

func start(t *testing.T, cfg Config) (*Sim, *sis.Client, *sis.Client) {
	t.Helper()
	cfg.ListenA, cfg.ListenB = "127.0.0.1:0", "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	a, b := s.Addrs()
	dial := func(addr string, svc sis.Service) *sis.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := sis.Dial(ctx, addr, sis.ClientConfig{SAP: sap, Service: svc, EventQueue: 1024})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return s, dial(a, arq), dial(b, arq)
}

// next returns the next event of type typ, skipping others.
func next(t *testing.T, c *sis.Client, typ sis.Type, d time.Duration) *sis.Primitive {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case p, ok := <-c.Events():
			if !ok {
				t.Fatalf("client stopped: %v", c.Err())
			}
			if p.Type == typ {
				return p
			}
		case <-timeout:
			t.Fatalf("no %v within %v", typ, d)
		}
	}
}

var nodeA, nodeB = sis.Addr{Node: 1}, sis.Addr{Node: 2}

func TestRateAndLatency(t *testing.T) {
	// 10 × 300 bytes at 24,000 bit/s is 1 s of air time, plus 300 ms latency.
	s, a, b := start(t, Config{Rate: 24000, Latency: 300 * time.Millisecond})
	ctx := context.Background()
	t0 := time.Now()
	for i := range 10 {
		data := []byte(fmt.Sprintf("%03d", i) + string(make([]byte, 297)))
		if err := a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: sap, Priority: 7, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	first := time.Duration(0)
	for i := range 10 {
		p := next(t, b, sis.UnidataIndication, 10*time.Second)
		if i == 0 {
			first = time.Since(t0)
		}
		if got := string(p.Data[:3]); got != fmt.Sprintf("%03d", i) || p.Src != nodeA || p.SrcSAP != sap {
			t.Fatalf("U_PDU %d: %q from %v", i, got, p.Src)
		}
	}
	total := time.Since(t0)
	t.Logf("first after %v, all after %v", first, total)
	if first < 400*time.Millisecond || total < 1250*time.Millisecond || total > 6*time.Second {
		t.Fatalf("timing: first %v, all %v; want ≈ 0.4 s and ≈ 1.3 s", first, total)
	}
	// Node confirmations come back to the sender.
	for range 10 {
		next(t, a, sis.UnidataRequestConfirm, 5*time.Second)
	}
	// And the other way.
	if err := b.Send(ctx, sis.Unidata{Dest: nodeA, DestSAP: sap, Data: []byte("back")}); err != nil {
		t.Fatal(err)
	}
	if p := next(t, a, sis.UnidataIndication, 5*time.Second); string(p.Data) != "back" {
		t.Fatalf("got %q", p.Data)
	}
	st := s.Stats()
	if st.AirBytes[0] != 3000 || st.Delivered[0] != 10 || st.Delivered[1] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLoss(t *testing.T) {
	s, a, b := start(t, Config{Rate: 1_000_000, Loss: 0.3, Seed: 7})
	ctx := context.Background()
	const n = 200
	for i := range n {
		// Non-ARQ: a lost transmission is gone.
		if err := a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: sap, Service: sis.Service{Mode: sis.ModeNonARQ}, Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// ARQ: repeated until it gets through.
	for i := range 20 {
		if err := a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: sap, Data: []byte{'r', byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	arqGot := 0
	deadline := time.After(10 * time.Second)
	for arqGot < 20 {
		select {
		case p := <-b.Events():
			if p.Type == sis.UnidataIndication && len(p.Data) == 2 {
				arqGot++
			}
		case <-deadline:
			t.Fatalf("ARQ: %d of 20 arrived", arqGot)
		}
	}
	st := s.Stats()
	t.Logf("stats %+v", st)
	if lost := st.Lost[0]; lost < n*15/100 || lost > n*45/100 {
		t.Fatalf("lost %d of %d non-ARQ U_PDUs at 30%% loss", lost, n)
	}
}

func TestOutage(t *testing.T) {
	_, a, b := start(t, Config{Rate: 100_000, Outages: []Outage{{Start: 300 * time.Millisecond, Duration: 700 * time.Millisecond}}})
	ctx := context.Background()
	time.Sleep(400 * time.Millisecond) // into the outage
	t0 := time.Now()
	if err := a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: sap, Data: []byte("held")}); err != nil {
		t.Fatal(err)
	}
	next(t, b, sis.UnidataIndication, 5*time.Second)
	if d := time.Since(t0); d < 450*time.Millisecond {
		t.Fatalf("arrived %v after sending, during the outage", d)
	}
}

func TestFlowControl(t *testing.T) {
	_, a, b := start(t, Config{Rate: 80_000, Buffer: 1000})
	ctx := context.Background()
	go func() {
		for i := range 20 {
			a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: sap, Data: append([]byte{byte(i)}, make([]byte, 199)...)})
		}
	}()
	next(t, a, sis.DataFlowOff, 5*time.Second)
	next(t, a, sis.DataFlowOn, 5*time.Second)
	for i := range 20 {
		if p := next(t, b, sis.UnidataIndication, 10*time.Second); p.Data[0] != byte(i) {
			t.Fatalf("U_PDU %d arrived as %d", i, p.Data[0])
		}
	}
}

func TestPriorityAndRejections(t *testing.T) {
	_, a, b := start(t, Config{Rate: 8000})
	ctx := context.Background()
	// The first goes on air at once; the rest queue and leave by priority.
	for i, prio := range []uint8{7, 7, 7, 13} {
		a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: sap, Priority: prio, Data: append([]byte{byte(i)}, make([]byte, 99)...)})
	}
	var order []byte
	for range 4 {
		order = append(order, next(t, b, sis.UnidataIndication, 10*time.Second).Data[0])
	}
	if string(order) != "\x00\x03\x01\x02" {
		t.Fatalf("order %v", order)
	}
	// Unknown destination node and unbound SAP.
	a.Send(ctx, sis.Unidata{Dest: sis.Addr{Node: 99}, DestSAP: sap, Data: []byte("x")})
	if p := next(t, a, sis.UnidataRequestRejected, 5*time.Second); p.Reason != sis.RejectNoResponse {
		t.Fatalf("reason %d", p.Reason)
	}
	a.Send(ctx, sis.Unidata{Dest: nodeB, DestSAP: 3, Data: []byte("y")})
	if p := next(t, a, sis.UnidataRequestRejected, 5*time.Second); p.Reason != sis.RejectSAPNotBound {
		t.Fatalf("reason %d", p.Reason)
	}
}

func TestSecondClientRejected(t *testing.T) {
	s, _, _ := start(t, Config{})
	addr, _ := s.Addrs()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sis.Dial(ctx, addr, sis.ClientConfig{SAP: sap, Service: arq})
	if be, ok := err.(*sis.BindError); !ok || be.Reason != sis.BindRejectSAPInUse {
		t.Fatalf("err = %v", err)
	}
}

func TestParseOutage(t *testing.T) {
	o, err := ParseOutage("30s@60s")
	if err != nil || o.Start != time.Minute || o.Duration != 30*time.Second || o.String() != "30s@1m0s" {
		t.Fatalf("%v %v", o, err)
	}
	for _, bad := range []string{"30s", "x@1s", "1s@x", "0s@1s", "1s@-1s"} {
		if _, err := ParseOutage(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
