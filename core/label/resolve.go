package label

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/aldis-im/aldis/core/label/ess"
	"github.com/aldis-im/aldis/core/label/nato"
)

// Marking is a parsed <securitylabel/> with its labels read under the
// policies of a Set.
type Marking struct {
	Element *Element
	// Primary is the <label>, nil when it is empty ("use the default") or
	// under a policy the set does not know.
	Primary     *Label
	Equivalents []*Label // those under known policies
}

// Resolve reads an element's labels under the set's policies. A label
// under an unknown policy is skipped; ErrUnknownPolicy when none is known
// and the label is not empty. A label of a known policy that uses values
// the policy does not define is ErrUndefined.
func (s *Set) Resolve(e *Element) (*Marking, error) {
	m := &Marking{Element: e}
	known := false
	if e.Label != nil {
		l, err := s.decode(e.Label)
		switch {
		case err != nil:
			return nil, err
		case l != nil:
			m.Primary, known = l, true
		}
	}
	for i := range e.Equivalents {
		l, err := s.decode(&e.Equivalents[i])
		if err != nil {
			return nil, err // a malformed equivalent makes the stanza malformed (§1.7)
		}
		if l != nil {
			m.Equivalents = append(m.Equivalents, l)
			known = true
		}
	}
	if !known && e.Label != nil {
		return nil, ErrUnknownPolicy
	}
	return m, nil
}

// For picks the label that applies to a principal cleared under policy p
// (PROTOCOLS.md §1.7): the primary label if it is under p, else an
// equivalent under p, else a translation of the primary, else (for an
// empty <label/>) def. nil means there is none, which Decide denies.
func (s *Set) For(m *Marking, p *Policy, def *Label) *Label {
	if m == nil {
		return def
	}
	if m.Primary != nil && m.Primary.Policy == p {
		return m.Primary
	}
	for _, l := range m.Equivalents {
		if l.Policy == p {
			return l
		}
	}
	if m.Primary != nil {
		if l, ok := s.Translate(m.Primary, p); ok {
			return l
		}
		return nil
	}
	if m.Element == nil || m.Element.Label == nil {
		return def
	}
	return nil
}

// decode reads one encoded label; (nil, nil) when its policy is unknown.
func (s *Set) decode(enc *Encoded) (*Label, error) {
	switch {
	case enc.ESS != nil:
		return s.fromESS(enc.ESS)
	case enc.NATO != nil:
		return s.fromNATO(enc.NATO)
	}
	return nil, nil
}

func (s *Set) fromESS(e *ess.Label) (*Label, error) {
	if e.Policy == "" {
		return nil, nil
	}
	p, ok := s.Policy(e.Policy)
	if !ok || p.ID != e.Policy {
		return nil, nil
	}
	class := e.Class
	if !e.HasClass {
		if p.DefaultLabel == nil {
			return nil, fmt.Errorf("%w: no classification and no default", ErrUndefined)
		}
		class = p.DefaultLabel.Class
	}
	var cats []Category
	for _, c := range e.Categories {
		set, ok := p.TagSetByID(c.TagName)
		if !ok || !essTypeFits(c.Type, p.TagSets[set].Type) {
			return nil, fmt.Errorf("%w: category %s %s", ErrUndefined, c.Type, c.TagName)
		}
		for _, v := range c.Values {
			cats = append(cats, Category{Set: set, Value: v})
		}
	}
	l, err := p.NewLabel(class, e.PrivacyMark, cats)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndefined, err)
	}
	return l, nil
}

func essTypeFits(typ string, t TagType) bool {
	switch typ {
	case ess.TypeRestrictive, ess.TypeEnumeratedRestrictive:
		return t == Restrictive
	case ess.TypePermissive, ess.TypeEnumeratedPermissive:
		return t == Permissive
	case ess.TypeInformative:
		return t == Informative
	}
	return false
}

func (s *Set) fromNATO(n *nato.Label) (*Label, error) {
	var p *Policy
	if oid := nato.OID(n.PolicyURI); oid != "" {
		p, _ = s.Policy(oid)
		if p != nil && p.ID != oid {
			p = nil
		}
	} else {
		p, _ = s.Policy(n.PolicyName)
	}
	if p == nil {
		return nil, nil
	}
	c, ok := p.ClassByName(n.Classification)
	if !ok {
		c, ok = p.classByMarking(n.Classification)
	}
	if !ok {
		return nil, fmt.Errorf("%w: classification %q", ErrUndefined, n.Classification)
	}
	var cats []Category
	for _, nc := range n.Categories {
		set, ok := p.TagSetByName(nc.TagName)
		if !ok || !strings.EqualFold(nc.Type, p.TagSets[set].Type.String()) {
			return nil, fmt.Errorf("%w: category %q", ErrUndefined, nc.TagName)
		}
		for _, v := range nc.Values {
			lacv, ok := p.TagSets[set].value(v)
			if !ok {
				return nil, fmt.Errorf("%w: %q has no value %q", ErrUndefined, nc.TagName, v)
			}
			cats = append(cats, Category{Set: set, Value: lacv})
		}
	}
	l, err := p.NewLabel(c.LACV, n.PrivacyMark, cats)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndefined, err)
	}
	return l, nil
}

