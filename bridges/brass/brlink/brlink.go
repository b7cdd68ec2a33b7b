// Package brlink encodes and decodes BRLINK frames, the constrained-link
// framing between Aldis link relays (PROTOCOLS.md §4.4.2), with segmentation
// and the precedence scale of §4.4.1.
package brlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Magic is the first byte of every frame: magic and version 1.
const Magic = 0xB1

// HeaderLen is the fixed header before the payload.
const HeaderLen = 28

// Type is a frame type.
type Type uint8

// Frame types.
const (
	Data     Type = 0x01
	Ack      Type = 0x02
	Nack     Type = 0x03
	Hello    Type = 0x04
	HelloAck Type = 0x05
)

// Class is what a DATA payload carries.
type Class uint8

// Payload classes.
const (
	ClassCtl   Class = 0
	ClassXMPP  Class = 1
	ClassEmail Class = 2
	ClassFMUC  Class = 3
)

// Flag bits of byte 2 (the low three bits are the precedence).
const (
	FlagFirst     = 0x80
	FlagLast      = 0x40
	FlagDeflate   = 0x20
	FlagAckReq    = 0x10
	FlagBroadcast = 0x08
)

// Precedence orders traffic on the link (PROTOCOLS.md §4.4.1).
type Precedence uint8

// The precedences, lowest first.
const (
	Deferred Precedence = iota
	Routine
	Priority
	Immediate
	Flash
	Override
)

var precNames = [...]string{"deferred", "routine", "priority", "immediate", "flash", "override"}

func (p Precedence) String() string {
	if int(p) < len(precNames) {
		return precNames[p]
	}
	return fmt.Sprintf("precedence(%d)", uint8(p))
}

// ParsePrecedence reads a precedence name, case-insensitively.
func ParsePrecedence(s string) (Precedence, bool) {
	for i, n := range precNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Precedence(i), true
		}
	}
	return 0, false
}

// SISPriority is the STANAG 5066 UNIDATA priority (0–15) for p.
func (p Precedence) SISPriority() uint8 {
	return [...]uint8{4, 7, 9, 11, 13, 15}[min(p, Override)]
}

// ID is a 128-bit message identifier.
type ID [16]byte

// Frame is one BRLINK frame.
type Frame struct {
	Type       Type
	Flags      uint8 // Flag* bits; the precedence is in Precedence
	Precedence Precedence
	Class      Class
	ID         ID
	Segment    uint16
	Segments   uint16 // ≥ 1
	Expires    uint32 // Unix seconds, 0 = none
	Payload    []byte // DATA segment, HELLO body; for ACK see IDs, for NACK see Reason
	IDs        []ID   // ACK: the acknowledged messages
	Reason     uint8  // NACK
}

// Errors from Decode.
var (
	ErrShort   = errors.New("brlink: frame too short")
	ErrMagic   = errors.New("brlink: bad magic")
	ErrInvalid = errors.New("brlink: invalid field")
)

// Append encodes f at the end of b.
func Append(b []byte, f *Frame) ([]byte, error) {
	if f.Precedence > Override || f.Class > ClassFMUC || f.Segments == 0 || f.Segment >= f.Segments ||
		f.Type < Data || f.Type > HelloAck {
		return b, fmt.Errorf("brlink: encode %+v: %w", f.Type, ErrInvalid)
	}
	b = append(b, Magic, byte(f.Type), f.Flags&0xF8|byte(f.Precedence), byte(f.Class))
	b = append(b, f.ID[:]...)
	b = binary.BigEndian.AppendUint16(b, f.Segment)
	b = binary.BigEndian.AppendUint16(b, f.Segments)
	b = binary.BigEndian.AppendUint32(b, f.Expires)
	switch f.Type {
	case Ack:
		for _, id := range f.IDs {
			b = append(b, id[:]...)
		}
	case Nack:
		b = append(b, f.Reason)
	default:
		b = append(b, f.Payload...)
	}
	return b, nil
}

// Decode parses one frame (a whole U_PDU). Payload aliases b.
func Decode(b []byte) (*Frame, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("brlink: %d bytes: %w", len(b), ErrShort)
	}
	if b[0] != Magic {
		return nil, fmt.Errorf("brlink: 0x%02X: %w", b[0], ErrMagic)
	}
	f := &Frame{
		Type: Type(b[1]), Flags: b[2] & 0xF8, Precedence: Precedence(b[2] & 0x07), Class: Class(b[3]),
		Segment:  binary.BigEndian.Uint16(b[20:]),
		Segments: binary.BigEndian.Uint16(b[22:]),
		Expires:  binary.BigEndian.Uint32(b[24:]),
	}
	copy(f.ID[:], b[4:20])
	switch {
	case f.Type < Data || f.Type > HelloAck:
		return nil, fmt.Errorf("brlink: type %d: %w", b[1], ErrInvalid)
	case f.Precedence > Override:
		return nil, fmt.Errorf("brlink: precedence %d: %w", f.Precedence, ErrInvalid)
	case f.Class > ClassFMUC:
		return nil, fmt.Errorf("brlink: class %d: %w", f.Class, ErrInvalid)
	case f.Segments == 0 || f.Segment >= f.Segments:
		return nil, fmt.Errorf("brlink: segment %d of %d: %w", f.Segment, f.Segments, ErrInvalid)
	}
	p := b[HeaderLen:]
	switch f.Type {
	case Ack:
		if len(p)%16 != 0 {
			return nil, fmt.Errorf("brlink: ACK of %d bytes: %w", len(p), ErrInvalid)
		}
		for i := 0; i < len(p); i += 16 {
			f.IDs = append(f.IDs, ID(p[i:i+16]))
		}
	case Nack:
		if len(p) != 1 {
			return nil, fmt.Errorf("brlink: NACK of %d bytes: %w", len(p), ErrInvalid)
		}
		f.Reason = p[0]
	default:
		f.Payload = p
	}
	return f, nil
}

