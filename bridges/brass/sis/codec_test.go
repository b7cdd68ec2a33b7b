package sis

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var node12 = Addr{Node: 0x000102}
var node11 = Addr{Node: 0x000101}

// The vectors of PROTOCOLS.md §2.3.5, byte for byte.
var vectors = []struct {
	name string
	p    Primitive
	hex  string
}{
	{"bind node-confirm", Primitive{Type: BindRequest, SAP: 6, Service: Service{Mode: ModeARQ, Confirm: ConfirmNode}}, "90 EB 00 00 04 01 60 14 00"},
	{"bind client-confirm", Primitive{Type: BindRequest, SAP: 6, Service: Service{Mode: ModeARQ, Confirm: ConfirmClient}}, "90 EB 00 00 04 01 60 18 00"},
	{"bind accepted", Primitive{Type: BindAccepted, SAP: 6, MTU: 2048}, "90 EB 00 00 04 03 60 08 00"},
	{"bind rejected", Primitive{Type: BindRejected, Reason: 3}, "90 EB 00 00 02 04 03"},
	{"unbind", Primitive{Type: UnbindRequest}, "90 EB 00 00 01 02"},
	{"keep-alive", Primitive{Type: KeepAlive}, "90 EB 00 00 01 11"},
	{"flow off", Primitive{Type: DataFlowOff}, "90 EB 00 00 01 10"},
	{"flow on", Primitive{Type: DataFlowOn}, "90 EB 00 00 01 0F"},
	{"unidata default", Primitive{Type: UnidataRequest, Priority: 5, SAP: 6, Addr: node12, Data: []byte("hi")},
		"90 EB 00 00 0E 14 56 E0 00 01 02 00 00 00 00 00 02 68 69"},
	{"unidata arq ttl", Primitive{Type: UnidataRequest, Priority: 15, SAP: 6, Addr: node12, Service: Service{Mode: ModeARQ, Confirm: ConfirmNode}, TTL: 0x12345, Data: []byte("hi")},
		"90 EB 00 00 0E 14 F6 E0 00 01 02 14 01 23 45 00 02 68 69"},
	{"unidata indication", Primitive{Type: UnidataIndication, Priority: 5, SAP: 6, Addr: node12, TxMode: ModeARQ, SrcSAP: 6, Src: node11, Data: []byte("hi")},
		"90 EB 00 00 0F 15 56 E0 00 01 02 16 E0 00 01 01 00 02 68 69"},
	{"confirm", Primitive{Type: UnidataRequestConfirm, SAP: 6, Addr: node12, Data: []byte("hi")}, "90 EB 00 00 0A 16 06 E0 00 01 02 00 02 68 69"},
	{"rejected ttl", Primitive{Type: UnidataRequestRejected, Reason: RejectTTLExpired, SAP: 6, Addr: node12, Data: []byte("hi")}, "90 EB 00 00 0A 17 16 E0 00 01 02 00 02 68 69"},
	{"hard link establish", Primitive{Type: HardLinkEstablish, Link: HardLink{Priority: 3}, Addr: node12}, "90 EB 00 00 06 06 30 E0 00 01 02"},
	{"subnet on", Primitive{Type: SubnetAvailability, Status: 1}, "90 EB 00 00 03 0E 01 00"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			want := unhex(t, v.hex)
			got, err := Append(nil, &v.p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encode:\n got % X\nwant % X", got, want)
			}
			p, err := NewReader(bytes.NewReader(want), 0).Read()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(norm(*p), norm(v.p)) {
				t.Fatalf("decode:\n got %+v\nwant %+v", *p, v.p)
			}
		})
	}
}

// norm makes empty and nil slices compare equal.
func norm(p Primitive) Primitive {
	if len(p.Data) == 0 {
		p.Data = nil
	}
	return p
}

