package config

import (
	"testing"
	"time"
)

func TestMUCFederation(t *testing.T) {
	tests := []struct {
		name string
		src  string
		errs []string
		room string // FederatedRoom of the first entry
	}{
		{"joining side", "[server]\ndomain = \"ship.example\"\n[[muc.federate]]\nroom = \"ops\"\nwith = \"ops@conference.shore.example\"\nmode = \"primary-replica\"\nghost_grace = \"2h\"\n",
			nil, "ops@conference.ship.example"},
		{"joined side", "[muc]\nfederation_from = [\"conference.ship.example\"]\nfederation_ghost_grace = \"10m\"\n", nil, ""},
		{"bad entries", "[[muc.federate]]\nroom = \"ops\"\nwith = \"ops\"\nmode = \"master-slave\"\nghost_grace = \"72h\"\n[[muc.federate]]\nwith = \"x@conference.localhost\"\n", []string{
			`aldis.toml:3: muc.federate[0].with: "ops" must be a bare JID such as "alice@example.com"`,
			`aldis.toml:4: muc.federate[0].mode: "master-slave" is not one of primary-primary, primary-replica`,
			`aldis.toml:5: muc.federate[0].ghost_grace: must be between 0s and 48h`,
			`aldis.toml:6: muc.federate[1]: must be set: the local room's name`,
			`aldis.toml:7: muc.federate[1].with: "x@conference.localhost" is a room of this server: federate with another server's room`,
		}, ""},
		{"foreign room, twice", "[[muc.federate]]\nroom = \"a@conference.elsewhere\"\nwith = \"a@b.example\"\n[[muc.federate]]\nroom = \"b\"\nwith = \"a@b.example\"\n[[muc.federate]]\nroom = \"b\"\nwith = \"c@b.example\"\n", []string{
			`aldis.toml:2: muc.federate[0].room: "a@conference.elsewhere" is not a room of a chat service served here`,
			`aldis.toml:8: muc.federate[2].room: "b" federates already (earlier in muc.federate): a room joins one room`,
		}, ""},
		{"bad from", "[muc]\nfederation_from = [\"Ship\"]\n", []string{`aldis.toml:2: muc.federation_from[0]: "Ship" must be lowercase`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("aldis.toml", []byte(tc.src))
			if tc.errs != nil {
				assertErrors(t, err, tc.errs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.room != "" {
				f := c.MUC.Federate[0]
				if got := c.FederatedRoom(f); got != tc.room {
					t.Errorf("FederatedRoom = %q, want %q", got, tc.room)
				}
				if f.GhostGrace != 2*time.Hour || f.Mode != "primary-replica" {
					t.Errorf("decoded %+v", f)
				}
			}
		})
	}
}
