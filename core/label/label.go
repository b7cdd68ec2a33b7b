// Package label models security labels, clearances and policies, and decides whether a clearance grants access to a label.
//
// The model follows X.841 as XEP-0258 uses it: a policy defines
// classifications (with a hierarchy) and tag sets of categories, each tag set
// restrictive, permissive or informative. A label is a classification plus
// categories; a clearance is a set of classifications plus categories. The
// access-control decision (Decide) and label dominance (Dominates) are the
// rules of PROTOCOLS.md §1.10. Labels and clearances point at their Policy,
// so they are only ever built through it and always refer to defined values.
package label

import (
	"slices"
	"strings"
)

// TagType says how a tag set's categories take part in the decision.
type TagType uint8

// Tag set types.
const (
	// Restrictive: the clearance must hold every category of the label.
	Restrictive TagType = iota + 1
	// Permissive: the clearance must hold at least one of the label's categories of the set.
	Permissive
	// Informative: ignored by the decision.
	Informative
)

func (t TagType) String() string {
	switch t {
	case Restrictive:
		return "restrictive"
	case Permissive:
		return "permissive"
	case Informative:
		return "informative"
	}
	return "unknown"
}

// Category is one value of one tag set: the tag set's index in its policy
// and the value's LACV (the number it has in encodings).
type Category struct {
	Set   int
	Value int
}

func compareCat(a, b Category) int {
	if a.Set != b.Set {
		return a.Set - b.Set
	}
	return a.Value - b.Value
}

// normCats sorts and deduplicates categories, so that labels compare and
// decide by merging.
func normCats(c []Category) []Category {
	slices.SortFunc(c, compareCat)
	return slices.Compact(c)
}

func hasCat(sorted []Category, c Category) bool {
	_, ok := slices.BinarySearchFunc(sorted, c, compareCat)
	return ok
}

// MaxLACV is the largest classification number ESS allows (RFC 2634: 0..256).
const MaxLACV = 256

// ClassSet is a set of classification LACVs, 0..MaxLACV.
type ClassSet [5]uint64

// Add puts v in the set; values out of range are ignored.
func (s *ClassSet) Add(v int) {
	if v >= 0 && v <= MaxLACV {
		s[v/64] |= 1 << (v % 64)
	}
}

// Has reports whether v is in the set.
func (s *ClassSet) Has(v int) bool {
	return v >= 0 && v <= MaxLACV && s[v/64]&(1<<(v%64)) != 0
}

// Values lists the set's members in ascending order.
func (s *ClassSet) Values() []int {
	var out []int
	for v := 0; v <= MaxLACV; v++ {
		if s.Has(v) {
			out = append(out, v)
		}
	}
	return out
}

// Label is a security label under a policy. Build it with Policy methods.
type Label struct {
	Policy      *Policy
	Class       int // LACV of the classification
	PrivacyMark string
	Cats        []Category // sorted, no duplicates
}

// Clearance is what a principal may see under a policy.
type Clearance struct {
	Policy  *Policy
	Classes ClassSet
	Cats    []Category // sorted, no duplicates
}

// Decide is the access-control decision function: it reports whether the
// clearance grants access to the label (PROTOCOLS.md §1.10). A nil clearance
// or label, or one under another policy, is denied: translate labels to the
// clearance's policy first (Set.For).
func Decide(c *Clearance, l *Label) bool {
	if c == nil || l == nil || c.Policy == nil || l.Policy != c.Policy {
		return false
	}
	if !c.Classes.Has(l.Class) {
		return false
	}
	sets := l.Policy.TagSets
	for i := 0; i < len(l.Cats); {
		set := l.Cats[i].Set
		j := i
		for j < len(l.Cats) && l.Cats[j].Set == set {
			j++
		}
		switch sets[set].Type {
		case Restrictive:
			for _, cat := range l.Cats[i:j] {
				if !hasCat(c.Cats, cat) {
					return false
				}
			}
		case Permissive:
			held := false
			for _, cat := range l.Cats[i:j] {
				if hasCat(c.Cats, cat) {
					held = true
					break
				}
			}
			if !held {
				return false
			}
		}
		i = j
	}
	return true
}

// Dominates reports whether a is at least as sensitive as b (a ⪰ b): same
// policy, a classification at least as high, a superset of b's restrictive
// categories, and for every permissive tag set where b has values, a
// non-empty subset of them.
func Dominates(a, b *Label) bool {
	if a == nil || b == nil || a.Policy == nil || a.Policy != b.Policy {
		return false
	}
	p := a.Policy
	ha, oka := p.hierarchy(a.Class)
	hb, okb := p.hierarchy(b.Class)
	if !oka || !okb || ha < hb {
		return false
	}
	for _, c := range b.Cats {
		if p.TagSets[c.Set].Type == Restrictive && !hasCat(a.Cats, c) {
			return false
		}
	}
	for set, ts := range p.TagSets {
		if ts.Type != Permissive {
			continue
		}
		bVals := catsOf(b.Cats, set)
		if len(bVals) == 0 {
			continue
		}
		aVals := catsOf(a.Cats, set)
		if len(aVals) == 0 {
			return false
		}
		for _, c := range aVals {
			if !hasCat(bVals, c) {
				return false
			}
		}
	}
	return true
}

// catsOf returns the sub-slice of sorted cats that belong to tag set set.
func catsOf(cats []Category, set int) []Category {
	i, _ := slices.BinarySearchFunc(cats, Category{Set: set, Value: -1 << 31}, compareCat)
	j := i
	for j < len(cats) && cats[j].Set == set {
		j++
	}
	return cats[i:j]
}

// String formats the label as an expression ParseLabel reads back.
func (l *Label) String() string {
	if l == nil || l.Policy == nil {
		return ""
	}
	p := l.Policy
	var b strings.Builder
	b.WriteString(p.Name)
	b.WriteString(" :: ")
	b.WriteString(p.className(l.Class))
	writeCats(&b, p, l.Cats)
	if l.PrivacyMark != "" {
		b.WriteString("; privacy mark: ")
		b.WriteString(l.PrivacyMark)
	}
	return b.String()
}

// String formats the clearance as an expression ParseClearance reads back
// (with its classes listed explicitly).
func (c *Clearance) String() string {
	if c == nil || c.Policy == nil {
		return ""
	}
	p := c.Policy
	var b strings.Builder
	b.WriteString(p.Name)
	b.WriteString(" :: ")
	for i, v := range c.Classes.Values() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.className(v))
	}
	writeCats(&b, p, c.Cats)
	return b.String()
}

func writeCats(b *strings.Builder, p *Policy, cats []Category) {
	for i := 0; i < len(cats); {
		set := cats[i].Set
		b.WriteString("; ")
		b.WriteString(p.TagSets[set].Name)
		b.WriteString(": ")
		start := i
		for ; i < len(cats) && cats[i].Set == set; i++ {
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString(p.TagSets[set].valueName(cats[i].Value))
		}
	}
}

// Grants decides like Decide, first translating l to the clearance's
// policy when it is under another one (through a configured equivalence).
func (s *Set) Grants(c *Clearance, l *Label) bool {
	if c == nil || l == nil {
		return false
	}
	if l.Policy != c.Policy {
		var ok bool
		if l, ok = s.Translate(l, c.Policy); !ok {
			return false
		}
	}
	return Decide(c, l)
}
