// Package sis speaks the STANAG 5066 Subnetwork Interface Sublayer over TCP:
// the primitive codec (PROTOCOLS.md §2.3.1–§2.3.5) and a client connection
// with the bind/unidata/flow/keep-alive state machine of §2.3.6.
package sis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Type is an S_Primitive type number (PROTOCOLS.md §2.3.2).
type Type uint8

// The S_Primitive types, numbered as NC3A and Wireshark number them.
const (
	BindRequest                     Type = 1
	UnbindRequest                   Type = 2
	BindAccepted                    Type = 3
	BindRejected                    Type = 4
	UnbindIndication                Type = 5
	HardLinkEstablish               Type = 6
	HardLinkTerminate               Type = 7
	HardLinkEstablished             Type = 8
	HardLinkRejected                Type = 9
	HardLinkTerminated              Type = 10
	HardLinkIndication              Type = 11
	HardLinkAccept                  Type = 12
	HardLinkReject                  Type = 13
	SubnetAvailability              Type = 14
	DataFlowOn                      Type = 15
	DataFlowOff                     Type = 16
	KeepAlive                       Type = 17
	ManagementMsgRequest            Type = 18
	ManagementMsgIndication         Type = 19
	UnidataRequest                  Type = 20
	UnidataIndication               Type = 21
	UnidataRequestConfirm           Type = 22
	UnidataRequestRejected          Type = 23
	ExpeditedUnidataRequest         Type = 24
	ExpeditedUnidataIndication      Type = 25
	ExpeditedUnidataRequestConfirm  Type = 26
	ExpeditedUnidataRequestRejected Type = 27
	maxType                         Type = 27
)

var typeNames = [...]string{
	"", "S_BIND_REQUEST", "S_UNBIND_REQUEST", "S_BIND_ACCEPTED", "S_BIND_REJECTED",
	"S_UNBIND_INDICATION", "S_HARD_LINK_ESTABLISH", "S_HARD_LINK_TERMINATE",
	"S_HARD_LINK_ESTABLISHED", "S_HARD_LINK_REJECTED", "S_HARD_LINK_TERMINATED",
	"S_HARD_LINK_INDICATION", "S_HARD_LINK_ACCEPT", "S_HARD_LINK_REJECT",
	"S_SUBNET_AVAILABILITY", "S_DATA_FLOW_ON", "S_DATA_FLOW_OFF", "S_KEEP_ALIVE",
	"S_MANAGEMENT_MSG_REQUEST", "S_MANAGEMENT_MSG_INDICATION", "S_UNIDATA_REQUEST",
	"S_UNIDATA_INDICATION", "S_UNIDATA_REQUEST_CONFIRM", "S_UNIDATA_REQUEST_REJECTED",
	"S_EXPEDITED_UNIDATA_REQUEST", "S_EXPEDITED_UNIDATA_INDICATION",
	"S_EXPEDITED_UNIDATA_REQUEST_CONFIRM", "S_EXPEDITED_UNIDATA_REQUEST_REJECTED",
}

func (t Type) String() string {
	if t >= 1 && t <= maxType {
		return typeNames[t]
	}
	return "S_UNKNOWN(" + strconv.Itoa(int(t)) + ")"
}

// Transmission modes (the high nibble of the delivery mode byte).
const (
	ModeDefault      = 0 // use the bind's service type (UNIDATA only)
	ModeARQ          = 1
	ModeNonARQ       = 2
	ModeNonARQErrors = 3 // non-ARQ, deliver with errors: indications carry error blocks
)

// Delivery confirmations (bits 3–2 of the delivery mode byte).
const (
	ConfirmNone   = 0
	ConfirmNode   = 1
	ConfirmClient = 2
)

// Reasons of S_UNIDATA_REQUEST_REJECTED (PROTOCOLS.md §2.3.4).
const (
	RejectUnknown       = 0
	RejectTTLExpired    = 1
	RejectSAPNotBound   = 2
	RejectNoResponse    = 3
	RejectTooLarge      = 4
	RejectModeUnset     = 5
	RejectWindowBlocked = 6
)

// Reasons of S_BIND_REJECTED.
const (
	BindRejectUnknown    = 0
	BindRejectResources  = 1
	BindRejectInvalidSAP = 2
	BindRejectSAPInUse   = 3
	BindRejectARQ        = 4
)

