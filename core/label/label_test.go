package label

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// testSpec is the NATO-like policy of the worked cases in PROTOCOLS.md §1.10,
// plus a second policy "UK" with an equivalence from NATO.
func testSpec() FileSpec {
	return FileSpec{
		Policies: []PolicySpec{{
			Name: "NATO", ID: "1.3.26.1.3.1",
			DefaultLabel: "UNCLASSIFIED", DefaultClearance: "UNCLASSIFIED",
			Classifications: []ClassSpec{
				{Name: "UNMARKED", Value: 0, Hierarchy: 1},
				{Name: "UNCLASSIFIED", Value: 1, Hierarchy: 2},
				{Name: "RESTRICTED", Value: 2, Hierarchy: 3},
				{Name: "CONFIDENTIAL", Value: 3, Hierarchy: 4},
				{Name: "SECRET", Value: 4, Hierarchy: 5, BG: "red"},
				{Name: "TOP SECRET", Value: 5, Hierarchy: 6},
			},
			TagSets: []TagSetSpec{
				{Name: "Sensitive", ID: "1.3.26.1.3.1.1", Type: "restrictive", Values: []ValueSpec{{"CRYPTO", 1}, {"ATOMAL", 2}}},
				{Name: "Releasable To", ID: "1.3.26.1.3.1.2", Type: "permissive", Enumerated: true, Values: []ValueSpec{{"GBR", 1}, {"USA", 2}, {"FRA", 3}}},
				{Name: "Administrative", ID: "1.3.26.1.3.1.3", Type: "informative", Values: []ValueSpec{{"STAFF", 1}}},
			},
			Catalog: []CatalogSpec{
				{Selector: "SECRET", Label: "SECRET"},
				{Selector: "UNCLASSIFIED", Label: "UNCLASSIFIED", Default: true},
			},
		}, {
			Name: "UK", ID: "2.16.826.0.1.1",
			Classifications: []ClassSpec{{Name: "OFFICIAL", Value: 1}, {Name: "UK SECRET", Value: 4}},
			TagSets:         []TagSetSpec{{Name: "Eyes", ID: "2.16.826.0.1.1.1", Type: "permissive", Values: []ValueSpec{{"UK", 1}}}},
		}},
		Equivalences: []EquivalenceSpec{{From: "NATO", To: "UK", Map: []MapSpec{
			{From: "UNCLASSIFIED", To: "OFFICIAL"}, {From: "SECRET", To: "UK SECRET"},
			{From: "Releasable To: GBR", To: "Eyes: UK"},
		}}},
	}
}

func testSet(t testing.TB) *Set {
	t.Helper()
	s, errs := Build(testSpec())
	if errs != nil {
		t.Fatalf("Build: %v", errs)
	}
	return s
}

func mustLabel(t testing.TB, s *Set, expr string) *Label {
	t.Helper()
	l, err := s.ParseLabel(expr)
	if err != nil {
		t.Fatalf("ParseLabel(%q): %v", expr, err)
	}
	return l
}

func mustClearance(t testing.TB, s *Set, expr string) *Clearance {
	t.Helper()
	c, err := s.ParseClearance(expr)
	if err != nil {
		t.Fatalf("ParseClearance(%q): %v", expr, err)
	}
	return c
}

// TestDecideTruthTable is the table of PROTOCOLS.md §1.10, row for row.
func TestDecideTruthTable(t *testing.T) {
	s := testSet(t)
	cases := []struct {
		name      string
		clearance string // "" = nil clearance
		label     string // "" = nil label
		want      bool
	}{
		{"lower class", "SECRET", "CONFIDENTIAL", true},
		{"higher class", "CONFIDENTIAL", "SECRET", false},
		{"restrictive held", "SECRET; Sensitive: CRYPTO", "SECRET; Sensitive: CRYPTO", true},
		{"restrictive needs all", "SECRET; Sensitive: CRYPTO", "SECRET; Sensitive: CRYPTO, ATOMAL", false},
		{"one permissive value held", "SECRET; Releasable To: GBR", "SECRET; Releasable To: GBR, USA", true},
		{"no permissive value held", "SECRET; Releasable To: FRA", "SECRET; Releasable To: GBR, USA", false},
		{"permissive set, nothing held", "SECRET", "SECRET; Releasable To: GBR", false},
		{"informative ignored", "SECRET", "SECRET; Administrative: STAFF", true},
		{"nil clearance", "", "UNCLASSIFIED", false},
		{"nil label", "SECRET", "", false},
		{"policy mismatch", "UK :: UK SECRET", "SECRET", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cl *Clearance
			var l *Label
			if c.clearance != "" {
				cl = mustClearance(t, s, c.clearance)
			}
			if c.label != "" {
				l = mustLabel(t, s, c.label)
			}
			if got := Decide(cl, l); got != c.want {
				t.Fatalf("Decide(%s, %s) = %v, want %v", cl, l, got, c.want)
			}
		})
	}
}

func TestHierarchicalClearance(t *testing.T) {
	s := testSet(t)
	c := mustClearance(t, s, "SECRET")
	got := c.Classes.Values()
	want := []int{1, 2, 3, 4} // unmarked only when listed
	if len(got) != len(want) {
		t.Fatalf("classes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("classes %v, want %v", got, want)
		}
	}
	e := mustClearance(t, s, "UNMARKED, SECRET")
	if !e.Classes.Has(0) || e.Classes.Has(3) || !e.Classes.Has(4) {
		t.Fatalf("explicit list: %v", e.Classes.Values())
	}
}

