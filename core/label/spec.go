package label

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// FileSpec is a policy file as operators write it (TOML); core/config
// decodes it and Build turns it into a Set.
type FileSpec struct {
	// Governing names the policy of unlabelled messages and default
	// clearances; empty means the first policy.
	Governing    string            `toml:"governing"`
	Policies     []PolicySpec      `toml:"policy"`
	Equivalences []EquivalenceSpec `toml:"equivalence"`
}

// PolicySpec is one [[policy]].
type PolicySpec struct {
	Name             string        `toml:"name"`
	ID               string        `toml:"id"`
	Format           string        `toml:"format"`
	DefaultLabel     string        `toml:"default_label"`
	DefaultClearance string        `toml:"default_clearance"`
	RoomClearance    string        `toml:"room_clearance"`
	Classifications  []ClassSpec   `toml:"classification"`
	TagSets          []TagSetSpec  `toml:"tagset"`
	Catalog          []CatalogSpec `toml:"catalog"`
}

// ClassSpec is one [[policy.classification]].
type ClassSpec struct {
	Name      string `toml:"name"`
	Value     int    `toml:"value"`
	Hierarchy int    `toml:"hierarchy"` // 0 means its position in the file (later is higher)
	Marking   string `toml:"marking"`
	FG        string `toml:"fg"`
	BG        string `toml:"bg"`
}

// TagSetSpec is one [[policy.tagset]].
type TagSetSpec struct {
	Name       string      `toml:"name"`
	ID         string      `toml:"id"`
	Type       string      `toml:"type"`
	Enumerated bool        `toml:"enumerated"`
	Values     []ValueSpec `toml:"values"`
}

// ValueSpec is one value of a tag set.
type ValueSpec struct {
	Name  string `toml:"name"`
	Value int    `toml:"value"`
}

// CatalogSpec is one [[policy.catalog]] item; an empty Label offers "no label".
type CatalogSpec struct {
	Selector string `toml:"selector"`
	Label    string `toml:"label"`
	Default  bool   `toml:"default"`
}

// EquivalenceSpec is one [[equivalence]]: how labels of policy From read under policy To.
type EquivalenceSpec struct {
	From string    `toml:"from"`
	To   string    `toml:"to"`
	Map  []MapSpec `toml:"map"`
}

// MapSpec maps one classification ("SECRET") or category ("Releasable To: GBR").
type MapSpec struct {
	From string `toml:"from"`
	To   string `toml:"to"`
}

// SpecError is one problem in a policy file, under its full dotted key
// (e.g. "policy[0].classification[2].value").
type SpecError struct {
	Key string
	Msg string
}

func (e SpecError) Error() string { return e.Key + ": " + e.Msg }

var colourRE = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// displayColours are the XEP-0258 colour names; the schema spells fuchsia "fuschia".
var displayColours = []string{"aqua", "black", "blue", "fuchsia", "fuschia", "gray", "green", "lime", "maroon",
	"navy", "olive", "purple", "red", "silver", "teal", "white", "yellow", "orange"}

// ValidColour reports whether s is a display-marking colour XEP-0258 allows.
func ValidColour(s string) bool {
	for _, c := range displayColours {
		if strings.EqualFold(s, c) {
			return true
		}
	}
	return colourRE.MatchString(s)
}

