package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aldis-im/aldis/bridges/ircmuc"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/compclient"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// cmdGateway runs a gateway on its own, attached to another XMPP server as
// an XEP-0114 component: `aldis gateway irc --config FILE`.
func cmdGateway(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "irc" {
		fmt.Fprintln(stderr, "usage: aldis gateway irc --config FILE")
		return 2
	}
	fs := flag.NewFlagSet("gateway irc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file: [gateway] server and secret, [irc] domain and maps")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "aldis gateway irc: --config is required")
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil {
		err = cfg.GatewayProblems()
	}
	if err != nil {
		printConfigErr(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gatewayIRC(ctx, cfg, *path, stderr); err != nil {
		fmt.Fprintln(stderr, "aldis gateway irc:", err)
		return 1
	}
	return 0
}

// gatewayIRC runs the IRC bridge over a component connection until ctx ends.
func gatewayIRC(ctx context.Context, cfg config.Config, path string, stderr io.Writer) error {
	log, _, err := newLogger(stderr, cfg)
	if err != nil {
		return err
	}
	log = log.With("component", "irc")
	maps, err := mapping.Open(cfg.MapPaths(path)...)
	if err != nil {
		return fmt.Errorf("irc.maps: %w", err)
	}
	// The bridge is built after the connection that feeds it, and reached through this.
	var bridge atomic.Pointer[ircmuc.Bridge]
	var connects atomic.Int64
	cc := compclient.New(compclient.Config{
		Addr: cfg.Gateway.Server, Domain: cfg.IRC.Domain, Secret: cfg.Gateway.Secret, Log: log,
		Handle: func(st *wire.Element, from, to jid.JID) {
			if b := bridge.Load(); b != nil {
				b.Route(st, from, to)
			}
		},
		OnConnect: func() {
			// The first connection sends the joins queued at start; later ones join again.
			if connects.Add(1) > 1 {
				if b := bridge.Load(); b != nil {
					b.Rejoin()
				}
			}
		},
	})
	b, err := ircmuc.New(ircmuc.Config{
		Domain: cfg.IRC.Domain, XMPP: cc, Map: maps.Map(),
		Linger: cfg.IRC.Linger, RejoinInterval: cfg.IRC.RejoinInterval, OutageGrace: cfg.IRC.OutageGrace, Log: log, Metrics: obs.NewMetrics(),
	})
	if err != nil {
		return err
	}
	bridge.Store(b)
	ccCtx, ccStop := context.WithCancel(context.Background())
	ccDone := make(chan error, 1)
	go func() { ccDone <- cc.Run(ccCtx) }()
	b.Start()
	log.Info("IRC gateway running as a component", "domain", cfg.IRC.Domain, "server", cfg.Gateway.Server)
	gw := &ircGateway{maps: maps, bridge: b, log: log}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			gw.reload()
		case runErr = <-ccDone:
			break loop // the server refused the secret
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	gw.shutdown(sctx)
	// Let the connection write the bridge's last presences.
	for cc.Queued() > 0 && sctx.Err() == nil && runErr == nil {
		time.Sleep(20 * time.Millisecond)
	}
	ccStop()
	if runErr == nil {
		runErr = <-ccDone
	}
	return runErr
}