// Reasons of S_UNBIND_INDICATION.
const (
	UnbindUnknown    = 0
	UnbindPreempted  = 1
	UnbindInactivity = 2
	UnbindInvalid    = 3
	UnbindExpedited  = 4
	UnbindARQ        = 5
)

// Framing constants (PROTOCOLS.md §2.3.1).
const (
	preamble0  = 0x90
	preamble1  = 0xEB
	Version    = 0x00
	headerLen  = 5 // preamble, version, size
	DefaultMTU = 2048
	// MaxSize is the largest value of the framing size field.
	MaxSize = 65535
)

// Addr is a 28-bit STANAG 5066 node address, with the group flag.
type Addr struct {
	Node  uint32 // bits 27..0
	Group bool
}

// ParseAddr reads the text form a.b.c.d (a 0–15, b–d 0–255).
func ParseAddr(s string) (Addr, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Addr{}, fmt.Errorf("sis: address %q: want a.b.c.d", s)
	}
	var v uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || (i == 0 && n > 15) {
			return Addr{}, fmt.Errorf("sis: address %q: bad part %q", s, p)
		}
		v = v<<8 | uint32(n)
	}
	return Addr{Node: v}, nil
}

func (a Addr) String() string {
	n := a.Node & 0x0FFFFFFF
	return fmt.Sprintf("%d.%d.%d.%d", n>>24, n>>16&0xFF, n>>8&0xFF, n&0xFF)
}

// addrSizeBits is the address-size field sent (7, "0xE0"; ignored on receive).
const addrSizeBits = 7 << 5

func appendAddr(b []byte, a Addr) []byte {
	n := a.Node & 0x0FFFFFFF
	b0 := byte(addrSizeBits) | byte(n>>24)
	if a.Group {
		b0 |= 0x10
	}
	return append(b, b0, byte(n>>16), byte(n>>8), byte(n))
}

func readAddr(b []byte) Addr {
	return Addr{
		Node:  uint32(b[0]&0x0F)<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		Group: b[0]&0x10 != 0,
	}
}

// Service is a service type or delivery mode: transmission mode, delivery
// confirmation, order, and the minimum number of non-ARQ retransmissions.
type Service struct {
	Mode     uint8 // 0–15, Mode* constants
	Confirm  uint8 // 0–3, Confirm* constants
	AnyOrder bool  // deliver as they arrive rather than in order
	MinRetx  uint8 // 0–15
}

func (s Service) byte() byte {
	b := (s.Mode&0x0F)<<4 | (s.Confirm&0x03)<<2
	if s.AnyOrder {
		b |= 0x02
	}
	return b
}

func readService(b0, b1 byte) Service {
	return Service{Mode: b0 >> 4, Confirm: b0 >> 2 & 0x03, AnyOrder: b0&0x02 != 0, MinRetx: b1 >> 4}
}

// HardLink describes a hard link: type 0–3, priority 0–3 and remote SAP.
type HardLink struct {
	Type      uint8
	Priority  uint8
	RemoteSAP uint8
}

func (h HardLink) byte() byte {
	return (h.Type&0x03)<<6 | (h.Priority&0x03)<<4 | h.RemoteSAP&0x0F
}

func readHardLink(b byte) HardLink {
	return HardLink{Type: b >> 6, Priority: b >> 4 & 0x03, RemoteSAP: b & 0x0F}
}

// Block is an error or not-received block of an indication in mode 3: a
// range of the U_PDU.
type Block struct {
	Offset uint16
	Len    uint16
}

