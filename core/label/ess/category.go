package ess

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// SecurityCategory tagging. RFC 2634's module and ACP 145(A) (as copied in
// SPIFFING's acp145.asn) are both DEFINITIONS IMPLICIT TAGS, so
//
//	SecurityCategory ::= SEQUENCE { type [0] OBJECT IDENTIFIER, value [1] ANY DEFINED BY type }
//
// encodes type as an implicit OID (0x80) and value as an explicit [1]
// (0xa1) around the value's own encoding, because X.680 makes the tagging of
// an open type (ANY) explicit whatever the module default. RFC 5912 spells
// this out as "[0] IMPLICIT" and "[1] EXPLICIT"; Wireshark, pyasn1-modules
// and asn1c-based SPIFFING agree. We emit exactly that and also accept:
//   - a constructed [0] wrapping a universal OID (an EXPLICIT TAGS reading);
//   - a primitive [1] holding the value's encoding (RFC 2634 prints the
//     alternative syntax "value [1] OCTET STRING", which under implicit
//     tagging gives 0x81 with the same contents);
//   - for the five known types, an implicitly tagged [1] whose contents are
//     the SEQUENCE's members (some schema libraries tag ANY implicitly).
//     This cannot be mistaken for the explicit form: there the contents start
//     with a SEQUENCE tag, here with the tagName OID.

// known reports whether typ is one of the five ACP 145 category syntaxes.
func known(typ string) bool {
	switch typ {
	case TypeRestrictive, TypeEnumeratedPermissive, TypePermissive, TypeInformative, TypeEnumeratedRestrictive:
		return true
	}
	return false
}

// decodeCategories decodes the contents of a SET OF SecurityCategory and
// returns the categories in DER order.
func decodeCategories(b []byte) ([]Category, error) {
	if len(b) == 0 {
		return nil, errors.New("empty SET")
	}
	type entry struct {
		der []byte
		c   Category
	}
	var all []entry
	for i := 0; len(b) > 0; i++ {
		if i == MaxCategories {
			return nil, fmt.Errorf("more than %d categories", MaxCategories)
		}
		tag, body, rest, err := readTLV(b)
		if err != nil {
			return nil, fmt.Errorf("category %d: %w", i, err)
		}
		if tag != tagSequence {
			return nil, fmt.Errorf("category %d: tag 0x%02x, want SEQUENCE", i, tag)
		}
		c, err := decodeCategory(body)
		if err != nil {
			return nil, fmt.Errorf("category %d: %w", i, err)
		}
		der, err := c.marshal(nil)
		if err != nil {
			return nil, fmt.Errorf("category %d: %w", i, err)
		}
		all = append(all, entry{der, c})
		b = rest
	}
	sort.SliceStable(all, func(i, j int) bool { return bytes.Compare(all[i].der, all[j].der) < 0 })
	out := make([]Category, len(all))
	for i, e := range all {
		out[i] = e.c
	}
	return out, nil
}

// encodeCategories returns the DER contents of a SET OF SecurityCategory.
func encodeCategories(cats []Category) ([]byte, error) {
	if len(cats) > MaxCategories {
		return nil, fmt.Errorf("more than %d categories", MaxCategories)
	}
	ders := make([][]byte, len(cats))
	for i, c := range cats {
		der, err := c.marshal(nil)
		if err != nil {
			return nil, fmt.Errorf("category %d: %w", i, err)
		}
		ders[i] = der
	}
	// X.690 11.6: a DER SET OF is ordered by the members' encodings.
	slices.SortFunc(ders, bytes.Compare)
	return bytes.Join(ders, nil), nil
}

// decodeCategory decodes the contents of one SecurityCategory SEQUENCE.
func decodeCategory(b []byte) (Category, error) {
	var c Category
	tag, typ, rest, err := readTLV(b)
	if err != nil {
		return c, fmt.Errorf("type: %w", err)
	}
	switch tag {
	case tagCtx0:
	case tagCtx0C:
		if typ, err = readOnly(typ, tagOID); err != nil {
			return c, fmt.Errorf("type: %w", err)
		}
	default:
		return c, fmt.Errorf("type: tag 0x%02x, want [0]", tag)
	}
	if c.Type, err = parseOID(typ); err != nil {
		return c, fmt.Errorf("type: %w", err)
	}
	tag, val, rest, err := readTLV(rest)
	if err != nil {
		return c, fmt.Errorf("value: %w", err)
	}
	if tag != tagCtx1C && tag != tagCtx1 {
		return c, fmt.Errorf("value: tag 0x%02x, want [1]", tag)
	}
	if len(rest) != 0 {
		return c, errTrailing
	}
	if len(val) == 0 {
		return c, errors.New("value: empty")
	}
	if !known(c.Type) {
		c.Raw = bytes.Clone(val)
		return c, nil
	}
	seq := val
	if t, inner, r, err := readTLV(val); err == nil && t == tagSequence && len(r) == 0 {
		seq = inner
	} else if val[0] != tagOID {
		return c, errors.New("value: want SEQUENCE")
	}
	if err := c.decodeTag(seq); err != nil {
		return c, fmt.Errorf("value: %w", err)
	}
	return c, nil
}