// Every primitive type round-trips with non-zero fields.
func TestRoundTripAll(t *testing.T) {
	a := Addr{Node: 0x0ABCDEF, Group: true}
	hl := HardLink{Type: 2, Priority: 1, RemoteSAP: 9}
	svc := Service{Mode: ModeARQ, Confirm: ConfirmClient, AnyOrder: true, MinRetx: 3}
	ps := []Primitive{
		{Type: BindRequest, SAP: 13, Rank: 2, Service: svc},
		{Type: UnbindRequest},
		{Type: BindAccepted, SAP: 13, MTU: 4096},
		{Type: BindRejected, Reason: 2},
		{Type: UnbindIndication, Reason: 4},
		{Type: HardLinkEstablish, Link: hl, Addr: a},
		{Type: HardLinkTerminate, Addr: a},
		{Type: HardLinkEstablished, Status: 1, Link: hl, Addr: a},
		{Type: HardLinkRejected, Reason: 3, Link: hl, Addr: a},
		{Type: HardLinkTerminated, Reason: 5, Link: hl, Addr: a},
		{Type: HardLinkIndication, Status: 1, Link: hl, Addr: a},
		{Type: HardLinkAccept, Link: hl, Addr: a},
		{Type: HardLinkReject, Reason: 1, Link: hl, Addr: a},
		{Type: SubnetAvailability, Status: 2, Reason: 1},
		{Type: DataFlowOn}, {Type: DataFlowOff}, {Type: KeepAlive},
		{Type: ManagementMsgRequest, MsgType: 7, Data: []byte{1, 2, 3}},
		{Type: ManagementMsgIndication, MsgType: 8},
		{Type: UnidataRequest, Priority: 9, SAP: 13, Addr: a, Service: svc, TTL: 0xFFFFF, Data: bytes.Repeat([]byte{0xAA}, 2048)},
		{Type: UnidataIndication, Priority: 9, SAP: 13, Addr: a, TxMode: ModeNonARQErrors, SrcSAP: 4, Src: node11,
			Errors: []Block{{0, 2}, {5, 1}}, NotRx: []Block{{3, 1}}, Data: []byte("abcdef")},
		{Type: UnidataRequestConfirm, SAP: 13, Addr: a, Data: []byte("id")},
		{Type: UnidataRequestRejected, Reason: RejectTooLarge, SAP: 13, Addr: a},
		{Type: ExpeditedUnidataRequest, SAP: 13, Addr: a, Service: svc, TTL: 7, Data: []byte("x")},
		{Type: ExpeditedUnidataIndication, SAP: 13, Addr: a, TxMode: ModeARQ, SrcSAP: 4, Src: node11, Data: []byte("y")},
		{Type: ExpeditedUnidataRequestConfirm, SAP: 13, Addr: a, Data: []byte("z")},
		{Type: ExpeditedUnidataRequestRejected, Reason: RejectNoResponse, SAP: 13, Addr: a, Data: []byte("z")},
	}
	seen := map[Type]bool{}
	var stream []byte
	for i := range ps {
		var err error
		if stream, err = Append(stream, &ps[i]); err != nil {
			t.Fatalf("%v: %v", ps[i].Type, err)
		}
		seen[ps[i].Type] = true
	}
	if len(seen) != int(maxType) {
		t.Fatalf("covered %d types of %d", len(seen), maxType)
	}
	// One byte at a time: sizes are honoured across segment boundaries.
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
	for i := range ps {
		p, err := r.Read()
		if err != nil {
			t.Fatalf("%v: %v", ps[i].Type, err)
		}
		if !reflect.DeepEqual(norm(*p), norm(ps[i])) {
			t.Fatalf("%v:\n got %+v\nwant %+v", ps[i].Type, *p, ps[i])
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

func TestResync(t *testing.T) {
	var in []byte
	in = append(in, 0x00, 0x90, 0x90, 0xEB, 0x01, 0xFF, 0x90) // junk, a wrong version
	in = append(in, unhex(t, "90 EB 00 00 01 11")...)
	in = append(in, 0x13, 0x37)
	in = append(in, unhex(t, "90 EB 00 00 02 04 03")...)
	r := NewReader(bytes.NewReader(in), 0)
	p, err := r.Read()
	if err != nil || p.Type != KeepAlive {
		t.Fatalf("first: %v %v", p, err)
	}
	p, err = r.Read()
	if err != nil || p.Type != BindRejected || p.Reason != 3 {
		t.Fatalf("second: %v %v", p, err)
	}
	if r.Skipped() != 9 {
		t.Fatalf("skipped %d bytes, want 9", r.Skipped())
	}
}

func TestInvalid(t *testing.T) {
	cases := map[string]string{
		"unknown type":        "90 EB 00 00 01 1C",
		"type zero":           "90 EB 00 00 01 00",
		"keep-alive too long": "90 EB 00 00 02 11 00",
		"bind too short":      "90 EB 00 00 03 01 60 14",
		"unidata size lies":   "90 EB 00 00 0E 14 56 E0 00 01 02 00 00 00 00 00 03 68 69",
		"unidata truncated":   "90 EB 00 00 05 14 56 E0 00 01",
		"confirm size lies":   "90 EB 00 00 0A 16 06 E0 00 01 02 00 01 68 69",
		"error block outside": "90 EB 00 00 17 15 56 E0 00 01 02 36 E0 00 01 01 00 02 00 01 00 01 00 02 00 00 68 69",
		"management empty":    "90 EB 00 00 01 12",
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			// Followed by a valid frame: the reader stays in step.
			in := append(unhex(t, h), unhex(t, "90 EB 00 00 01 11")...)
			r := NewReader(bytes.NewReader(in), 0)
			_, err := r.Read()
			if !IsInvalid(err) {
				t.Fatalf("err = %v, want invalid", err)
			}
			p, err := r.Read()
			if err != nil || p.Type != KeepAlive {
				t.Fatalf("after: %v %v", p, err)
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	big, _ := Append(nil, &Primitive{Type: UnidataRequest, Data: make([]byte, 3000)})
	in := append(big, unhex(t, "90 EB 00 00 01 11")...)
	r := NewReader(bytes.NewReader(in), 2048+12)
	if _, err := r.Read(); !errors.Is(err, ErrLength) {
		t.Fatalf("err = %v", err)
	}
	if p, err := r.Read(); err != nil || p.Type != KeepAlive {
		t.Fatalf("after: %v %v", p, err)
	}
	if _, err := Append(nil, &Primitive{Type: UnidataRequest, Data: make([]byte, 70000)}); err == nil {
		t.Fatal("a 70000-byte U_PDU encoded")
	}
	if _, err := Append(nil, &Primitive{Type: BindRequest, SAP: 16}); err == nil {
		t.Fatal("SAP 16 encoded")
	}
	if _, err := Append(nil, &Primitive{Type: 99}); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("type 99: %v", err)
	}
}

func TestTruncatedStream(t *testing.T) {
	r := NewReader(bytes.NewReader(unhex(t, "90 EB 00 00 0E 14 56")), 0)
	if _, err := r.Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
}

func TestRockwellOffset(t *testing.T) {
	// An indication with 4 extra zero bytes before the U_PDU.
	p, err := NewReader(bytes.NewReader(unhex(t, "90 EB 00 00 13 15 56 E0 00 01 02 16 E0 00 01 01 00 02 00 00 00 00 68 69")), 0).Read()
	if err != nil || string(p.Data) != "hi" {
		t.Fatalf("%v %v", p, err)
	}
}

func TestAddr(t *testing.T) {
	a, err := ParseAddr("1.2.3.4")
	if err != nil || a.Node != 0x01020304 || a.String() != "1.2.3.4" {
		t.Fatalf("%v %v", a, err)
	}
	for _, bad := range []string{"16.0.0.1", "1.2.3", "a.b.c.d", "1.2.3.256", ""} {
		if _, err := ParseAddr(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzDecode: no input panics the reader, and whatever decodes re-encodes
// to bytes that decode to the same primitive.
func FuzzDecode(f *testing.F) {
	for _, v := range vectors {
		f.Add(unhex(f, v.hex))
	}
	f.Add(unhex(f, "90 EB 00 00 17 15 56 E0 00 01 02 36 E0 00 01 01 00 02 00 01 00 00 00 01 00 01 00 01 68 69"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 0)
		for range 64 {
			p, err := r.Read()
			if err != nil {
				if IsInvalid(err) {
					continue
				}
				return
			}
			enc, err := Append(nil, p)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", p, err)
			}
			q, err := NewReader(bytes.NewReader(enc), 0).Read()
			if err != nil {
				t.Fatalf("decode re-encoded % X: %v", enc, err)
			}
			if !reflect.DeepEqual(norm(*p), norm(*q)) {
				t.Fatalf("round trip:\n %+v\n %+v", *p, *q)
			}
		}
	})
}