// Primitive is one decoded S_Primitive. Which fields mean something depends
// on Type; the rest are zero.
type Primitive struct {
	Type Type

	SAP      uint8    // BIND_REQUEST/ACCEPTED: own SAP; UNIDATA*: destination SAP
	Rank     uint8    // BIND_REQUEST
	Service  Service  // BIND_REQUEST service type; UNIDATA/EXPEDITED REQUEST delivery mode
	MTU      uint16   // BIND_ACCEPTED
	Reason   uint8    // rejections, terminations, unbind indication, subnet availability
	Status   uint8    // hard-link remote node status, subnet availability node status
	Link     HardLink // hard-link primitives
	Addr     Addr     // UNIDATA*: destination; hard-link primitives: remote node
	Priority uint8    // UNIDATA_REQUEST/INDICATION: 0–15
	TTL      uint32   // UNIDATA/EXPEDITED REQUEST: 20 bits, 0 = infinite
	TxMode   uint8    // INDICATIONs: transmission mode
	SrcSAP   uint8    // INDICATIONs
	Src      Addr     // INDICATIONs
	Errors   []Block  // INDICATIONs with TxMode 3
	NotRx    []Block  // INDICATIONs with TxMode 3
	MsgType  uint8    // MANAGEMENT_MSG_*
	Data     []byte   // U_PDU (or its first bytes in confirms), or management body
}

// Decoding errors.
var (
	ErrUnknownType = errors.New("sis: unknown primitive type")
	ErrLength      = errors.New("sis: wrong primitive length")
	ErrField       = errors.New("sis: bad field value")
)

// fixedSize is the framing size of each fixed-length primitive (0: variable).
var fixedSize = [...]int{
	BindRequest: 4, UnbindRequest: 1, BindAccepted: 4, BindRejected: 2,
	UnbindIndication: 2, HardLinkEstablish: 6, HardLinkTerminate: 5,
	HardLinkEstablished: 7, HardLinkRejected: 7, HardLinkTerminated: 7,
	HardLinkIndication: 7, HardLinkAccept: 6, HardLinkReject: 7,
	SubnetAvailability: 3, DataFlowOn: 1, DataFlowOff: 1, KeepAlive: 1,
	maxType: 0,
}

// Append encodes p as a complete frame (preamble, version, size, body) at
// the end of b. It fails on values that do not fit their fields.
func Append(b []byte, p *Primitive) ([]byte, error) {
	start := len(b)
	b = append(b, preamble0, preamble1, Version, 0, 0)
	b, err := appendBody(b, p)
	if err != nil {
		return b[:start], err
	}
	size := len(b) - start - headerLen
	if size > MaxSize {
		return b[:start], fmt.Errorf("sis: %v: %d bytes: %w", p.Type, size, ErrLength)
	}
	binary.BigEndian.PutUint16(b[start+3:], uint16(size))
	return b, nil
}

func check(t Type, ok bool, what string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("sis: %v: %s: %w", t, what, ErrField)
}

