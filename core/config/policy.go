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
