package label

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Classification is one classification a policy defines.
type Classification struct {
	Name      string
	LACV      int // the number in encodings (ESS security-classification)
	Hierarchy int // higher is more sensitive
	Marking   string
	FG, BG    string // display marking colours
}

// TagValue is one value of a tag set.
type TagValue struct {
	Name string
	LACV int
}

// TagSet is a set of categories that take part in decisions the same way.
type TagSet struct {
	ID   string // dotted OID (the ESS tagName); may be empty for XML-only policies
	Name string
	Type TagType
	// Enumerated selects the ESS encoding: EnumeratedTag (a SET OF INTEGER)
	// rather than a bitmap. Informative sets use it to pick securityAttributes.
	Enumerated bool
	Values     []TagValue
}

func (t *TagSet) value(name string) (int, bool) {
	for _, v := range t.Values {
		if strings.EqualFold(v.Name, name) {
			return v.LACV, true
		}
	}
	return 0, false
}

func (t *TagSet) has(lacv int) bool {
	for _, v := range t.Values {
		if v.LACV == lacv {
			return true
		}
	}
	return false
}

func (t *TagSet) valueName(lacv int) string {
	for _, v := range t.Values {
		if v.LACV == lacv {
			return v.Name
		}
	}
	return strconv.Itoa(lacv)
}

// CatalogItem is one entry of a policy's label catalog (XEP-0258); a nil
// Label is the "send without a label" item.
type CatalogItem struct {
	Selector string
	Label    *Label
	Default  bool
}

// Policy is a security policy: what labels and clearances mean.
type Policy struct {
	ID      string // dotted OID
	Name    string
	Classes []Classification
	TagSets []TagSet
	// DefaultLabel is given to unlabelled messages; nil means they are denied.
	DefaultLabel *Label
	// DefaultClearance is held by users with none of their own; nil means
	// they see nothing labelled.
	DefaultClearance *Clearance
	// RoomClearance is the clearance of a room that has none configured;
	// nil admits every label of the policy.
	RoomClearance *Clearance
	// Format is the encoding used when the server writes labels: "ess" or "nato".
	Format  string
	Catalog []CatalogItem
}

// Class returns the classification with LACV v.
func (p *Policy) Class(v int) (*Classification, bool) {
	for i := range p.Classes {
		if p.Classes[i].LACV == v {
			return &p.Classes[i], true
		}
	}
	return nil, false
}

func (p *Policy) hierarchy(v int) (int, bool) {
	c, ok := p.Class(v)
	if !ok {
		return 0, false
	}
	return c.Hierarchy, true
}

func (p *Policy) className(v int) string {
	if c, ok := p.Class(v); ok {
		return c.Name
	}
	return strconv.Itoa(v)
}

// ClassByName finds a classification by name, ignoring case.
func (p *Policy) ClassByName(name string) (*Classification, bool) {
	for i := range p.Classes {
		if strings.EqualFold(p.Classes[i].Name, name) {
			return &p.Classes[i], true
		}
	}
	return nil, false
}

// TagSetByName finds a tag set by name, ignoring case.
func (p *Policy) TagSetByName(name string) (int, bool) {
	for i := range p.TagSets {
		if strings.EqualFold(p.TagSets[i].Name, name) {
			return i, true
		}
	}
	return 0, false
}

// TagSetByID finds a tag set by OID.
func (p *Policy) TagSetByID(id string) (int, bool) {
	for i := range p.TagSets {
		if p.TagSets[i].ID != "" && p.TagSets[i].ID == id {
			return i, true
		}
	}
	return 0, false
}

// NewLabel builds a label, checking that every value is defined.
func (p *Policy) NewLabel(class int, privacyMark string, cats []Category) (*Label, error) {
	if _, ok := p.Class(class); !ok {
		return nil, fmt.Errorf("classification %d is not defined by policy %s", class, p.Name)
	}
	if err := p.checkCats(cats); err != nil {
		return nil, err
	}
	return &Label{Policy: p, Class: class, PrivacyMark: privacyMark, Cats: normCats(append([]Category(nil), cats...))}, nil
}