func appendBody(b []byte, p *Primitive) ([]byte, error) {
	t := p.Type
	if err := check(t, p.SAP < 16 && p.Rank < 16 && p.Priority < 16 && p.SrcSAP < 16 &&
		p.TxMode < 16 && p.Service.Mode < 16 && p.Service.Confirm < 4 && p.Service.MinRetx < 16 &&
		p.TTL < 1<<20 && p.Addr.Node < 1<<28 && p.Src.Node < 1<<28 &&
		p.Link.Type < 4 && p.Link.Priority < 4 && p.Link.RemoteSAP < 16, "field out of range"); err != nil {
		return b, err
	}
	b = append(b, byte(t))
	switch t {
	case BindRequest:
		b = append(b, p.SAP<<4|p.Rank, p.Service.byte(), p.Service.MinRetx<<4)
	case UnbindRequest, DataFlowOn, DataFlowOff, KeepAlive:
	case BindAccepted:
		b = append(b, p.SAP<<4)
		b = binary.BigEndian.AppendUint16(b, p.MTU)
	case BindRejected, UnbindIndication:
		b = append(b, p.Reason)
	case HardLinkEstablish, HardLinkAccept:
		b = append(b, p.Link.byte())
		b = appendAddr(b, p.Addr)
	case HardLinkTerminate:
		b = appendAddr(b, p.Addr)
	case HardLinkEstablished, HardLinkIndication:
		b = append(b, p.Status, p.Link.byte())
		b = appendAddr(b, p.Addr)
	case HardLinkRejected, HardLinkTerminated, HardLinkReject:
		b = append(b, p.Reason, p.Link.byte())
		b = appendAddr(b, p.Addr)
	case SubnetAvailability:
		b = append(b, p.Status, p.Reason)
	case ManagementMsgRequest, ManagementMsgIndication:
		b = append(b, p.MsgType)
		b = append(b, p.Data...)
	case UnidataRequest, ExpeditedUnidataRequest:
		prio := p.Priority
		if t == ExpeditedUnidataRequest {
			prio = 0
		}
		b = append(b, prio<<4|p.SAP)
		b = appendAddr(b, p.Addr)
		b = append(b, p.Service.byte(), p.Service.MinRetx<<4|byte(p.TTL>>16))
		b = binary.BigEndian.AppendUint16(b, uint16(p.TTL))
		if err := check(t, len(p.Data) <= MaxSize, "U_PDU too large"); err != nil {
			return b, err
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Data)))
		b = append(b, p.Data...)
	case UnidataIndication, ExpeditedUnidataIndication:
		prio := p.Priority
		if t == ExpeditedUnidataIndication {
			prio = 0
		}
		b = append(b, prio<<4|p.SAP)
		b = appendAddr(b, p.Addr)
		b = append(b, p.TxMode<<4|p.SrcSAP)
		b = appendAddr(b, p.Src)
		if err := check(t, len(p.Data) <= MaxSize && len(p.Errors) <= MaxSize && len(p.NotRx) <= MaxSize, "U_PDU too large"); err != nil {
			return b, err
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Data)))
		if p.TxMode == ModeNonARQErrors {
			for _, list := range [][]Block{p.Errors, p.NotRx} {
				b = binary.BigEndian.AppendUint16(b, uint16(len(list)))
				for _, e := range list {
					b = binary.BigEndian.AppendUint16(b, e.Offset)
					b = binary.BigEndian.AppendUint16(b, e.Len)
				}
			}
		} else if err := check(t, len(p.Errors) == 0 && len(p.NotRx) == 0, "error blocks need TxMode 3"); err != nil {
			return b, err
		}
		b = append(b, p.Data...)
	case UnidataRequestConfirm, UnidataRequestRejected,
		ExpeditedUnidataRequestConfirm, ExpeditedUnidataRequestRejected:
		r := p.Reason
		if t == UnidataRequestConfirm || t == ExpeditedUnidataRequestConfirm {
			r = 0
		}
		if err := check(t, r < 16 && len(p.Data) <= MaxSize, "reason or size"); err != nil {
			return b, err
		}
		b = append(b, r<<4|p.SAP)
		b = appendAddr(b, p.Addr)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Data)))
		b = append(b, p.Data...)
	default:
		return b, fmt.Errorf("sis: encode %v: %w", t, ErrUnknownType)
	}
	return b, nil
}

