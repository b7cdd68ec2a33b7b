package brlink

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// ProtocolVersion is the BRLINK version this package speaks.
const ProtocolVersion = 1

// Compression is how a side compresses the DATA payloads it sends.
type Compression uint8

// Compression modes (PROTOCOLS.md §4.4 item 6).
const (
	// CompressNone: payloads are sent as they are.
	CompressNone Compression = 0
	// CompressFrame: each DATA frame's payload is one raw DEFLATE stream,
	// decompressible alone (broadcast and non-ARQ links).
	CompressFrame Compression = 1
	// CompressLink: one DEFLATE stream per precedence and direction, sync
	// flushed after each item (in-order ARQ links only).
	CompressLink Compression = 2
)

func (c Compression) String() string {
	switch c {
	case CompressNone:
		return "none"
	case CompressFrame:
		return "frame"
	case CompressLink:
		return "link"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression reads "none", "frame" or "link"; "" is none.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "none":
		return CompressNone, nil
	case "frame":
		return CompressFrame, nil
	case "link":
		return CompressLink, nil
	}
	return 0, fmt.Errorf("brlink: compression %q: want none, frame or link: %w", s, ErrInvalid)
}

// NACK reasons.
const (
	NackExpired = 1 // the item expired before it could be delivered
	NackRefused = 2 // the receiver will never take it (too large, undecodable)
)

// MaxNodeName bounds the node name in a HELLO.
const MaxNodeName = 255

// helloFixed is the size of a HELLO body before the node name.
const helloFixed = 1 + 1 + 8 + 8 + 1

// HelloBody is the body of HELLO and HELLO-ACK frames:
//
//	0  1 version
//	1  1 compression the sender uses for its DATA
//	2  8 nonce: the sender's session, new each time it (re)starts the link
//	10 8 echo: in HELLO-ACK, the nonce of the HELLO answered; 0 in HELLO
//	18 1 node name length n
//	19 n node name (UTF-8)
//	…    later versions may append fields; they are ignored
type HelloBody struct {
	Version     uint8
	Compression Compression
	Nonce       uint64
	Echo        uint64
	Node        string
}

// AppendHello encodes h at the end of b.
func AppendHello(b []byte, h *HelloBody) ([]byte, error) {
	if len(h.Node) > MaxNodeName || !utf8.ValidString(h.Node) {
		return b, fmt.Errorf("brlink: HELLO node name %q: %w", h.Node, ErrInvalid)
	}
	b = append(b, h.Version, byte(h.Compression))
	b = binary.BigEndian.AppendUint64(b, h.Nonce)
	b = binary.BigEndian.AppendUint64(b, h.Echo)
	b = append(b, byte(len(h.Node)))
	return append(b, h.Node...), nil
}

// DecodeHello parses a HELLO or HELLO-ACK body.
func DecodeHello(b []byte) (*HelloBody, error) {
	if len(b) < helloFixed {
		return nil, fmt.Errorf("brlink: HELLO of %d bytes: %w", len(b), ErrShort)
	}
	h := &HelloBody{Version: b[0], Compression: Compression(b[1]),
		Nonce: binary.BigEndian.Uint64(b[2:]), Echo: binary.BigEndian.Uint64(b[10:])}
	n := int(b[18])
	if len(b) < helloFixed+n {
		return nil, fmt.Errorf("brlink: HELLO node name of %d bytes in %d: %w", n, len(b), ErrShort)
	}
	name := b[helloFixed : helloFixed+n]
	if !utf8.Valid(name) {
		return nil, fmt.Errorf("brlink: HELLO node name not UTF-8: %w", ErrInvalid)
	}
	if h.Version == 0 || h.Compression > CompressLink {
		return nil, fmt.Errorf("brlink: HELLO version %d compression %d: %w", h.Version, h.Compression, ErrInvalid)
	}
	h.Node = string(name)
	return h, nil
}
