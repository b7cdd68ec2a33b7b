package ess

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Decode decodes the BER or DER encoding of an ESSSecurityLabel.
//
// The policy identifier is decoded as OPTIONAL, as in X.841: XEP-0258's own
// example omits it although RFC 2634 makes it mandatory. An empty SET is
// rejected because it carries no label at all.
func Decode(b []byte) (Label, error) {
	var l Label
	if len(b) > MaxSize {
		return l, fmt.Errorf("ess: label exceeds %d bytes", MaxSize)
	}
	body, err := readOnly(b, tagSet)
	if err != nil {
		return l, fmt.Errorf("ess: ESSSecurityLabel: %w", err)
	}
	if len(body) == 0 {
		return l, errors.New("ess: ESSSecurityLabel: empty")
	}
	var seenPolicy, seenMark, seenCats bool
	for len(body) > 0 {
		tag, v, rest, err := readTLV(body)
		if err != nil {
			return Label{}, fmt.Errorf("ess: ESSSecurityLabel: %w", err)
		}
		body = rest
		// BER lets SET members come in any order; each may appear once.
		switch tag {
		case tagOID:
			if seenPolicy {
				return Label{}, errors.New("ess: security-policy-identifier: repeated")
			}
			seenPolicy = true
			if l.Policy, err = parseOID(v); err != nil {
				return Label{}, fmt.Errorf("ess: security-policy-identifier: %w", err)
			}
		case tagInteger:
			if l.HasClass {
				return Label{}, errors.New("ess: security-classification: repeated")
			}
			l.HasClass = true
			if l.Class, err = parseInt(v, MaxClass); err != nil {
				return Label{}, fmt.Errorf("ess: security-classification: %w", err)
			}
		case tagUTF8, tagPrintable:
			if seenMark {
				return Label{}, errors.New("ess: privacy-mark: repeated")
			}
			seenMark = true
			l.PrintableMark = tag == tagPrintable
			l.PrivacyMark = string(v)
			if err := checkMark(l.PrivacyMark, l.PrintableMark); err != nil {
				return Label{}, fmt.Errorf("ess: privacy-mark: %w", err)
			}
		case tagSet:
			if seenCats {
				return Label{}, errors.New("ess: security-categories: repeated")
			}
			seenCats = true
			if l.Categories, err = decodeCategories(v); err != nil {
				return Label{}, fmt.Errorf("ess: security-categories: %w", err)
			}
		default:
			return Label{}, fmt.Errorf("ess: ESSSecurityLabel: unexpected tag 0x%02x", tag)
		}
	}
	return l, nil
}

// DecodeBase64 decodes the base64 text of an <esssecuritylabel/> element.
// XML whitespace anywhere is ignored and the '=' padding may be missing
// (XEP-0258's own example omits it).
func DecodeBase64(s string) (Label, error) {
	if len(s) > 4*MaxSize {
		return Label{}, fmt.Errorf("ess: base64 exceeds %d bytes", 4*MaxSize)
	}
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	// At most two '=' are padding; any other '=' makes the decoder fail.
	for i := 0; i < 2 && strings.HasSuffix(s, "="); i++ {
		s = s[:len(s)-1]
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return Label{}, fmt.Errorf("ess: base64: %w", err)
	}
	return Decode(b)
}

// Marshal returns the DER encoding of l.
func (l Label) Marshal() ([]byte, error) {
	if l.Policy == "" && !l.HasClass && l.PrivacyMark == "" && len(l.Categories) == 0 {
		return nil, errors.New("ess: empty label")
	}
	// DER orders SET members by tag: INTEGER, OID, string, SET.
	var body []byte
	if l.HasClass {
		if l.Class < 0 || l.Class > MaxClass {
			return nil, fmt.Errorf("ess: security-classification %d out of range 0..%d", l.Class, MaxClass)
		}
		body = appendTLV(body, tagInteger, appendInt(nil, l.Class))
	} else if l.Class != 0 {
		return nil, errors.New("ess: security-classification set without HasClass")
	}
	if l.Policy != "" {
		oid, err := appendOID(nil, l.Policy)
		if err != nil {
			return nil, fmt.Errorf("ess: security-policy-identifier: %w", err)
		}
		body = appendTLV(body, tagOID, oid)
	}
	if l.PrivacyMark != "" {
		if err := checkMark(l.PrivacyMark, l.PrintableMark); err != nil {
			return nil, fmt.Errorf("ess: privacy-mark: %w", err)
		}
		tag := byte(tagUTF8)
		if l.PrintableMark {
			tag = tagPrintable
		}
		body = appendTLV(body, tag, []byte(l.PrivacyMark))
	} else if l.PrintableMark {
		return nil, errors.New("ess: privacy-mark: PrintableMark set without a mark")
	}
	if len(l.Categories) > 0 {
		cats, err := encodeCategories(l.Categories)
		if err != nil {
			return nil, fmt.Errorf("ess: security-categories: %w", err)
		}
		body = appendTLV(body, tagSet, cats)
	}
	out := appendTLV(nil, tagSet, body)
	if len(out) > MaxSize {
		return nil, fmt.Errorf("ess: label encodes to %d bytes, over %d", len(out), MaxSize)
	}
	return out, nil
}

// Base64 returns the DER encoding of l in standard padded base64.
func (l Label) Base64() (string, error) {
	b, err := l.Marshal()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// checkMark enforces ESSPrivacyMark's constraints on either alternative.
func checkMark(s string, printable bool) error {
	if s == "" {
		return errors.New("empty")
	}
	if !printable {
		if !utf8.ValidString(s) {
			return errors.New("invalid UTF-8")
		}
		return nil
	}
	if len(s) > MaxPString {
		return fmt.Errorf("PrintableString longer than %d", MaxPString)
	}
	for i := 0; i < len(s); i++ {
		if !isPrintable(s[i]) {
			return fmt.Errorf("byte 0x%02x not allowed in PrintableString", s[i])
		}
	}
	return nil
}

// isPrintable reports whether c is in the X.680 PrintableString repertoire.
func isPrintable(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte(" '()+,-./:=?", c) >= 0
}