// Build checks a policy file and builds its Set, reporting every problem.
func Build(spec FileSpec) (*Set, []SpecError) {
	var errs []SpecError
	fail := func(key, format string, args ...any) {
		errs = append(errs, SpecError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	s := &Set{}
	if len(spec.Policies) == 0 {
		fail("policy", "at least one [[policy]] is required")
		return nil, errs
	}
	for i, ps := range spec.Policies {
		key := "policy[" + strconv.Itoa(i) + "]"
		p := buildPolicy(key, ps, fail)
		for _, q := range s.Policies {
			if strings.EqualFold(q.Name, p.Name) {
				fail(key+".name", "policy %q is defined twice", p.Name)
			}
			if p.ID != "" && q.ID == p.ID {
				fail(key+".id", "policy OID %s is used twice", p.ID)
			}
		}
		s.Policies = append(s.Policies, p)
	}
	s.Governing = s.Policies[0]
	if spec.Governing != "" {
		p, ok := s.Policy(spec.Governing)
		if !ok {
			fail("governing", "no policy is called %q", spec.Governing)
		} else {
			s.Governing = p
		}
	}
	// Expressions need the whole set: defaults may name another policy.
	for i, ps := range spec.Policies {
		key := "policy[" + strconv.Itoa(i) + "]"
		p := s.Policies[i]
		sub := &Set{Policies: s.Policies, Governing: p}
		if ps.DefaultLabel != "" {
			if l, err := sub.ParseLabel(ps.DefaultLabel); err != nil {
				fail(key+".default_label", "%v", err)
			} else {
				p.DefaultLabel = l
			}
		}
		if ps.DefaultClearance != "" {
			if c, err := sub.ParseClearance(ps.DefaultClearance); err != nil {
				fail(key+".default_clearance", "%v", err)
			} else {
				p.DefaultClearance = c
			}
		}
		if ps.RoomClearance != "" {
			if c, err := sub.ParseClearance(ps.RoomClearance); err != nil {
				fail(key+".room_clearance", "%v", err)
			} else {
				p.RoomClearance = c
			}
		}
		defaults := 0
		for j, cs := range ps.Catalog {
			ck := key + ".catalog[" + strconv.Itoa(j) + "]"
			item := CatalogItem{Selector: cs.Selector, Default: cs.Default}
			if strings.Contains(cs.Selector, "||") || strings.HasPrefix(cs.Selector, "|") || strings.HasSuffix(cs.Selector, "|") {
				fail(ck+".selector", "empty menu level in %q", cs.Selector)
			}
			if cs.Default {
				defaults++
				if defaults > 1 {
					fail(ck+".default", "only one catalog item may be the default")
				}
			}
			if cs.Label != "" {
				l, err := sub.ParseLabel(cs.Label)
				if err != nil {
					fail(ck+".label", "%v", err)
					continue
				}
				if l.Policy != p {
					fail(ck+".label", "the label is under policy %s, not %s", l.Policy.Name, p.Name)
					continue
				}
				item.Label = l
			}
			p.Catalog = append(p.Catalog, item)
		}
	}
	for i, es := range spec.Equivalences {
		key := "equivalence[" + strconv.Itoa(i) + "]"
		if e, ok := buildEquivalence(key, s, es, fail); ok {
			s.equiv = append(s.equiv, e)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func buildPolicy(key string, ps PolicySpec, fail func(string, string, ...any)) *Policy {
	p := &Policy{Name: ps.Name, ID: ps.ID, Format: ps.Format}
	if strings.TrimSpace(ps.Name) == "" || strings.Contains(ps.Name, "::") {
		fail(key+".name", "a policy needs a name without \"::\"")
	}
	if ps.ID != "" && !ValidOID(ps.ID) {
		fail(key+".id", "%q is not a dotted OID such as 1.3.26.1.3.1", ps.ID)
	}
	switch ps.Format {
	case "":
		p.Format = "ess"
	case "ess", "nato":
	default:
		fail(key+".format", "%q is not one of ess, nato", ps.Format)
	}
	if p.Format == "ess" && ps.ID == "" {
		fail(key+".id", "an ESS policy needs its OID")
	}
	if len(ps.Classifications) == 0 {
		fail(key+".classification", "a policy needs at least one [[policy.classification]]")
	}
	for j, cs := range ps.Classifications {
		ck := key + ".classification[" + strconv.Itoa(j) + "]"
		c := Classification{Name: cs.Name, LACV: cs.Value, Hierarchy: cs.Hierarchy, Marking: cs.Marking, FG: cs.FG, BG: cs.BG}
		if c.Hierarchy == 0 {
			c.Hierarchy = j + 1
		}
		if c.Marking == "" {
			c.Marking = c.Name
		}
		if c.FG == "" {
			c.FG = "black"
		}
		if c.BG == "" {
			c.BG = "white"
		}
		if !validName(c.Name) {
			fail(ck+".name", "a classification needs a name without ',', ';' or ':'")
		}
		if c.LACV < 0 || c.LACV > MaxLACV {
			fail(ck+".value", "must be between 0 and %d", MaxLACV)
		}
		for _, col := range [][2]string{{"fg", c.FG}, {"bg", c.BG}} {
			if !ValidColour(col[1]) {
				fail(ck+"."+col[0], "%q is not a colour XEP-0258 allows (a CSS name such as red, or #RRGGBB)", col[1])
			}
		}
		for _, o := range p.Classes {
			if strings.EqualFold(o.Name, c.Name) {
				fail(ck+".name", "classification %q is defined twice", c.Name)
			}
			if o.LACV == c.LACV {
				fail(ck+".value", "value %d is used twice", c.LACV)
			}
		}
		p.Classes = append(p.Classes, c)
	}
	for j, ts := range ps.TagSets {
		tk := key + ".tagset[" + strconv.Itoa(j) + "]"
		t := TagSet{ID: ts.ID, Name: ts.Name, Enumerated: ts.Enumerated}
		switch ts.Type {
		case "restrictive":
			t.Type = Restrictive
		case "permissive":
			t.Type = Permissive
		case "informative":
			t.Type = Informative
		default:
			fail(tk+".type", "%q is not one of restrictive, permissive, informative", ts.Type)
		}
		if !validName(t.Name) || strings.EqualFold(t.Name, "privacy mark") {
			fail(tk+".name", "a tag set needs a name without ',', ';' or ':'")
		}
		if ts.ID != "" && !ValidOID(ts.ID) {
			fail(tk+".id", "%q is not a dotted OID", ts.ID)
		}
		if p.Format == "ess" && ts.ID == "" {
			fail(tk+".id", "an ESS policy's tag sets need their OID (the tagName)")
		}
		for _, o := range p.TagSets {
			if strings.EqualFold(o.Name, t.Name) {
				fail(tk+".name", "tag set %q is defined twice", t.Name)
			}
		}
		if len(ts.Values) == 0 {
			fail(tk+".values", "a tag set needs at least one value")
		}
		for k, vs := range ts.Values {
			vk := tk + ".values[" + strconv.Itoa(k) + "]"
			if !validName(vs.Name) {
				fail(vk+".name", "a value needs a name without ',', ';' or ':'")
			}
			if vs.Value < 0 || vs.Value > 1<<16 {
				fail(vk+".value", "must be between 0 and 65536")
			}
			for _, o := range t.Values {
				if strings.EqualFold(o.Name, vs.Name) || o.LACV == vs.Value {
					fail(vk, "value %q (%d) is defined twice", vs.Name, vs.Value)
				}
			}
			t.Values = append(t.Values, TagValue{Name: vs.Name, LACV: vs.Value})
		}
		p.TagSets = append(p.TagSets, t)
	}
	return p
}

func validName(s string) bool {
	return strings.TrimSpace(s) != "" && strings.TrimSpace(s) == s && !strings.ContainsAny(s, ",;:") && len(s) <= 256
}

func buildEquivalence(key string, s *Set, es EquivalenceSpec, fail func(string, string, ...any)) (equivalence, bool) {
	from, ok1 := s.Policy(es.From)
	to, ok2 := s.Policy(es.To)
	if !ok1 {
		fail(key+".from", "no policy is called %q", es.From)
	}
	if !ok2 {
		fail(key+".to", "no policy is called %q", es.To)
	}
	if !ok1 || !ok2 {
		return equivalence{}, false
	}
	e := equivalence{from: from, to: to, classes: map[int]int{}, cats: map[Category]Category{}}
	ok := true
	for j, m := range es.Map {
		mk := key + ".map[" + strconv.Itoa(j) + "]"
		fc, fcat, ferr := valueRef(from, m.From)
		tc, tcat, terr := valueRef(to, m.To)
		switch {
		case ferr != nil:
			fail(mk+".from", "%v", ferr)
			ok = false
		case terr != nil:
			fail(mk+".to", "%v", terr)
			ok = false
		case (fc >= 0) != (tc >= 0):
			fail(mk, "maps a classification onto a category")
			ok = false
		case fc >= 0:
			e.classes[fc] = tc
		default:
			e.cats[fcat] = tcat
		}
	}
	return e, ok
}

// valueRef reads "CLASS" or "Tag Set: VALUE"; class is -1 for a category.
func valueRef(p *Policy, ref string) (int, Category, error) {
	tag, val, isCat := strings.Cut(ref, ":")
	if !isCat {
		c, ok := p.ClassByName(strings.TrimSpace(ref))
		if !ok {
			return -1, Category{}, fmt.Errorf("policy %s has no classification %q", p.Name, strings.TrimSpace(ref))
		}
		return c.LACV, Category{}, nil
	}
	set, ok := p.TagSetByName(strings.TrimSpace(tag))
	if !ok {
		return -1, Category{}, fmt.Errorf("policy %s has no tag set %q", p.Name, strings.TrimSpace(tag))
	}
	v, ok := p.TagSets[set].value(strings.TrimSpace(val))
	if !ok {
		return -1, Category{}, fmt.Errorf("tag set %q has no value %q", p.TagSets[set].Name, strings.TrimSpace(val))
	}
	return -1, Category{Set: set, Value: v}, nil
}
