package brlink

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

var id1 = ID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

func TestVector(t *testing.T) {
	f := Frame{Type: Data, Flags: FlagFirst | FlagLast | FlagAckReq, Precedence: Flash, Class: ClassXMPP,
		ID: id1, Segments: 1, Expires: 0x6553F100, Payload: []byte("<m/>")}
	got, err := Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	want := "b101d401" + "000102030405060708090a0b0c0d0e0f" + "0000" + "0001" + "6553f100" + hex.EncodeToString([]byte("<m/>"))
	if hex.EncodeToString(got) != want {
		t.Fatalf("got  %x\nwant %s", got, want)
	}
	d, err := Decode(got)
	if err != nil || !reflect.DeepEqual(*d, f) {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestRoundTrip(t *testing.T) {
	id2 := ID{15: 0xFF}
	for _, f := range []Frame{
		{Type: Ack, Segments: 1, IDs: []ID{id1, id2}},
		{Type: Nack, Segments: 1, ID: id1, Reason: 2},
		{Type: Hello, Segments: 1, Payload: []byte("ship.example 1")},
		{Type: HelloAck, Segments: 1, Payload: []byte("shore.example 1")},
		{Type: Data, Flags: FlagDeflate | FlagBroadcast, Precedence: Override, Class: ClassFMUC, ID: id2, Segment: 2, Segments: 3, Payload: []byte("x")},
	} {
		b, err := Append(nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Payload) == 0 {
			d.Payload = f.Payload
		}
		if !reflect.DeepEqual(*d, f) {
			t.Fatalf("\n got %+v\nwant %+v", *d, f)
		}
	}
}

func TestInvalid(t *testing.T) {
	good, _ := Append(nil, &Frame{Type: Data, Segments: 1})
	mut := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for name, c := range map[string]struct {
		b   []byte
		err error
	}{
		"short":      {good[:27], ErrShort},
		"magic":      {mut(0, 0xB2), ErrMagic},
		"type":       {mut(1, 9), ErrInvalid},
		"precedence": {mut(2, 6), ErrInvalid},
		"class":      {mut(3, 4), ErrInvalid},
		"segments 0": {mut(23, 0), ErrInvalid},
		"segment ≥":  {mut(21, 1), ErrInvalid},
		"ack odd":    {append(mut(1, byte(Ack)), 1, 2, 3), ErrInvalid},
		"nack empty": {mut(1, byte(Nack)), ErrInvalid},
	} {
		if _, err := Decode(c.b); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
	}
	if _, err := Append(nil, &Frame{Type: Data}); err == nil {
		t.Error("zero segments encoded")
	}
}

// A 10 KiB stanza crosses a 2048-byte MTU and is reassembled byte-exactly,
// whatever the order of arrival and with duplicates (PROTOCOLS.md §4.5).
func TestSegmentation(t *testing.T) {
	payload := []byte(strings.Repeat("<message>0123456789</message>", 360))[:10240]
	frames, err := Split(Frame{Precedence: Routine, Class: ClassXMPP, ID: id1, Segments: 1}, payload, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 6 || frames[0].Flags&FlagFirst == 0 || frames[5].Flags&FlagLast == 0 || frames[1].Flags&(FlagFirst|FlagLast) != 0 {
		t.Fatalf("%d frames, flags %x %x", len(frames), frames[0].Flags, frames[5].Flags)
	}
	var wire [][]byte
	for i := range frames {
		b, err := Append(nil, &frames[i])
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 2048 {
			t.Fatalf("frame %d: %d bytes", i, len(b))
		}
		wire = append(wire, b)
	}
	wire = append(wire, wire[2]) // a duplicate
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(wire), func(i, j int) { wire[i], wire[j] = wire[j], wire[i] })
	r := NewReassembler(8)
	var got []byte
	done := 0
	for _, b := range wire {
		f, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := r.Add(f); ok {
			got, done = p, done+1
		}
	}
	if done != 1 || !bytes.Equal(got, payload) || r.Pending() != 1 && r.Pending() != 0 {
		t.Fatalf("done %d, equal %v, pending %d", done, bytes.Equal(got, payload), r.Pending())
	}
}

func TestReassemblerBounded(t *testing.T) {
	r := NewReassembler(3)
	for i := range 10 {
		r.Add(&Frame{Type: Data, ID: ID{byte(i)}, Segment: 0, Segments: 2, Payload: []byte("a")})
	}
	if r.Pending() != 3 {
		t.Fatalf("pending %d", r.Pending())
	}
}

func TestPrecedence(t *testing.T) {
	for p := Deferred; p <= Override; p++ {
		q, ok := ParsePrecedence(strings.ToUpper(p.String()))
		if !ok || q != p {
			t.Fatalf("%v → %v", p, q)
		}
	}
	if Flash.SISPriority() != 13 || Routine.SISPriority() != 7 || Override.SISPriority() != 15 {
		t.Fatal("SIS priority mapping")
	}
	if _, ok := ParsePrecedence("urgent"); ok {
		t.Fatal("urgent parsed")
	}
}

// FuzzDecode: no input panics Decode, and what decodes re-encodes to the
// same bytes.
func FuzzDecode(f *testing.F) {
	b, _ := Append(nil, &Frame{Type: Data, Flags: FlagFirst, Class: ClassXMPP, ID: id1, Segments: 1, Payload: []byte("<m/>")})
	f.Add(b)
	b, _ = Append(nil, &Frame{Type: Ack, Segments: 1, IDs: []ID{id1}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := Decode(in)
		if err != nil {
			return
		}
		out, err := Append(nil, fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("round trip:\n%x\n%x", in, out)
		}
	})
}