// decodeTag decodes the members of a RestrictiveTag, PermissiveTag,
// EnumeratedTag or InformativeTag SEQUENCE according to c.Type.
func (c *Category) decodeTag(b []byte) error {
	tag, body, rest, err := readTLV(b)
	if err != nil {
		return fmt.Errorf("tagName: %w", err)
	}
	if tag != tagOID {
		return fmt.Errorf("tagName: tag 0x%02x, want OBJECT IDENTIFIER", tag)
	}
	if c.TagName, err = parseOID(body); err != nil {
		return fmt.Errorf("tagName: %w", err)
	}
	tag, body, rest, err = readTLV(rest)
	if err != nil {
		return fmt.Errorf("attributes: %w", err)
	}
	if len(rest) != 0 {
		return errTrailing
	}
	bitmap := false
	switch c.Type {
	case TypeRestrictive, TypePermissive:
		bitmap = true
	case TypeInformative:
		bitmap = tag == tagBitString
		c.Bitmap = bitmap
	}
	if bitmap {
		if tag != tagBitString {
			return fmt.Errorf("attributes: tag 0x%02x, want BIT STRING", tag)
		}
		c.Values, err = parseBits(body, MaxAttribute, MaxValues)
	} else {
		if tag != tagSet {
			return fmt.Errorf("attributes: tag 0x%02x, want SET OF INTEGER", tag)
		}
		c.Values, err = parseIntSet(body)
	}
	if err != nil {
		return fmt.Errorf("attributes: %w", err)
	}
	return nil
}

// parseIntSet decodes a SET OF INTEGER into sorted, distinct values.
func parseIntSet(b []byte) ([]int, error) {
	var out []int
	for len(b) > 0 {
		if len(out) == MaxValues {
			return nil, fmt.Errorf("more than %d values", MaxValues)
		}
		tag, body, rest, err := readTLV(b)
		if err != nil {
			return nil, err
		}
		if tag != tagInteger {
			return nil, fmt.Errorf("tag 0x%02x, want INTEGER", tag)
		}
		v, err := parseInt(body, MaxAttribute)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		b = rest
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// marshal appends the DER SecurityCategory SEQUENCE.
func (c Category) marshal(dst []byte) ([]byte, error) {
	typ, err := appendOID(nil, c.Type)
	if err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	var val []byte
	if known(c.Type) {
		if val, err = c.marshalTag(); err != nil {
			return nil, err
		}
	} else {
		if c.TagName != "" || c.Values != nil || c.Bitmap {
			return nil, fmt.Errorf("type %s is not a known tag type; only Raw may be set", c.Type)
		}
		if len(c.Raw) == 0 || len(c.Raw) > MaxSize {
			return nil, fmt.Errorf("type %s: Raw must hold 1..%d bytes", c.Type, MaxSize)
		}
		val = c.Raw
	}
	body := appendTLV(nil, tagCtx0, typ)
	body = appendTLV(body, tagCtx1C, val)
	return appendTLV(dst, tagSequence, body), nil
}

// marshalTag returns the DER of the tag SEQUENCE for a known type.
func (c Category) marshalTag() ([]byte, error) {
	if c.Raw != nil {
		return nil, fmt.Errorf("type %s: Raw is only for unknown types", c.Type)
	}
	if c.Bitmap && c.Type != TypeInformative {
		return nil, fmt.Errorf("type %s: Bitmap is only for informative tags", c.Type)
	}
	if len(c.Values) > MaxValues {
		return nil, fmt.Errorf("more than %d values", MaxValues)
	}
	vals := slices.Clone(c.Values)
	slices.Sort(vals)
	vals = slices.Compact(vals)
	if len(vals) > 0 && (vals[0] < 0 || vals[len(vals)-1] > MaxAttribute) {
		return nil, fmt.Errorf("attribute numbers must be 0..%d", MaxAttribute)
	}
	name, err := appendOID(nil, c.TagName)
	if err != nil {
		return nil, fmt.Errorf("tagName: %w", err)
	}
	body := appendTLV(nil, tagOID, name)
	switch {
	case c.Type == TypeRestrictive, c.Type == TypePermissive, c.Bitmap:
		body = appendTLV(body, tagBitString, appendBits(nil, vals))
	default:
		var set []byte
		// Ascending minimal INTEGERs are already in DER SET OF order.
		for _, v := range vals {
			set = appendTLV(set, tagInteger, appendInt(nil, v))
		}
		body = appendTLV(body, tagSet, set)
	}
	return appendTLV(nil, tagSequence, body), nil
}