func TestExpressionsRoundTrip(t *testing.T) {
	s := testSet(t)
	for _, expr := range []string{
		"SECRET", "NATO :: SECRET; Sensitive: ATOMAL, CRYPTO; Releasable To: GBR; privacy mark: For ops",
		"UK :: OFFICIAL; Eyes: UK",
	} {
		l := mustLabel(t, s, expr)
		back := mustLabel(t, s, l.String())
		if !Dominates(l, back) || !Dominates(back, l) || back.PrivacyMark != l.PrivacyMark {
			t.Errorf("%q → %q does not read back equal", expr, l.String())
		}
	}
	c := mustClearance(t, s, "SECRET; Releasable To: GBR, USA")
	back := mustClearance(t, s, c.String())
	if back.Classes != c.Classes || len(back.Cats) != len(c.Cats) {
		t.Errorf("clearance %q reads back as %q", c, back)
	}
}

func TestExpressionErrors(t *testing.T) {
	s := testSet(t)
	for expr, want := range map[string]string{
		"SECRETIVE":                    `no classification "SECRETIVE"`,
		"NOPE :: SECRET":               `unknown policy "NOPE"`,
		"SECRET; Colour: red":          `no tag set "Colour"`,
		"SECRET; Releasable To: ESP":   `no value "ESP"`,
		"SECRET, CONFIDENTIAL":         "exactly one classification",
		"SECRET; loose words":          "want",
		strings.Repeat("A", maxExpr+1): "too long",
	} {
		if _, err := s.ParseLabel(expr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLabel(%.40q) = %v, want error containing %q", expr, err, want)
		}
	}
	var none *Set
	if _, err := none.ParseClearance("SECRET"); err == nil {
		t.Error("a nil set parsed a clearance")
	}
}

func TestTranslate(t *testing.T) {
	s := testSet(t)
	uk, _ := s.Policy("UK")
	l := mustLabel(t, s, "SECRET; Releasable To: GBR; Administrative: STAFF")
	got, ok := s.Translate(l, uk)
	if !ok || got.String() != "UK :: UK SECRET; Eyes: UK" {
		t.Fatalf("Translate = %v %v", got, ok)
	}
	if _, ok := s.Translate(mustLabel(t, s, "CONFIDENTIAL"), uk); ok {
		t.Error("an unmapped classification was translated")
	}
	if _, ok := s.Translate(mustLabel(t, s, "SECRET; Releasable To: USA"), uk); ok {
		t.Error("an unmapped permissive category was translated")
	}
	nato, _ := s.Policy("NATO")
	if _, ok := s.Translate(got, nato); ok {
		t.Error("translated backwards without an equivalence")
	}
}

func TestBuildErrors(t *testing.T) {
	spec := testSpec()
	p := &spec.Policies[0]
	p.ID = "1.3.x"
	p.Classifications[1].FG = "mauve"
	p.Classifications[2].Value = 1
	p.TagSets[0].Type = "secretive"
	p.Catalog[0].Default = true
	p.DefaultLabel = "SECRET; Nope: X"
	spec.Governing = "FR"
	spec.Equivalences[0].Map[0].To = "SECRET"
	_, errs := Build(spec)
	want := []string{
		"policy[0].id", "policy[0].classification[1].fg", "policy[0].classification[2].value",
		"policy[0].tagset[0].type", "policy[0].catalog[1].default", "policy[0].default_label",
		"governing", "equivalence[0].map[0].to",
	}
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Key] = true
	}
	for _, k := range want {
		if !got[k] {
			t.Errorf("no error for %s; got %v", k, errs)
		}
	}
	if _, errs := Build(FileSpec{}); len(errs) != 1 || errs[0].Key != "policy" {
		t.Errorf("empty file: %v", errs)
	}
}

// randomLabel draws a label of the test policy.
func randomLabel(r *rand.Rand, p *Policy) *Label {
	classes := []int{1, 2, 3, 4, 5}
	var cats []Category
	for set, ts := range p.TagSets {
		for _, v := range ts.Values {
			if r.IntN(3) == 0 {
				cats = append(cats, Category{Set: set, Value: v.LACV})
			}
		}
	}
	l, _ := p.NewLabel(classes[r.IntN(len(classes))], "", cats)
	return l
}

// TestDominanceMonotonic is the property of §1.10: for a hierarchically
// configured clearance, if L1 ⪰ L2 and the clearance grants L1, it grants L2.
func TestDominanceMonotonic(t *testing.T) {
	s := testSet(t)
	p := s.Governing
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for range 200000 {
		l1, l2 := randomLabel(r, p), randomLabel(r, p)
		if !Dominates(l1, l2) {
			continue
		}
		top := []int{1, 2, 3, 4, 5}[r.IntN(5)]
		var cats []Category
		for set, ts := range p.TagSets {
			for _, v := range ts.Values {
				if r.IntN(2) == 0 {
					cats = append(cats, Category{Set: set, Value: v.LACV})
				}
			}
		}
		c, err := p.NewClearance(p.UpTo(top), cats)
		if err != nil {
			t.Fatal(err)
		}
		if Decide(c, l1) {
			checked++
			if !Decide(c, l2) {
				t.Fatalf("%s ⪰ %s and %s grants the first but not the second", l1, l2, c)
			}
		}
		if !Dominates(l1, l1) {
			t.Fatalf("dominance is not reflexive for %s", l1)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d interesting cases", checked)
	}
}

func BenchmarkDecide(b *testing.B) {
	s := testSet(b)
	c := mustClearance(b, s, "SECRET; Sensitive: CRYPTO; Releasable To: GBR")
	l := mustLabel(b, s, "SECRET; Sensitive: CRYPTO; Releasable To: GBR, USA; Administrative: STAFF")
	b.ReportAllocs()
	for b.Loop() {
		if !Decide(c, l) {
			b.Fatal("denied")
		}
	}
}
