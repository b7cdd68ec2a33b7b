package label

import (
	"errors"
	"fmt"
	"strings"
)

// Label and clearance expressions are how operators write labels in
// configuration and on the command line:
//
//	[POLICY ::] CLASSIFICATION [; TAG SET: VALUE, VALUE]... [; privacy mark: TEXT]
//
// for example "NATO :: SECRET; Releasable To: GBR, USA". A clearance names
// its highest classification (and so holds every one below it) or lists
// several explicitly: "UNCLASSIFIED, SECRET; Sensitive: CRYPTO".

const maxExpr = 4096

// ParseLabel reads a label expression; with no policy prefix it is under the governing policy.
func (s *Set) ParseLabel(expr string) (*Label, error) {
	p, classes, cats, mark, err := s.parseExpr(expr, true)
	if err != nil {
		return nil, err
	}
	if len(classes) != 1 {
		return nil, errors.New("a label has exactly one classification")
	}
	return p.NewLabel(classes[0], mark, cats)
}

// ParseClearance reads a clearance expression. A single classification
// expands to it and every classification below it in the hierarchy.
func (s *Set) ParseClearance(expr string) (*Clearance, error) {
	p, classes, cats, _, err := s.parseExpr(expr, false)
	if err != nil {
		return nil, err
	}
	if len(classes) == 1 {
		classes = p.UpTo(classes[0])
	}
	return p.NewClearance(classes, cats)
}

func (s *Set) parseExpr(expr string, label bool) (p *Policy, classes []int, cats []Category, mark string, err error) {
	if len(expr) > maxExpr {
		return nil, nil, nil, "", errors.New("expression too long")
	}
	if s == nil || len(s.Policies) == 0 {
		return nil, nil, nil, "", errors.New("no security policy is configured")
	}
	p = s.Governing
	if name, rest, ok := strings.Cut(expr, "::"); ok {
		var found bool
		if p, found = s.Policy(strings.TrimSpace(name)); !found {
			return nil, nil, nil, "", fmt.Errorf("unknown policy %q", strings.TrimSpace(name))
		}
		expr = rest
	}
	parts := strings.Split(expr, ";")
	for _, name := range strings.Split(parts[0], ",") {
		name = strings.TrimSpace(name)
		c, ok := p.ClassByName(name)
		if !ok {
			return nil, nil, nil, "", fmt.Errorf("policy %s has no classification %q", p.Name, name)
		}
		classes = append(classes, c.LACV)
	}
	for _, part := range parts[1:] {
		tag, vals, ok := strings.Cut(part, ":")
		if !ok {
			if strings.TrimSpace(part) == "" {
				continue
			}
			return nil, nil, nil, "", fmt.Errorf("%q: want \"tag set: value, value\"", strings.TrimSpace(part))
		}
		tag = strings.TrimSpace(tag)
		if label && strings.EqualFold(tag, "privacy mark") {
			mark = strings.TrimSpace(vals)
			continue
		}
		set, ok := p.TagSetByName(tag)
		if !ok {
			return nil, nil, nil, "", fmt.Errorf("policy %s has no tag set %q", p.Name, tag)
		}
		for _, v := range strings.Split(vals, ",") {
			v = strings.TrimSpace(v)
			lacv, ok := p.TagSets[set].value(v)
			if !ok {
				return nil, nil, nil, "", fmt.Errorf("tag set %q has no value %q", p.TagSets[set].Name, v)
			}
			cats = append(cats, Category{Set: set, Value: lacv})
		}
	}
	return p, classes, cats, mark, nil
}