// Split cuts a DATA payload into frames that each fit mtu bytes, marking
// the first and last; the template gives every other field.
func Split(tmpl Frame, payload []byte, mtu int) ([]Frame, error) {
	room := mtu - HeaderLen
	if room <= 0 {
		return nil, fmt.Errorf("brlink: MTU %d below the %d-byte header: %w", mtu, HeaderLen, ErrInvalid)
	}
	n := max(1, (len(payload)+room-1)/room)
	if n > 0xFFFF {
		return nil, fmt.Errorf("brlink: %d bytes need %d segments: %w", len(payload), n, ErrInvalid)
	}
	out := make([]Frame, n)
	for i := range n {
		f := tmpl
		f.Type, f.Segment, f.Segments = Data, uint16(i), uint16(n)
		f.Flags &^= FlagFirst | FlagLast
		if i == 0 {
			f.Flags |= FlagFirst
		}
		if i == n-1 {
			f.Flags |= FlagLast
		}
		f.Payload = payload[i*room : min(len(payload), (i+1)*room)]
		out[i] = f
	}
	return out, nil
}

// Reassembler collects DATA segments into whole payloads, keeping at most
// a bounded number of incomplete messages (and, with LimitBytes, of bytes).
type Reassembler struct {
	max      int
	maxBytes int // 0: no limit
	bytes    int
	pending  map[ID]*partial
	order    []ID
}

type partial struct {
	segs    [][]byte
	got     int
	size    int
	expires uint32
}

// NewReassembler keeps up to max incomplete messages; the oldest goes first.
func NewReassembler(max int) *Reassembler {
	return &Reassembler{max: max, pending: make(map[ID]*partial)}
}

// LimitBytes bounds the bytes held in incomplete messages: the oldest are
// dropped to make room, and a message alone larger than n is dropped.
func (r *Reassembler) LimitBytes(n int) { r.maxBytes = n }

// Add takes one DATA frame and returns the whole payload once every segment
// is in (a copy; single-segment payloads are returned as they are).
func (r *Reassembler) Add(f *Frame) ([]byte, bool) {
	if f.Segments == 1 {
		return f.Payload, true
	}
	p := r.pending[f.ID]
	if p != nil && len(p.segs) != int(f.Segments) {
		r.drop(f.ID)
		p = nil
	}
	if p == nil {
		if len(r.pending) >= r.max && len(r.order) > 0 {
			r.drop(r.order[0])
		}
		p = &partial{segs: make([][]byte, f.Segments), expires: f.Expires}
		r.pending[f.ID] = p
		r.order = append(r.order, f.ID)
	}
	if p.segs[f.Segment] == nil {
		if r.maxBytes > 0 {
			if p.size+len(f.Payload) > r.maxBytes {
				r.drop(f.ID)
				return nil, false
			}
			for r.bytes+len(f.Payload) > r.maxBytes && len(r.order) > 0 && r.order[0] != f.ID {
				r.drop(r.order[0])
			}
		}
		p.segs[f.Segment] = append([]byte{}, f.Payload...)
		p.got++
		p.size += len(f.Payload)
		r.bytes += len(f.Payload)
	}
	if p.got < len(p.segs) {
		return nil, false
	}
	r.drop(f.ID)
	out := make([]byte, 0, p.size)
	for _, s := range p.segs {
		out = append(out, s...)
	}
	return out, true
}

// drop forgets an incomplete message.
func (r *Reassembler) drop(id ID) {
	p := r.pending[id]
	if p == nil {
		return
	}
	r.bytes -= p.size
	delete(r.pending, id)
	for i, o := range r.order {
		if o == id {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
}

// Expire drops the incomplete messages whose expiry (Unix seconds) is
// before now and returns how many went; messages without one stay until
// pushed out by newer ones.
func (r *Reassembler) Expire(now time.Time) int {
	n := 0
	for _, id := range append([]ID(nil), r.order...) {
		if e := r.pending[id].expires; e != 0 && int64(e) < now.Unix() {
			r.drop(id)
			n++
		}
	}
	return n
}

// Pending is the number of incomplete messages held.
func (r *Reassembler) Pending() int { return len(r.pending) }

// Bytes is the number of payload bytes held in incomplete messages.
func (r *Reassembler) Bytes() int { return r.bytes }