// Decode parses a primitive body: the bytes counted by the framing size
// field, starting with the type byte. Data aliases body.
func Decode(body []byte) (*Primitive, error) {
	if len(body) < 1 {
		return nil, fmt.Errorf("sis: empty primitive: %w", ErrLength)
	}
	t := Type(body[0])
	if t < 1 || t > maxType {
		return nil, fmt.Errorf("sis: type %d: %w", body[0], ErrUnknownType)
	}
	if n := fixedSize[t]; n != 0 && len(body) != n {
		return nil, fmt.Errorf("sis: %v: %d bytes, want %d: %w", t, len(body), n, ErrLength)
	}
	p := &Primitive{Type: t}
	b := body[1:]
	switch t {
	case BindRequest:
		p.SAP, p.Rank = b[0]>>4, b[0]&0x0F
		p.Service = readService(b[1], b[2])
	case UnbindRequest, DataFlowOn, DataFlowOff, KeepAlive:
	case BindAccepted:
		p.SAP = b[0] >> 4
		p.MTU = binary.BigEndian.Uint16(b[1:])
	case BindRejected, UnbindIndication:
		p.Reason = b[0]
	case HardLinkEstablish, HardLinkAccept:
		p.Link = readHardLink(b[0])
		p.Addr = readAddr(b[1:])
	case HardLinkTerminate:
		p.Addr = readAddr(b)
	case HardLinkEstablished, HardLinkIndication:
		p.Status, p.Link, p.Addr = b[0], readHardLink(b[1]), readAddr(b[2:])
	case HardLinkRejected, HardLinkTerminated, HardLinkReject:
		p.Reason, p.Link, p.Addr = b[0], readHardLink(b[1]), readAddr(b[2:])
	case SubnetAvailability:
		p.Status, p.Reason = b[0], b[1]
	case ManagementMsgRequest, ManagementMsgIndication:
		if len(b) < 1 {
			return nil, fmt.Errorf("sis: %v: no message type: %w", t, ErrLength)
		}
		p.MsgType, p.Data = b[0], b[1:]
	case UnidataRequest, ExpeditedUnidataRequest:
		if len(b) < 11 {
			return nil, fmt.Errorf("sis: %v: %d bytes: %w", t, len(body), ErrLength)
		}
		p.Priority, p.SAP = b[0]>>4, b[0]&0x0F
		if t == ExpeditedUnidataRequest {
			p.Priority = 0
		}
		p.Addr = readAddr(b[1:])
		p.Service = readService(b[5], b[6])
		p.TTL = uint32(b[6]&0x0F)<<16 | uint32(binary.BigEndian.Uint16(b[7:]))
		n := int(binary.BigEndian.Uint16(b[9:]))
		if len(b)-11 != n {
			return nil, fmt.Errorf("sis: %v: U_PDU size %d, %d bytes follow: %w", t, n, len(b)-11, ErrLength)
		}
		p.Data = b[11:]
	case UnidataIndication, ExpeditedUnidataIndication:
		if len(b) < 12 {
			return nil, fmt.Errorf("sis: %v: %d bytes: %w", t, len(body), ErrLength)
		}
		p.Priority, p.SAP = b[0]>>4, b[0]&0x0F
		if t == ExpeditedUnidataIndication {
			p.Priority = 0
		}
		p.Addr = readAddr(b[1:])
		p.TxMode, p.SrcSAP = b[5]>>4, b[5]&0x0F
		p.Src = readAddr(b[6:])
		n := int(binary.BigEndian.Uint16(b[10:]))
		rest := b[12:]
		if p.TxMode == ModeNonARQErrors {
			var err error
			if p.Errors, rest, err = readBlocks(t, rest, n); err != nil {
				return nil, err
			}
			if p.NotRx, rest, err = readBlocks(t, rest, n); err != nil {
				return nil, err
			}
		}
		switch len(rest) {
		case n:
		case n + 4: // Rockwell stacks ≤ v2.1 insert 4 zero bytes [U placement].
			rest = rest[4:]
		default:
			return nil, fmt.Errorf("sis: %v: U_PDU size %d, %d bytes follow: %w", t, n, len(rest), ErrLength)
		}
		p.Data = rest
	case UnidataRequestConfirm, UnidataRequestRejected,
		ExpeditedUnidataRequestConfirm, ExpeditedUnidataRequestRejected:
		if len(b) < 7 {
			return nil, fmt.Errorf("sis: %v: %d bytes: %w", t, len(body), ErrLength)
		}
		p.Reason, p.SAP = b[0]>>4, b[0]&0x0F
		if t == UnidataRequestConfirm || t == ExpeditedUnidataRequestConfirm {
			p.Reason = 0
		}
		p.Addr = readAddr(b[1:])
		n := int(binary.BigEndian.Uint16(b[5:]))
		if len(b)-7 != n {
			return nil, fmt.Errorf("sis: %v: U_PDU size %d, %d bytes follow: %w", t, n, len(b)-7, ErrLength)
		}
		p.Data = b[7:]
	}
	return p, nil
}

// readBlocks reads a count and that many (offset, length) pairs, each
// within a U_PDU of n bytes.
func readBlocks(t Type, b []byte, n int) ([]Block, []byte, error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("sis: %v: error block count: %w", t, ErrLength)
	}
	c := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 4*c {
		return nil, nil, fmt.Errorf("sis: %v: %d error blocks: %w", t, c, ErrLength)
	}
	var out []Block
	for i := range c {
		e := Block{binary.BigEndian.Uint16(b[4*i:]), binary.BigEndian.Uint16(b[4*i+2:])}
		if int(e.Offset)+int(e.Len) > n {
			return nil, nil, fmt.Errorf("sis: %v: error block outside the U_PDU: %w", t, ErrField)
		}
		out = append(out, e)
	}
	return out, b[4*c:], nil
}
