package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
)

// clearanceTTL is how long a user's clearance is cached: a change made with
// `aldis user clearance` on a running server applies within it.
const clearanceTTL = 10 * time.Second

// loadPolicy reads the security policy the configuration names, and checks
// the clearances the configuration gives against it; nil when labels are off.
func loadPolicy(cfg config.Config, cfgPath string) (*label.Set, error) {
	if cfg.Labels.PolicyFile == "" {
		return nil, nil
	}
	set, err := config.LoadPolicy(config.PolicyPath(cfgPath, cfg.Labels.PolicyFile))
	if err != nil {
		return nil, err
	}
	if err := config.CheckLabels(cfgPath, cfg, set); err != nil {
		return nil, err
	}
	return set, nil
}

// openLabels builds the label guard of a server, or nil when labels are
// off. The returned closer closes the audit log file.
// extra are principals from the bridge maps.
func openLabels(cfg config.Config, cfgPath string, st identity.Store, log *slog.Logger, m *obs.Metrics, extra map[string]identity.Spec) (*seclabel.Guard, io.Closer, error) {
	set, err := loadPolicy(cfg, cfgPath)
	if err != nil || set == nil {
		return nil, nil, err
	}
	audit := log.With("log", "audit")
	var closer io.Closer
	if cfg.Labels.AuditLog != "" {
		f, err := os.OpenFile(config.PolicyPath(cfgPath, cfg.Labels.AuditLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open audit log: %w", err)
		}
		audit, closer = slog.New(slog.NewJSONHandler(f, nil)), f
	}
	mode := seclabel.Enforce
	if cfg.Labels.Mode == "warn" {
		mode = seclabel.Warn
	}
	dir := identity.New(set, st, log, clearanceTTL)
	if err := dir.Replace(set, principals(cfg, extra)); err != nil {
		return nil, nil, err
	}
	g := seclabel.New(seclabel.Config{
		Directory: dir,
		Local:     cfg.Domains(), Mode: mode, Audit: audit, Metrics: m,
	})
	log.Info("security labels on", "policy", set.Governing.Name, "mode", cfg.Labels.Mode)
	return g, closer, nil
}

// principals are the configured peers and components with their label
// expressions, as the directory registers them, and extra (the mail
// domains of the mail maps).
func principals(cfg config.Config, extra map[string]identity.Spec) map[string]identity.Spec {
	out := map[string]identity.Spec{}
	for k, v := range extra {
		out[k] = v
	}
	for _, p := range cfg.Principals() {
		if p.Clearance != "" || p.Label != "" {
			out[p.Name] = identity.Spec{Clearance: p.Clearance, Label: p.Label}
		}
	}
	return out
}

// reloadLabels applies a changed policy file and changed peer clearances
// to a running server. Turning labels on or off needs a restart.
func reloadLabels(log *slog.Logger, g *seclabel.Guard, cfg config.Config, cfgPath string, extra map[string]identity.Spec) {
	set, err := loadPolicy(cfg, cfgPath)
	switch {
	case err != nil:
		log.Error("reload: security policy has errors; keeping the running one", "err", err)
	case (set == nil) != (g == nil):
		log.Warn("reload: turning security labels on or off needs a restart")
	case set == nil:
	default:
		if err := g.Reload(set, principals(cfg, extra)); err != nil {
			log.Error("reload: security policy not applied", "err", err)
			return
		}
		log.Info("reloaded the security policy", "policy", set.Governing.Name)
	}
}
