package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aldis-im/aldis/bridges/ircmuc"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
)

// ircGateway is the running IRC gateway: its bridge maps and the bridge.
type ircGateway struct {
	maps   *mapping.Store
	bridge *ircmuc.Bridge
	log    *slog.Logger
}

// startIRC starts the IRC gateway on its own domain when [irc] maps are set;
// nil otherwise.
func startIRC(cfg config.Config, path string, log *slog.Logger, m *obs.Metrics, rt *router.Router, labels *seclabel.Guard) (*ircGateway, error) {
	if len(cfg.IRC.Maps) == 0 {
		return nil, nil
	}
	log = log.With("component", "irc")
	maps, err := mapping.Open(cfg.MapPaths(path)...)
	if err != nil {
		return nil, fmt.Errorf("irc.maps: %w", err)
	}
	b, err := ircmuc.New(ircmuc.Config{
		Domain: cfg.IRCDomain(), XMPP: rt, Map: maps.Map(), Labels: labels,
		Linger: cfg.IRC.Linger, RejoinInterval: cfg.IRC.RejoinInterval, OutageGrace: cfg.IRC.OutageGrace, Log: log, Metrics: m,
	})
	if err != nil {
		return nil, err
	}
	if err := rt.AddService(b.Domain(), b); err != nil {
		return nil, fmt.Errorf("irc.domain: %w", err)
	}
	b.Start()
	return &ircGateway{maps: maps, bridge: b, log: log}, nil
}

// reload re-reads the bridge maps and applies what changed (SIGHUP); a map
// with errors is refused and the running one kept.
func (g *ircGateway) reload() {
	if g == nil {
		return
	}
	ch, err := g.maps.Reload()
	if err != nil {
		g.log.Error("reload: IRC bridge maps have errors; keeping the running ones", "err", err)
		return
	}
	if ch.Empty() {
		return
	}
	if err := g.bridge.Apply(g.maps.Map(), ch); err != nil {
		g.log.Error("reload: IRC bridge maps", "err", err)
		return
	}
	g.log.Info("reloaded IRC bridge maps", "added", len(ch.Added), "removed", len(ch.Removed), "changed", len(ch.Changed), "networks", ch.Networks)
}

// shutdown leaves the rooms and quits IRC.
func (g *ircGateway) shutdown(ctx context.Context) {
	if g == nil {
		return
	}
	if err := g.bridge.Close(ctx); err != nil {
		g.log.Warn("IRC gateway did not close in time", "err", err)
	}
}
