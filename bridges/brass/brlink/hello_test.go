package brlink

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []HelloBody{
		{Version: 1, Compression: CompressLink, Nonce: 0x0102030405060708, Node: "ship.example"},
		{Version: 1, Compression: CompressFrame, Nonce: 1, Echo: ^uint64(0), Node: ""},
		{Version: 7, Compression: CompressNone, Nonce: 9, Node: strings.Repeat("é", 127)},
	} {
		b, err := AppendHello(nil, &h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeHello(append(b, "future fields"...))
		if err != nil || *got != h {
			t.Fatalf("%+v: got %+v, %v", h, got, err)
		}
	}
}

func TestHelloInvalid(t *testing.T) {
	if _, err := AppendHello(nil, &HelloBody{Version: 1, Node: strings.Repeat("x", 256)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("256-byte name: %v", err)
	}
	good, _ := AppendHello(nil, &HelloBody{Version: 1, Node: "abc"})
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short name":     good[:len(good)-1],
		"version 0":      append([]byte{0}, good[1:]...),
		"compression 3":  append([]byte{1, 3}, good[2:]...),
		"name not UTF-8": append(append([]byte{}, good[:len(good)-3]...), 0xFF, 0xFE, 0xFD),
	} {
		if _, err := DecodeHello(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestParseCompression(t *testing.T) {
	for s, want := range map[string]Compression{"": CompressNone, "none": CompressNone, "frame": CompressFrame, "link": CompressLink} {
		if c, err := ParseCompression(s); err != nil || c != want || (s != "" && c.String() != s) {
			t.Errorf("%q: %v %v", s, c, err)
		}
	}
	if _, err := ParseCompression("zlib"); err == nil {
		t.Error("zlib accepted")
	}
}

func TestReassemblerExpiry(t *testing.T) {
	r := NewReassembler(8)
	now := time.Unix(1_700_000_000, 0)
	frames, err := Split(Frame{ID: id1, Expires: uint32(now.Unix()) + 60}, bytes.Repeat([]byte("x"), 300), 128)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if i == 1 { // lost
			continue
		}
		if _, ok := r.Add(&f); ok {
			t.Fatal("complete without segment 1")
		}
	}
	if n := r.Expire(now.Add(59 * time.Second)); n != 0 || r.Pending() != 1 {
		t.Fatalf("before expiry: dropped %d, pending %d", n, r.Pending())
	}
	if n := r.Expire(now.Add(61 * time.Second)); n != 1 || r.Pending() != 0 || r.Bytes() != 0 {
		t.Fatalf("after expiry: dropped %d, pending %d, bytes %d", n, r.Pending(), r.Bytes())
	}
	// The late segment alone starts a new set rather than completing the old.
	if _, ok := r.Add(&frames[1]); ok {
		t.Fatal("completed from a discarded set")
	}
}

func TestReassemblerByteLimit(t *testing.T) {
	r := NewReassembler(100)
	r.LimitBytes(1000)
	mk := func(id byte, n int) []Frame {
		fs, err := Split(Frame{ID: ID{id}}, bytes.Repeat([]byte{id}, n), 128)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	a, b := mk(1, 600), mk(2, 600)
	r.Add(&a[0])
	r.Add(&b[0])
	r.Add(&b[1])
	if r.Bytes() > 1000 {
		t.Fatalf("holding %d bytes", r.Bytes())
	}
	// A message larger than the limit never completes.
	big := mk(3, 1100)
	for _, f := range big {
		if _, ok := r.Add(&f); ok {
			t.Fatal("1100-byte message completed under a 1000-byte limit")
		}
	}
	if r.Bytes() > 1000 {
		t.Fatalf("holding %d bytes", r.Bytes())
	}
	// Within the limit, messages still complete.
	c := mk(4, 500)
	var got []byte
	for _, f := range c {
		got, _ = r.Add(&f)
	}
	if len(got) != 500 {
		t.Fatalf("500-byte message: got %d bytes", len(got))
	}
}

func FuzzDecodeHello(f *testing.F) {
	b, _ := AppendHello(nil, &HelloBody{Version: 1, Compression: CompressLink, Nonce: 5, Echo: 6, Node: "shore"})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		h, err := DecodeHello(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same fields.
		again, err := AppendHello(nil, h)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		h2, err := DecodeHello(again)
		if err != nil || *h2 != *h {
			t.Fatalf("round trip %+v → %+v %v", h, h2, err)
		}
	})
}
