package ess

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The reader below accepts the BER that real label encoders produce, which is
// a little wider than DER: members of a SET in any order, long-form lengths
// that are not minimal, and non-zero padding bits in a BIT STRING. It rejects
// indefinite lengths, constructed string encodings and high tag numbers: no
// encoder of these types is known to use them and refusing them keeps the
// reader a flat, non-recursive loop whose nesting is fixed by the schema.

// Universal and context tags used by the schemas, as whole identifier octets.
const (
	tagInteger   = 0x02
	tagBitString = 0x03
	tagOID       = 0x06
	tagUTF8      = 0x0c
	tagPrintable = 0x13
	tagSequence  = 0x30
	tagSet       = 0x31
	tagCtx0      = 0x80 // [0] primitive
	tagCtx1      = 0x81 // [1] primitive
	tagCtx0C     = 0xa0 // [0] constructed
	tagCtx1C     = 0xa1 // [1] constructed
	tagCtx2C     = 0xa2 // [2] constructed
)

var (
	errTruncated  = errors.New("truncated element")
	errIndefinite = errors.New("indefinite length not supported")
	errHighTag    = errors.New("high tag number not supported")
	errTrailing   = errors.New("trailing data")
)

// readTLV splits the first element off b, returning its identifier octet, its
// contents and what follows it.
func readTLV(b []byte) (tag byte, body, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errTruncated
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errHighTag
	}
	n := int(b[1])
	b = b[2:]
	switch {
	case n == 0x80:
		return 0, nil, nil, errIndefinite
	case n == 0xff:
		return 0, nil, nil, errors.New("reserved length octet")
	case n > 0x80:
		k := n & 0x7f
		if k > len(b) {
			return 0, nil, nil, errTruncated
		}
		n = 0
		for _, c := range b[:k] {
			// Any length beyond the input is an error, so stop before overflow.
			if n > MaxSize {
				return 0, nil, nil, errTruncated
			}
			n = n<<8 | int(c)
		}
		b = b[k:]
	}
	if n > len(b) {
		return 0, nil, nil, errTruncated
	}
	return tag, b[:n], b[n:], nil
}

// readOnly reads exactly one element with the given tag from b.
func readOnly(b []byte, want byte) ([]byte, error) {
	tag, body, rest, err := readTLV(b)
	if err != nil {
		return nil, err
	}
	if tag != want {
		return nil, fmt.Errorf("tag 0x%02x, want 0x%02x", tag, want)
	}
	if len(rest) != 0 {
		return nil, errTrailing
	}
	return body, nil
}

// appendTLV appends a DER element with a minimal length.
func appendTLV(dst []byte, tag byte, body []byte) []byte {
	dst = append(dst, tag)
	switch n := len(body); {
	case n < 0x80:
		dst = append(dst, byte(n))
	case n < 0x100:
		dst = append(dst, 0x81, byte(n))
	case n < 0x10000:
		dst = append(dst, 0x82, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, body...)
}

// parseInt decodes a non-negative INTEGER no greater than max.
func parseInt(b []byte, max int) (int, error) {
	if len(b) == 0 {
		return 0, errors.New("empty INTEGER")
	}
	// X.690 8.3.2 forbids redundant leading octets in BER as well as DER.
	if len(b) > 1 && (b[0] == 0 && b[1]&0x80 == 0 || b[0] == 0xff && b[1]&0x80 != 0) {
		return 0, errors.New("INTEGER not minimally encoded")
	}
	if b[0]&0x80 != 0 {
		return 0, errors.New("negative INTEGER")
	}
	n := 0
	for _, c := range b {
		if n > max>>8 {
			return 0, fmt.Errorf("INTEGER exceeds %d", max)
		}
		n = n<<8 | int(c)
	}
	if n > max {
		return 0, fmt.Errorf("INTEGER %d exceeds %d", n, max)
	}
	return n, nil
}

// appendInt appends the contents octets of a non-negative INTEGER.
func appendInt(dst []byte, n int) []byte {
	var buf [9]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte(n)
		n >>= 8
		if n == 0 {
			break
		}
	}
	if buf[i]&0x80 != 0 {
		i--
		buf[i] = 0
	}
	return append(dst, buf[i:]...)
}

