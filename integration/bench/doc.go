// Package bench holds a side-by-side benchmark of Aldis, ejabberd and
// Prosody, driven by the project's own load generator
// (github.com/aldis-im/aldis/xmppcore/loadgen). It is not part of CI: it
// takes minutes, needs the Debian packages prosody and ejabberd, and its
// numbers only mean something on a quiet machine. Run it by hand:
//
//	ALDIS_BENCH=1 go test -run TestSideBySide -v -timeout 20m ./integration/bench/
//
// Environment:
//
//	ALDIS_BENCH=1             required; without it the test skips
//	ALDIS_BENCH_USERS=200     accounts and concurrent sessions per run
//	ALDIS_BENCH_RATE=5000     offered messages/s in the fixed-rate phase
//	ALDIS_BENCH_DURATION=10s  length of each message phase
//	ALDIS_BENCH_SERVERS=aldis,ejabberd,prosody   which servers, in this order
//	ALDIS_BENCH_MODES=starttls,plain             which runs: connection modes for 1:1 chat,
//	                          "muc" for multi-user chat and "irc" for the IRC gateway (neither in the
//	                          default; add them: starttls,plain,muc,irc)
//	ALDIS_BENCH_CPUS=1        pin the server under test to these CPUs (taskset -c); default: no pinning
//	ALDIS_BENCH_BIN=PATH      use this aldis binary instead of building ./cmd/aldis
//	ALDIS_BENCH_OUT=FILE      also write the markdown results table there
//
// Multi-user chat ("muc" in ALDIS_BENCH_MODES; each server's MUC service
// on conference.bench.test, see servers_test.go):
//
//	ALDIS_BENCH_ROOMS=10         rooms in the fan-out phases
//	ALDIS_BENCH_OCCUPANTS=20     occupants per room (one session each)
//	ALDIS_BENCH_MUC_RATE=600     offered room messages/s in the fixed phase (× occupants = deliveries/s)
//	ALDIS_BENCH_BIG_ROOM=1000    occupants of the big-room probe; 0 skips it
//	ALDIS_BENCH_BIG_ROOM_RATE=2  offered messages/s in the big room
//	ALDIS_BENCH_MUC_TLS=starttls connection mode of the MUC run: starttls or plain
//
// For example, the MUC comparison alone, server pinned to CPU 1:
//
//	ALDIS_BENCH=1 ALDIS_BENCH_MODES=muc ALDIS_BENCH_CPUS=1 taskset -c 0 \
//	    go test -run TestSideBySide -v -timeout 60m ./integration/bench/
//
// Aldis's row is skipped, not failed, when its build cannot start with a
// [muc] section or its MUC service does not answer.
//
// The IRC gateway ("irc" in ALDIS_BENCH_MODES) runs the scenario of
// `aldis bench --irc` (package irc/ircbench) for each server: 3 XMPP users
// in a room, 2 IRC users in the linked channel of one InspIRCd (fakelag
// off); Aldis with its built-in gateway, ejabberd and Prosody with Debian's
// Biboumi as a component; the CPU of the server, Biboumi and InspIRCd:
//
//	ALDIS_BENCH_IRC_LATENCY=300        messages each way, one at a time
//	ALDIS_BENCH_IRC_BURST=2000         messages each way in the throughput phase
//	ALDIS_BENCH_IRC_WINDOW=100         at most this many in flight there
//	ALDIS_BENCH_BIBOUMI_HISTORY=on,off Biboumi runs: with its default (every message recorded in its
//	                                   database for history), and without
//
// For example, the gateways alone, with ejabberd as Biboumi's server:
//
//	ALDIS_BENCH=1 ALDIS_BENCH_MODES=irc ALDIS_BENCH_SERVERS=aldis,ejabberd ALDIS_BENCH_USERS=3 \
//	    go test -run TestSideBySide -v -timeout 20m ./integration/bench/
//
// On a two-core machine, a per-core comparison (fair to single-threaded
// Prosody, and free of generator/server contention) gives the server one
// core and the generator the other:
//
//	ALDIS_BENCH=1 ALDIS_BENCH_CPUS=1 taskset -c 0 go test -run TestSideBySide -v -timeout 20m ./integration/bench/
//
// Each server is started in turn, alone, on loopback ports of its own, with
// a configuration written into a temporary directory; see servers_test.go
// for what each configuration sets and why.
package bench
