package c2s

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/certs"
)

// tlsPair returns the server side of a TLS connection over a sock, after
// the handshake, and the client side.
func tlsPair(t *testing.T) (*sock, *tls.Conn, *tls.Conn) {
	t.Helper()
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := certs.GenerateSelfSigned(cf, kf, []string{"example.org"}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sk := newSock(sc)
	if sk.rc == nil && nonBlockingWrites {
		t.Fatal("a TCP connection has no raw descriptor")
	}
	srv := tls.Server(sk, &tls.Config{Certificates: []tls.Certificate{cert}})
	cli := tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
	done := make(chan error, 1)
	go func() { done <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return sk, srv, cli
}

// TestSockNeverBlocks: once buffered, TLS writes to a client that does not
// read return at once, keeping what the socket refused; drain then writes
// it, and the client reads every byte in order.
func TestSockNeverBlocks(t *testing.T) {
	if !nonBlockingWrites {
		t.Skip("no non-blocking writes here")
	}
	sk, srv, cli := tlsPair(t)
	var kicked atomic.Int32
	sk.onPending = func() { kicked.Add(1) }
	sk.buffer()

	var want bytes.Buffer
	start := time.Now()
	for i := 0; want.Len() < 16<<20; i++ { // far more than the socket buffers hold
		line := fmt.Sprintf("<message id='%d'>%s</message>", i, strings.Repeat("x", 900))
		want.WriteString(line)
		if _, err := srv.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("writing to a client that does not read took %v", took)
	}
	if !sk.hasPending() || kicked.Load() == 0 {
		t.Fatalf("pending %v, onPending called %d times: the socket took 16 MiB unread?", sk.hasPending(), kicked.Load())
	}
	drained := make(chan error, 1)
	go func() {
		srv.SetWriteDeadline(time.Now().Add(30 * time.Second))
		drained <- sk.drain()
	}()
	got := make([]byte, want.Len())
	cli.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(cli, got); err != nil {
		t.Fatal(err)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("the client read other bytes than were written, or in another order")
	}
	if sk.hasPending() {
		t.Fatal("bytes still pending after drain")
	}
}
