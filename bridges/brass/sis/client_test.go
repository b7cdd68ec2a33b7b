package sis

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// fakeNode is the node end of a client connection, driven by the test.
type fakeNode struct {
	t    *testing.T
	conn net.Conn
	r    *Reader
}

func (n *fakeNode) send(p Primitive) {
	n.t.Helper()
	b, err := Append(nil, &p)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.conn.Write(b); err != nil {
		n.t.Fatal(err)
	}
}

func (n *fakeNode) read(d time.Duration) (*Primitive, error) {
	n.conn.SetReadDeadline(time.Now().Add(d))
	return n.r.Read()
}

func (n *fakeNode) expect(typ Type) *Primitive {
	n.t.Helper()
	p, err := n.read(5 * time.Second)
	if err != nil {
		n.t.Fatalf("waiting for %v: %v", typ, err)
	}
	if p.Type != typ {
		n.t.Fatalf("got %v, want %v", p.Type, typ)
	}
	return p
}

var arq = Service{Mode: ModeARQ, Confirm: ConfirmNode}

// bound starts a client on a pipe and accepts its bind with mtu.
func bound(t *testing.T, cfg ClientConfig, mtu uint16) (*Client, *fakeNode) {
	t.Helper()
	a, b := net.Pipe()
	node := &fakeNode{t: t, conn: b, r: NewReader(b, 0)}
	t.Cleanup(func() { b.Close() })
	cfg.SAP, cfg.Service = 13, arq
	ch := make(chan *Client, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := Bind(context.Background(), a, cfg)
		errc <- err
		ch <- c
	}()
	p := node.expect(BindRequest)
	if p.SAP != 13 || p.Service != arq {
		t.Fatalf("bind request %+v", p)
	}
	node.send(Primitive{Type: BindAccepted, SAP: 13, MTU: mtu})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	c := <-ch
	t.Cleanup(func() { c.Close() })
	return c, node
}

func TestBindRejected(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	errc := make(chan error, 1)
	go func() { _, err := Bind(context.Background(), a, ClientConfig{SAP: 6, Service: arq}); errc <- err }()
	node := &fakeNode{t: t, conn: b, r: NewReader(b, 0)}
	node.expect(BindRequest)
	node.send(Primitive{Type: BindRejected, Reason: BindRejectSAPInUse})
	var be *BindError
	if err := <-errc; !errors.As(err, &be) || be.Reason != 3 {
		t.Fatalf("err = %v", err)
	}
}

func TestBindTimeout(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go func() { NewReader(b, 0).Read() }()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Bind(ctx, a, ClientConfig{SAP: 6, Service: arq}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestUnidataBothWays(t *testing.T) {
	c, node := bound(t, ClientConfig{}, 2048)
	if c.MTU() != 2048 {
		t.Fatalf("MTU %d", c.MTU())
	}
	ctx := context.Background()
	if err := c.Send(ctx, Unidata{Dest: node12, DestSAP: 13, Priority: 7, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	p := node.expect(UnidataRequest)
	if string(p.Data) != "hello" || p.Priority != 7 || p.Addr != node12 || p.SAP != 13 {
		t.Fatalf("%+v", p)
	}
	if err := c.Send(ctx, Unidata{Dest: node12, DestSAP: 13, Data: make([]byte, 2049)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	node.send(Primitive{Type: UnidataRequestConfirm, SAP: 13, Addr: node12, Data: []byte("hello")})
	node.send(Primitive{Type: UnidataIndication, SAP: 13, Addr: node11, TxMode: ModeARQ, SrcSAP: 13, Src: node12, Data: []byte("back")})
	node.send(Primitive{Type: UnidataRequestRejected, Reason: RejectNoResponse, SAP: 13, Addr: node12, Data: []byte("x")})
	for _, want := range []Type{UnidataRequestConfirm, UnidataIndication, UnidataRequestRejected} {
		select {
		case p := <-c.Events():
			if p.Type != want {
				t.Fatalf("event %v, want %v", p.Type, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v", want)
		}
	}
	// Nothing over the MTU was written: the next frame is the close.
	go c.Close()
	node.expect(UnbindRequest)
	<-c.Done()
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("err %v", c.Err())
	}
}

func TestFlowControl(t *testing.T) {
	c, node := bound(t, ClientConfig{}, 2048)
	ctx := context.Background()
	node.send(Primitive{Type: DataFlowOff})
	if p := <-c.Events(); p.Type != DataFlowOff {
		t.Fatalf("event %v", p.Type)
	}
	for _, s := range []string{"one", "two", "three"} {
		if err := c.Send(ctx, Unidata{Dest: node12, DestSAP: 13, Data: []byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := node.read(300 * time.Millisecond); err == nil {
		t.Fatalf("sent %v with flow off", p.Type)
	}
	node.r = NewReader(node.conn, 0) // the deadline error ended the old one's view
	node.send(Primitive{Type: DataFlowOn})
	for _, s := range []string{"one", "two", "three"} {
		if p := node.expect(UnidataRequest); string(p.Data) != s {
			t.Fatalf("got %q want %q", p.Data, s)
		}
	}
}

func TestQueueBounded(t *testing.T) {
	c, node := bound(t, ClientConfig{SendQueue: 2}, 2048)
	node.send(Primitive{Type: DataFlowOff})
	<-c.Events()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = c.Send(ctx, Unidata{Dest: node12, Data: []byte("x")})
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestKeepAliveAnswered(t *testing.T) {
	_, node := bound(t, ClientConfig{}, 2048)
	node.send(Primitive{Type: KeepAlive})
	node.expect(KeepAlive)
}

func TestKeepAliveDead(t *testing.T) {
	c, node := bound(t, ClientConfig{KeepAliveIdle: 100 * time.Millisecond, KeepAliveWait: 100 * time.Millisecond}, 2048)
	node.expect(KeepAlive) // sent after silence; not answered
	go func() {            // drain whatever else
		for {
			if _, err := node.read(5 * time.Second); err != nil && !IsInvalid(err) {
				return
			}
		}
	}()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client still up")
	}
	if !errors.Is(c.Err(), ErrDead) {
		t.Fatalf("err = %v", c.Err())
	}
}

func TestKeepAliveAlive(t *testing.T) {
	c, node := bound(t, ClientConfig{KeepAliveIdle: 100 * time.Millisecond, KeepAliveWait: 200 * time.Millisecond}, 2048)
	for range 3 {
		node.expect(KeepAlive)
		node.send(Primitive{Type: KeepAlive})
	}
	select {
	case <-c.Done():
		t.Fatalf("client stopped: %v", c.Err())
	default:
	}
}

func TestUnbindIndication(t *testing.T) {
	c, node := bound(t, ClientConfig{}, 2048)
	node.send(Primitive{Type: UnbindIndication, Reason: UnbindPreempted})
	for range c.Events() {
	}
	var ue *UnbindError
	if !errors.As(c.Err(), &ue) || ue.Reason != 1 {
		t.Fatalf("err = %v", c.Err())
	}
	if err := c.Send(context.Background(), Unidata{Data: []byte("x")}); err == nil {
		t.Fatal("send after unbind")
	}
}

func TestConnectionLost(t *testing.T) {
	c, node := bound(t, ClientConfig{}, 2048)
	node.conn.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client still up")
	}
	if c.Err() == nil || errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("err = %v", c.Err())
	}
}