func (p *Policy) classByMarking(m string) (*Classification, bool) {
	for i := range p.Classes {
		if strings.EqualFold(p.Classes[i].Marking, m) {
			return &p.Classes[i], true
		}
	}
	return nil, false
}

// ESS encodes l as an ESS security label.
func (l *Label) ESS() ess.Label {
	p := l.Policy
	out := ess.Label{Policy: p.ID, HasClass: true, Class: l.Class, PrivacyMark: l.PrivacyMark}
	for i := 0; i < len(l.Cats); {
		set := l.Cats[i].Set
		ts := &p.TagSets[set]
		c := ess.Category{TagName: ts.ID}
		switch {
		case ts.Type == Restrictive && ts.Enumerated:
			c.Type = ess.TypeEnumeratedRestrictive
		case ts.Type == Restrictive:
			c.Type = ess.TypeRestrictive
		case ts.Type == Permissive && ts.Enumerated:
			c.Type = ess.TypeEnumeratedPermissive
		case ts.Type == Permissive:
			c.Type = ess.TypePermissive
		default:
			c.Type, c.Bitmap = ess.TypeInformative, !ts.Enumerated
		}
		for ; i < len(l.Cats) && l.Cats[i].Set == set; i++ {
			c.Values = append(c.Values, l.Cats[i].Value)
		}
		out.Categories = append(out.Categories, c)
	}
	return out
}

// NATO encodes l as a STANAG 4774 confidentiality label.
func (l *Label) NATO() nato.Label {
	p := l.Policy
	out := nato.Label{PolicyName: p.Name, Classification: p.className(l.Class), PrivacyMark: l.PrivacyMark}
	if p.ID != "" {
		out.PolicyURI = "urn:oid:" + p.ID
	}
	for i := 0; i < len(l.Cats); {
		set := l.Cats[i].Set
		ts := &p.TagSets[set]
		c := nato.Category{TagName: ts.Name, Type: strings.ToUpper(ts.Type.String())}
		if ts.ID != "" {
			c.URI = "urn:oid:" + ts.ID
		}
		for ; i < len(l.Cats) && l.Cats[i].Set == set; i++ {
			c.Values = append(c.Values, ts.valueName(l.Cats[i].Value))
		}
		out.Categories = append(out.Categories, c)
	}
	return out
}

// Display is the marking clients show for l: the classification's marking
// followed by its categories.
func (l *Label) Display() DisplayMarking {
	p := l.Policy
	c, _ := p.Class(l.Class)
	var b strings.Builder
	b.WriteString(c.Marking)
	writeCats(&b, p, l.Cats)
	return DisplayMarking{Text: b.String(), FG: c.FG, BG: c.BG}
}

// Marshal writes l as a <securitylabel/> in its policy's format, with the
// display marking first, then the label, then any equivalents.
func (l *Label) Marshal(equivalents ...*Label) ([]byte, error) {
	dm := l.Display()
	var b strings.Builder
	b.WriteString("<securitylabel xmlns='" + NS + "'><displaymarking fgcolor='")
	xmlEscape(&b, dm.FG)
	b.WriteString("' bgcolor='")
	xmlEscape(&b, dm.BG)
	b.WriteString("'>")
	xmlEscape(&b, dm.Text)
	b.WriteString("</displaymarking><label>")
	if err := l.writeEncoded(&b); err != nil {
		return nil, err
	}
	b.WriteString("</label>")
	for _, e := range equivalents {
		b.WriteString("<equivalentlabel>")
		if err := e.writeEncoded(&b); err != nil {
			return nil, err
		}
		b.WriteString("</equivalentlabel>")
	}
	b.WriteString("</securitylabel>")
	return []byte(b.String()), nil
}

func (l *Label) writeEncoded(b *strings.Builder) error {
	if l.Policy.Format == "nato" {
		b.Write(l.NATO().Marshal())
		return nil
	}
	s, err := l.ESS().Base64()
	if err != nil {
		return fmt.Errorf("encode label %s: %w", l, err)
	}
	b.WriteString("<esssecuritylabel xmlns='" + NSESS + "'>" + s + "</esssecuritylabel>")
	return nil
}

func xmlEscape(b *strings.Builder, s string) {
	_ = xml.EscapeText(b, []byte(s))
}
