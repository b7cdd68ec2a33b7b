package nato

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Validate reports whether l is a label that Marshal writes faithfully:
// Parse(l.Marshal()) returns l (with Root filled in) exactly when Validate
// returns nil. Parse applies it to everything it returns.
func (l Label) Validate() error {
	if l.Root != "" && rootName(l.Root) != l.Root {
		return fmt.Errorf("nato: bad root element name %q", l.Root)
	}
	if err := checkPolicy(l.PolicyName, l.PolicyURI); err != nil {
		return err
	}
	if err := checkText("Classification", l.Classification, true); err != nil {
		return err
	}
	if err := checkText("PrivacyMark", l.PrivacyMark, false); err != nil {
		return err
	}
	if err := checkCategories(l.Categories); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"CreationDateTime", l.CreationDateTime},
		{"ReviewDateTime", l.ReviewDateTime},
	} {
		if err := checkText(f.name, f.v, false); err != nil {
			return err
		}
		if f.v != "" && !validDateTime(f.v) {
			return fmt.Errorf("nato: %s: %q is not an xs:dateTime", f.name, f.v)
		}
	}
	if err := checkText("OriginatorID", l.OriginatorID, false); err != nil {
		return err
	}
	if err := checkAttr("OriginatorID IDType", l.OriginatorIDType); err != nil {
		return err
	}
	if l.OriginatorIDType != "" && l.OriginatorID == "" {
		return errors.New("nato: OriginatorID: IDType without an ID")
	}
	return nil
}

// Validate is Label.Validate for clearances.
func (c Clearance) Validate() error {
	if err := checkPolicy(c.PolicyName, c.PolicyURI); err != nil {
		return err
	}
	if len(c.Classifications) > MaxValues {
		return fmt.Errorf("nato: more than %d classifications", MaxValues)
	}
	for _, v := range c.Classifications {
		if err := checkText("Classification", v, true); err != nil {
			return err
		}
	}
	return checkCategories(c.Categories)
}

func checkPolicy(name, uri string) error {
	if name == "" && uri == "" {
		return errors.New("nato: PolicyIdentifier: neither name nor URI")
	}
	if err := checkText("PolicyIdentifier", name, false); err != nil {
		return err
	}
	return checkAttr("PolicyIdentifier URI", uri)
}

func checkCategories(cats []Category) error {
	if len(cats) > MaxCategories {
		return fmt.Errorf("nato: more than %d categories", MaxCategories)
	}
	for i, c := range cats {
		if err := c.check(); err != nil {
			return fmt.Errorf("nato: Category %d: %w", i, err)
		}
	}
	return nil
}

func (c Category) check() error {
	if c.TagName == "" {
		return errors.New("missing TagName")
	}
	switch c.Type {
	case Permissive, Restrictive, Informative:
	default:
		return fmt.Errorf("bad Type %q", c.Type)
	}
	if len(c.Values) == 0 {
		return errors.New("no GenericValue")
	}
	if len(c.Values) > MaxValues {
		return fmt.Errorf("more than %d values", MaxValues)
	}
	for _, s := range []string{c.TagName, c.URI} {
		if err := checkAttr("attribute", s); err != nil {
			return err
		}
	}
	for _, v := range c.Values {
		if err := checkText("GenericValue", v, true); err != nil {
			return err
		}
	}
	return nil
}

// checkText checks the value of a text-only element: bounded, XML
// characters only and, because Parse trims, no surrounding whitespace.
func checkText(field, s string, required bool) error {
	if s == "" && required {
		return fmt.Errorf("nato: %s: empty", field)
	}
	if strings.Trim(s, xmlSpace) != s {
		return fmt.Errorf("nato: %s: surrounding whitespace", field)
	}
	return checkAttr(field, s)
}

// checkAttr checks a length and character repertoire common to attribute
// values and text.
func checkAttr(field, s string) error {
	if len(s) > MaxText {
		return fmt.Errorf("nato: %s: longer than %d bytes", field, MaxText)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("nato: %s: invalid UTF-8", field)
	}
	for _, r := range s {
		if !isXMLChar(r) {
			return fmt.Errorf("nato: %s: character %U not allowed in XML", field, r)
		}
	}
	return nil
}

// isXMLChar reports whether r matches XML 1.0's Char production.
func isXMLChar(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r':
		return true
	case r >= 0x20 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}
