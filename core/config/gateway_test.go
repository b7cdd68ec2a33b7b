package config

import (
	"strings"
	"testing"
)

func TestGatewayProblems(t *testing.T) {
	c, err := Parse("gw.toml", []byte("[irc]\ndomain = \"irc.example.org\"\nmaps = [\"irc.toml\"]\n\n[gateway]\nserver = \"127.0.0.1:5347\"\nsecret = \"s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.GatewayProblems(); err != nil {
		t.Fatalf("complete gateway configuration: %v", err)
	}
	err = Default().GatewayProblems()
	if err == nil {
		t.Fatal("no problems with an empty [gateway]")
	}
	for _, key := range []string{"gateway.server", "gateway.secret", "irc.domain", "irc.maps"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%v does not name %s", err, key)
		}
	}
}
