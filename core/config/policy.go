package config

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aldis-im/aldis/core/label"
)

// LoadPolicy reads a security policy file (see core/label.FileSpec and the
// commented example policy.toml) and builds its policies. Problems are
// reported like configuration errors, as Errors with file, line and key.
func LoadPolicy(path string) (*label.Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading security policy: %w", err)
	}
	return ParsePolicy(path, data)
}

// ParsePolicy is LoadPolicy from bytes; name is used in error messages.
func ParsePolicy(name string, data []byte) (*label.Set, error) {
	raw, err := parseTOML(name, data)
	if err != nil {
		return nil, err
	}
	var spec label.FileSpec
	d := decoder{}
	d.table("", raw, &spec)
	if len(d.probs) > 0 {
		return nil, locate(name, data, d.probs)
	}
	set, errs := label.Build(spec)
	if len(errs) > 0 {
		probs := make([]problem, len(errs))
		for i, e := range errs {
			probs[i] = problem{keys: []string{e.Key}, msg: e.Msg}
		}
		return nil, locate(name, data, probs)
	}
	return set, nil
}

// PolicyPath resolves labels.policy_file relative to the configuration
// file's directory, so a configuration and its policy can move together.
func PolicyPath(configFile, policyFile string) string {
	if policyFile == "" || filepath.IsAbs(policyFile) || configFile == "" {
		return policyFile
	}
	return filepath.Join(filepath.Dir(configFile), policyFile)
}

// Principal is a non-user principal with its clearance and default label
// from the configuration: a remote server or an external component.
type Principal struct {
	Name             string // "peer:<domain>"
	Clearance, Label string // label expressions; empty: the policy's defaults
}

// Principals lists the peers and components the configuration gives
// clearances to, with the keys that set them (for error messages).
func (c Config) Principals() []Principal {
	var out []Principal
	for _, p := range c.S2S.Peers {
		out = append(out, Principal{Name: "peer:" + p.Domain, Clearance: p.Clearance, Label: p.Label})
	}
	for _, comp := range c.Components.Component {
		out = append(out, Principal{Name: "peer:" + comp.Domain, Clearance: comp.Clearance, Label: comp.Label})
	}
	// A link is the principal of every domain behind it: the router's
	// egress check refuses at enqueue what the link may not carry.
	for _, l := range c.Links {
		for _, d := range l.PeerDomains {
			out = append(out, Principal{Name: "peer:" + d, Clearance: l.Clearance, Label: l.Label})
		}
	}
	return out
}

// CheckLabels checks the label expressions of the configuration read from
// path against the policy set, reporting problems with their lines.
func CheckLabels(path string, c Config, set *label.Set) error {
	var probs []problem
	check := func(key, expr string, parse func(string) error) {
		if expr == "" {
			return
		}
		if err := parse(expr); err != nil {
			probs = append(probs, problem{keys: []string{key}, msg: err.Error()})
		}
	}
	clearance := func(e string) error { _, err := set.ParseClearance(e); return err }
	lab := func(e string) error { _, err := set.ParseLabel(e); return err }
	for i, p := range c.S2S.Peers {
		key := indexKey("s2s.peer", i)
		check(key+".clearance", p.Clearance, clearance)
		check(key+".label", p.Label, lab)
	}
	for i, comp := range c.Components.Component {
		key := indexKey("components.component", i)
		check(key+".clearance", comp.Clearance, clearance)
		check(key+".label", comp.Label, lab)
	}
	for i, l := range c.Links {
		key := indexKey("link", i)
		check(key+".clearance", l.Clearance, clearance)
		check(key+".label", l.Label, lab)
	}
	if len(probs) == 0 {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil || path == "" {
		errs := make(Errors, len(probs))
		for i, p := range probs {
			errs[i] = &Error{File: path, Key: p.keys[0], Msg: p.msg}
		}
		return errs
	}
	return locate(path, data, probs)
}
