// Package integration holds end-to-end tests: they build the real aldis
// binary, start it with a generated configuration and drive it with client
// software written by others (mellium.im/xmpp, slixmpp, go-sendxmpp).
//
// Run them with
//
//	go test -count=1 ./integration/
//
// ALDIS_TEST_BIN=/path/to/aldis runs them against a binary built elsewhere
// instead of building ./cmd/aldis.
//
// The slixmpp and go-sendxmpp tests need the Debian packages python3-slixmpp
// and go-sendxmpp; without them they are skipped, or fail when CI=true.
package integration
