// Command floor measures what a room's fan-out costs the kernel and TLS
// alone on this machine, so `aldis bench`'s CPU per 1,000 deliveries can be
// read against it.
//
// The server side is the least a chat server can do: one goroutine per
// connection reads newline-ended messages and writes each, as it comes,
// straight to every TLS connection of the sender's room; no XML, no
// queues, no routing, no protection from slow readers. The client side
// opens rooms × occupants TLS connections on loopback, sends rate messages
// a second spread over the rooms (as `aldis bench --rooms --occupants
// --muc-rate` does, every occupant sender included receives each one),
// and reports deliveries per second, latency, and the server process's
// CPU per 1,000 deliveries.
//
// Run the two sides as separate processes, pinned as the MUC bench pins
// the server and its generator:
//
//	taskset -c 1 go run ./integration/bench/floor -serve 127.0.0.1:5299 &
//	taskset -c 0 go run ./integration/bench/floor -connect 127.0.0.1:5299 -pid $(pgrep -n floor)
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/xmppcore/loadgen"
)

// msgSize is about what an occupant receives from `aldis bench`: a
// groupchat message with from, to, id, a body and a stanza-id.
const msgSize = 330

func main() {
	serve := flag.String("serve", "", "listen on this address and fan out (server side)")
	connect := flag.String("connect", "", "server address (client side)")
	pid := flag.Int("pid", 0, "server process whose CPU is measured")
	rooms := flag.Int("rooms", 10, "rooms")
	occupants := flag.Int("occupants", 20, "connections per room")
	rate := flag.Int("rate", 600, "messages a second, over all rooms")
	dur := flag.Duration("duration", 10*time.Second, "measured time, after 2 s of warm-up")
	flag.Parse()
	var err error
	switch {
	case *serve != "":
		err = runServer(*serve)
	case *connect != "":
		err = runClients(*connect, *pid, *rooms, *occupants, *rate, *dur)
	default:
		err = errors.New("one of -serve and -connect is needed")
	}
	if err != nil {
		log.Fatal(err)
	}
}

// room is the connections of one room; a connection's mutex serialises
// the writers of its room's senders.
type room struct {
	mu    sync.Mutex
	conns []*peer
}

type peer struct {
	mu sync.Mutex
	c  *tls.Conn
}

func runServer(addr string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	rooms := map[byte]*room{}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			tc := c.(*tls.Conn)
			br := bufio.NewReader(tc)
			id, err := br.ReadByte() // the room, sent first
			if err != nil {
				tc.Close()
				return
			}
			mu.Lock()
			rm := rooms[id]
			if rm == nil {
				rm = &room{}
				rooms[id] = rm
			}
			mu.Unlock()
			p := &peer{c: tc}
			rm.mu.Lock()
			rm.conns = append(rm.conns, p)
			rm.mu.Unlock()
			out := make([]byte, msgSize)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil || len(line) < 8 {
					return
				}
				// The delivered message carries the sender's 8-byte timestamp.
				copy(out, line[:8])
				out[msgSize-1] = '\n'
				rm.mu.Lock()
				conns := rm.conns
				rm.mu.Unlock()
				for _, o := range conns {
					o.mu.Lock()
					o.c.Write(out)
					o.mu.Unlock()
				}
			}
		}()
	}
}

func runClients(addr string, pid, rooms, occupants, rate int, dur time.Duration) error {
	cfg := &tls.Config{InsecureSkipVerify: true} // loopback, our own throwaway certificate
	conns := make([][]*tls.Conn, rooms)
	var delivered atomic.Int64
	var latMu sync.Mutex
	var lats []time.Duration
	var measuring atomic.Bool
	for r := range rooms {
		for range occupants {
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			if _, err := c.Write([]byte{byte(r)}); err != nil {
				return err
			}
			conns[r] = append(conns[r], c)
			go func() {
				buf := make([]byte, msgSize)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if !measuring.Load() {
						continue
					}
					delivered.Add(1)
					sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf)))
					latMu.Lock()
					lats = append(lats, time.Since(sent))
					latMu.Unlock()
				}
			}()
		}
	}
	time.Sleep(500 * time.Millisecond) // every connection registered in its room
	msg := make([]byte, 200)
	for i := range msg {
		msg[i] = 'x'
	}
	msg[len(msg)-1] = '\n'
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			r := i % rooms
			c := conns[r][(i/rooms)%occupants]
			for {
				// A timestamp that contains no newline, so the line stays one line.
				binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
				if !slices.Contains(msg[:8], '\n') {
					break
				}
			}
			if _, err := c.Write(msg); err != nil {
				log.Printf("send: %v", err)
				return
			}
		}
	}()
	time.Sleep(2 * time.Second)
	cpu0, err := loadgen.ProcCPU(pid)
	if err != nil {
		return err
	}
	measuring.Store(true)
	start := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1, err := loadgen.ProcCPU(pid)
	if err != nil {
		return err
	}
	close(stop)
	n := delivered.Load()
	latMu.Lock()
	slices.Sort(lats)
	p50, p99 := lats[len(lats)/2], lats[len(lats)*99/100]
	latMu.Unlock()
	fmt.Printf("%d deliveries/s, p50 %v, p99 %v, server CPU %.1f ms per 1,000 deliveries\n",
		int(float64(n)/elapsed.Seconds()), p50.Round(time.Microsecond), p99.Round(time.Microsecond),
		float64((cpu1-cpu0).Microseconds())/float64(n))
	return nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