// parseBits returns the positions of the set bits of a BIT STRING. Bits
// beyond max or more than maxCount set bits are errors.
func parseBits(b []byte, max, maxCount int) ([]int, error) {
	if len(b) == 0 {
		return nil, errors.New("empty BIT STRING")
	}
	unused := int(b[0])
	if unused > 7 || len(b) == 1 && unused != 0 {
		return nil, errors.New("bad BIT STRING padding")
	}
	size := (len(b)-1)*8 - unused
	var out []int
	for i := 0; i < size; i++ {
		if b[1+i/8] == 0 {
			i |= 7 // skip the rest of an empty octet
			continue
		}
		if b[1+i/8]&(0x80>>(i%8)) == 0 {
			continue
		}
		if i > max {
			return nil, fmt.Errorf("bit %d exceeds %d", i, max)
		}
		if len(out) == maxCount {
			return nil, fmt.Errorf("more than %d bits set", maxCount)
		}
		out = append(out, i)
	}
	return out, nil
}

// appendBits appends the DER contents of a BIT STRING with the given sorted
// bit positions set. Trailing zero bits are dropped, as DER requires for a
// named bit list and as is harmless for a plain one.
func appendBits(dst []byte, bits []int) []byte {
	if len(bits) == 0 {
		return append(dst, 0)
	}
	last := bits[len(bits)-1]
	n := last/8 + 1
	dst = append(dst, byte(7-last%8))
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	for _, i := range bits {
		dst[start+i/8] |= 0x80 >> (i % 8)
	}
	return dst
}

// parseOID converts the contents of an OBJECT IDENTIFIER to dotted form.
func parseOID(b []byte) (string, error) {
	if len(b) == 0 {
		return "", errors.New("empty OBJECT IDENTIFIER")
	}
	var sb strings.Builder
	first := true
	for len(b) > 0 {
		// X.690 8.19.2: a subidentifier never starts with 0x80.
		if b[0] == 0x80 {
			return "", errors.New("OBJECT IDENTIFIER not minimally encoded")
		}
		var v uint64
		for {
			if len(b) == 0 {
				return "", errors.New("truncated OBJECT IDENTIFIER")
			}
			if v > (1<<64-1)>>7 {
				return "", errors.New("OBJECT IDENTIFIER arc exceeds 64 bits")
			}
			c := b[0]
			b = b[1:]
			v = v<<7 | uint64(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		if first {
			first = false
			switch {
			case v < 40:
				sb.WriteString("0.")
			case v < 80:
				sb.WriteString("1.")
				v -= 40
			default:
				sb.WriteString("2.")
				v -= 80
			}
		} else {
			sb.WriteByte('.')
		}
		sb.WriteString(strconv.FormatUint(v, 10))
	}
	return sb.String(), nil
}

// appendOID appends the contents octets of the dotted OID s.
func appendOID(dst []byte, s string) ([]byte, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("OID %q has fewer than two arcs", s)
	}
	arcs := make([]uint64, len(parts))
	for i, p := range parts {
		// ParseUint accepts "+1" and leading zeros; dotted OIDs have neither.
		if p == "" || p[0] < '0' || p[0] > '9' || len(p) > 1 && p[0] == '0' {
			return nil, fmt.Errorf("bad OID %q", s)
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad OID %q", s)
		}
		arcs[i] = v
	}
	switch {
	case arcs[0] > 2, arcs[0] < 2 && arcs[1] >= 40, arcs[1] > 1<<64-1-80:
		return nil, fmt.Errorf("bad OID %q", s)
	}
	dst = appendBase128(dst, arcs[0]*40+arcs[1])
	for _, v := range arcs[2:] {
		dst = appendBase128(dst, v)
	}
	return dst, nil
}

func appendBase128(dst []byte, v uint64) []byte {
	var buf [10]byte
	i := len(buf) - 1
	buf[i] = byte(v & 0x7f)
	for v >>= 7; v > 0; v >>= 7 {
		i--
		buf[i] = byte(v&0x7f) | 0x80
	}
	return append(dst, buf[i:]...)
}

// validOID reports whether s is a dotted OID this package can encode.
func validOID(s string) bool {
	_, err := appendOID(nil, s)
	return err == nil
}