// NewClearance builds a clearance, checking that every value is defined.
func (p *Policy) NewClearance(classes []int, cats []Category) (*Clearance, error) {
	c := &Clearance{Policy: p}
	for _, v := range classes {
		if _, ok := p.Class(v); !ok {
			return nil, fmt.Errorf("classification %d is not defined by policy %s", v, p.Name)
		}
		c.Classes.Add(v)
	}
	if err := p.checkCats(cats); err != nil {
		return nil, err
	}
	c.Cats = normCats(append([]Category(nil), cats...))
	return c, nil
}

// UpTo returns the LACVs of every classification at or below the hierarchy
// of class, except unmarked (0), which is only held when listed.
func (p *Policy) UpTo(class int) []int {
	top, ok := p.hierarchy(class)
	if !ok {
		return nil
	}
	var out []int
	for _, c := range p.Classes {
		if c.Hierarchy <= top && (c.LACV != 0 || c.LACV == class) {
			out = append(out, c.LACV)
		}
	}
	return out
}

// Top returns the clearance that grants every label of the policy.
func (p *Policy) Top() *Clearance {
	c := &Clearance{Policy: p}
	for _, cl := range p.Classes {
		c.Classes.Add(cl.LACV)
	}
	for i, ts := range p.TagSets {
		for _, v := range ts.Values {
			c.Cats = append(c.Cats, Category{Set: i, Value: v.LACV})
		}
	}
	c.Cats = normCats(c.Cats)
	return c
}

func (p *Policy) checkCats(cats []Category) error {
	for _, c := range cats {
		if c.Set < 0 || c.Set >= len(p.TagSets) {
			return fmt.Errorf("tag set %d is not defined by policy %s", c.Set, p.Name)
		}
		if !p.TagSets[c.Set].has(c.Value) {
			return fmt.Errorf("value %d is not defined in tag set %q", c.Value, p.TagSets[c.Set].Name)
		}
	}
	return nil
}

// Set is the policies a server knows, one of which governs: it gives
// unlabelled messages their default label and users their default clearance.
type Set struct {
	Policies  []*Policy
	Governing *Policy
	equiv     []equivalence
}

// equivalence maps labels of one policy onto another (PROTOCOLS.md §1.7).
type equivalence struct {
	from, to *Policy
	classes  map[int]int
	cats     map[Category]Category
}

// Policy returns the policy with the given name or OID.
func (s *Set) Policy(nameOrID string) (*Policy, bool) {
	if s == nil {
		return nil, false
	}
	for _, p := range s.Policies {
		if p.ID == nameOrID || strings.EqualFold(p.Name, nameOrID) {
			return p, true
		}
	}
	return nil, false
}

// Translate maps l onto policy to through a configured equivalence. It
// fails when there is none or when a classification or a non-informative
// category has no counterpart: a label is never guessed.
func (s *Set) Translate(l *Label, to *Policy) (*Label, bool) {
	if l == nil || to == nil {
		return nil, false
	}
	if l.Policy == to {
		return l, true
	}
	for _, e := range s.equiv {
		if e.from != l.Policy || e.to != to {
			continue
		}
		class, ok := e.classes[l.Class]
		if !ok {
			return nil, false
		}
		var cats []Category
		for _, c := range l.Cats {
			m, ok := e.cats[c]
			if !ok {
				if l.Policy.TagSets[c.Set].Type == Informative {
					continue
				}
				return nil, false
			}
			cats = append(cats, m)
		}
		out, err := to.NewLabel(class, l.PrivacyMark, cats)
		return out, err == nil
	}
	return nil, false
}

var oidRE = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]{0,18}))+$`)

// ValidOID reports whether s is a dotted object identifier.
func ValidOID(s string) bool { return oidRE.MatchString(s) }
