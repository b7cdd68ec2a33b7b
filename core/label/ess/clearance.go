package ess

import (
	"errors"
	"fmt"
	"slices"
)

// unclassified is the bit that ClassList's DEFAULT {unclassified} sets.
const unclassified = 1

// DecodeClearance decodes the BER or DER encoding of a Clearance:
//
//	Clearance ::= SEQUENCE {
//	  policyId            OBJECT IDENTIFIER,
//	  classList           ClassList DEFAULT {unclassified},
//	  securityCategories  SET OF SecurityCategory OPTIONAL }
//
// RFC 3281, which RFC 5755 replaced, tagged the three members implicitly
// [0], [1] and [2]; those tags are accepted too. An absent classList decodes
// as Classes == [1].
func DecodeClearance(b []byte) (Clearance, error) {
	var c Clearance
	if len(b) > MaxSize {
		return c, fmt.Errorf("ess: clearance exceeds %d bytes", MaxSize)
	}
	body, err := readOnly(b, tagSequence)
	if err != nil {
		return c, fmt.Errorf("ess: Clearance: %w", err)
	}
	tag, v, body, err := readTLV(body)
	if err != nil {
		return c, fmt.Errorf("ess: policyId: %w", err)
	}
	if tag != tagOID && tag != tagCtx0 {
		return c, fmt.Errorf("ess: policyId: tag 0x%02x, want OBJECT IDENTIFIER", tag)
	}
	if c.Policy, err = parseOID(v); err != nil {
		return c, fmt.Errorf("ess: policyId: %w", err)
	}
	c.Classes = []int{unclassified}
	if len(body) == 0 {
		return c, nil
	}
	if tag, v, body, err = readTLV(body); err != nil {
		return Clearance{}, fmt.Errorf("ess: Clearance: %w", err)
	}
	if tag == tagBitString || tag == tagCtx1 {
		if c.Classes, err = parseBits(v, MaxClass, MaxClass+1); err != nil {
			return Clearance{}, fmt.Errorf("ess: classList: %w", err)
		}
		if len(body) == 0 {
			return c, nil
		}
		if tag, v, body, err = readTLV(body); err != nil {
			return Clearance{}, fmt.Errorf("ess: Clearance: %w", err)
		}
	}
	if tag != tagSet && tag != tagCtx2C {
		return Clearance{}, fmt.Errorf("ess: Clearance: unexpected tag 0x%02x", tag)
	}
	if len(body) != 0 {
		return Clearance{}, fmt.Errorf("ess: Clearance: %w", errTrailing)
	}
	if c.Categories, err = decodeCategories(v); err != nil {
		return Clearance{}, fmt.Errorf("ess: securityCategories: %w", err)
	}
	return c, nil
}

// Marshal returns the DER encoding of c. Classes equal to the default
// {unclassified} are omitted, as DER requires; nil Classes encode an empty
// classList (cleared for no classification).
func (c Clearance) Marshal() ([]byte, error) {
	oid, err := appendOID(nil, c.Policy)
	if err != nil {
		return nil, fmt.Errorf("ess: policyId: %w", err)
	}
	body := appendTLV(nil, tagOID, oid)
	classes := slices.Clone(c.Classes)
	slices.Sort(classes)
	classes = slices.Compact(classes)
	if len(classes) > 0 && (classes[0] < 0 || classes[len(classes)-1] > MaxClass) {
		return nil, fmt.Errorf("ess: classList: classes must be 0..%d", MaxClass)
	}
	if !slices.Equal(classes, []int{unclassified}) {
		body = appendTLV(body, tagBitString, appendBits(nil, classes))
	}
	if len(c.Categories) > 0 {
		cats, err := encodeCategories(c.Categories)
		if err != nil {
			return nil, fmt.Errorf("ess: securityCategories: %w", err)
		}
		body = appendTLV(body, tagSet, cats)
	}
	out := appendTLV(nil, tagSequence, body)
	if len(out) > MaxSize {
		return nil, errors.New("ess: clearance encodes to more than MaxSize bytes")
	}
	return out, nil
}
