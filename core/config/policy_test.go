package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/core/label"
)

// TestExamplePolicy keeps the shipped example valid and meaningful.
func TestExamplePolicy(t *testing.T) {
	set, err := LoadPolicy("../../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	if set.Governing.Name != "NATO" || len(set.Governing.Catalog) != 5 {
		t.Fatalf("governing %s with %d catalog items", set.Governing.Name, len(set.Governing.Catalog))
	}
	c, err := set.ParseClearance("SECRET; Releasable To: GBR")
	if err != nil {
		t.Fatal(err)
	}
	l, err := set.ParseLabel("SECRET; Releasable To: GBR, USA")
	if err != nil {
		t.Fatal(err)
	}
	if !label.Decide(c, l) || label.Decide(set.Governing.DefaultClearance, l) {
		t.Fatal("example policy decides wrongly")
	}
}

func TestPolicyErrors(t *testing.T) {
	src := `governing = "NATO"
[[policy]]
name = "NATO"
id = "1.3.26.1.3.1"
default_label = "SECRET"
colour = "red"

  [[policy.classification]]
  name = "UNCLASSIFIED"
  value = 1

  [[policy.classification]]
  name = "SECRET"
  value = "four"

  [[policy.tagset]]
  name = "Releasable To"
  id = "1.2.3"
  type = "permissive"
  values = [{ name = "GBR", value = 1 }, { name = "GBR", value = 2 }]
`
	_, err := ParsePolicy("p.toml", []byte(src))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	got := err.Error()
	for _, want := range []string{
		"p.toml:6: policy[0].colour: unknown key",
		"p.toml:14: policy[0].classification[1].value: must be an integer",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	// Decoding problems come first; the model is checked once the file decodes.
	src = strings.Replace(strings.Replace(src, `colour = "red"`, "", 1), `"four"`, "4", 1)
	_, err = ParsePolicy("p.toml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "p.toml:20: policy[0].tagset[0].values[1]: value \"GBR\" (2) is defined twice") {
		t.Errorf("err = %v", err)
	}
}

func TestPolicyPath(t *testing.T) {
	if got := PolicyPath("/etc/aldis/aldis.toml", "policy.toml"); got != "/etc/aldis/policy.toml" {
		t.Errorf("relative: %s", got)
	}
	if got := PolicyPath("/etc/aldis/aldis.toml", "/srv/p.toml"); got != "/srv/p.toml" {
		t.Errorf("absolute: %s", got)
	}
	if _, err := LoadPolicy("/nonexistent/policy.toml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestCheckLabels(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "aldis.toml")
	src := `[s2s]
enabled = true

[[s2s.peer]]
domain = "partner.example"
clearance = "SECRET; Releasable To: GBR"

[[s2s.peer]]
domain = "other.example"
clearance = "SECRETISH"
label = "UNCLASSIFIED; Releasable To: ESP"

[[components.component]]
domain = "irc.localhost"
secret = "0123456789"
clearance = "TOP SECRET"
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	set, err := LoadPolicy("../../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	err = CheckLabels(path, cfg, set)
	if err == nil {
		t.Fatal("bad expressions accepted")
	}
	got := err.Error()
	for _, want := range []string{
		path + `:10: s2s.peer[1].clearance: policy NATO has no classification "SECRETISH"`,
		path + `:11: s2s.peer[1].label: tag set "Releasable To" has no value "ESP"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "peer[0]") || strings.Contains(got, "component[0]") {
		t.Errorf("valid expressions reported:\n%s", got)
	}
	if ps := cfg.Principals(); len(ps) != 3 || ps[0].Name != "peer:partner.example" || ps[2].Name != "peer:irc.localhost" {
		t.Errorf("Principals = %+v", ps)
	}
	_, err = Parse("x.toml", []byte("[[s2s.peer]]\ndomain = \"a.example\"\n[[s2s.peer]]\ndomain = \"a.example\"\n"))
	if err == nil || !strings.Contains(err.Error(), "x.toml:4: s2s.peer[1].domain") {
		t.Errorf("duplicate peer: %v", err)
	}
}
