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
func openLabels(cfg config.Config, cfgPath string, st identity.Store, log *slog.Logger, m *obs.Metrics) (*seclabel.Guard, io.Closer, error) {
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
	for _, p := range cfg.Principals() {
		if p.Clearance == "" && p.Label == "" {
			continue
		}
		if err := dir.Register(p.Name, p.Clearance, p.Label); err != nil {
			return nil, nil, err // loadPolicy checked them: not expected
		}
	}
	g := seclabel.New(seclabel.Config{
		Directory: dir,
		Local:     cfg.Domains(), Mode: mode, Audit: audit, Metrics: m,
	})
	log.Info("security labels on", "policy", set.Governing.Name, "mode", cfg.Labels.Mode)
	return g, closer, nil
}
