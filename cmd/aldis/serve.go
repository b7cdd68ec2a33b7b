package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/c2s"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/mam"
	"github.com/aldis-im/aldis/xmppcore/muc"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printConfigErr(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, *path, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "aldis serve:", err)
		return 1
	}
	return 0
}

func printConfigErr(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

// newLogger builds the logger with a level that SIGHUP can change.
func newLogger(w io.Writer, cfg config.Config) (*slog.Logger, *slog.LevelVar, error) {
	// obs validates the level and format the same way the config does.
	if _, err := obs.NewLogger(io.Discard, cfg.Log.Level, cfg.Log.Format); err != nil {
		return nil, nil, err
	}
	lv := new(slog.LevelVar)
	lv.Set(parseLevel(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv, nil
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

func serve(ctx context.Context, cfg config.Config, path string, stdout, stderr io.Writer) error {
	log, level, err := newLogger(stderr, cfg)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, cfg.StoragePath())
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	src, err := openCertificates(cfg, log)
	if err != nil {
		return err
	}
	m := obs.NewMetrics()
	// The mail maps first: their mail domains are label principals.
	mailMap, err := loadMailMap(cfg, path)
	if err != nil {
		return err
	}
	labels, auditLog, err := openLabels(cfg, path, st, log, m, mailPrincipals(cfg, mailMap))
	if err != nil {
		return err
	}
	if auditLog != nil {
		defer auditLog.Close()
	}
	acc := accounts.New(st, cfg.Auth.SCRAMIterations)
	var archive router.Archive
	var roomArchive muc.Archive // the same archiver, for the archives of rooms
	if cfg.Archive.Enabled {
		arch := mam.New(st, mam.Config{Retention: cfg.Archive.Retention, MaxPage: cfg.Archive.MaxPage, Log: log, Metrics: m, Labels: labels})
		// Deferred before the router's Close, so it runs after it: the
		// router records nothing more, then the archive writes what is queued.
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
			defer cancel()
			if err := arch.Close(cctx); err != nil {
				log.Warn("message archive did not flush in time", "err", err)
			}
		}()
		archive, roomArchive = arch, arch
	}
	rt, err := router.New(router.Config{
		Domain: cfg.Server.Domain, Domains: cfg.Server.Domains, Store: st, Accounts: acc, Log: log, Metrics: m,
		OfflineMax: cfg.Offline.MaxPerUser, Registration: cfg.Auth.Registration, Version: version,
		Archive: archive, Labels: labels,
	})
	if err != nil {
		return err
	}
	defer rt.Close(cfg.Server.ShutdownTimeout)
	var rooms []*muc.Service // one chat service per domain served
	if cfg.MUC.Enabled {
		admins := make([]jid.JID, 0, len(cfg.MUC.Admins))
		for _, a := range cfg.MUC.Admins {
			j, err := jid.Parse(a)
			if err != nil {
				return fmt.Errorf("muc.admins: %q: %w", a, err)
			}
			admins = append(admins, j)
		}
		feds, err := mucFederations(cfg)
		if err != nil {
			return err
		}
		for _, host := range cfg.Domains() {
			var observers []string
			if len(cfg.IRC.Maps) > 0 {
				observers = append(observers, cfg.IRCDomain())
			}
			svc, err := muc.New(ctx, muc.Config{
				Domain: cfg.MUCDomainOf(host), ServerDomain: host, Router: rt, Store: st, Log: log, Metrics: m,
				MaxRooms: cfg.MUC.MaxRooms, MaxOccupants: cfg.MUC.MaxOccupants, History: cfg.MUC.History,
				AdminsOnly: cfg.MUC.Creators == "admins", Admins: admins, Archive: roomArchive, Labels: labels,
				Observers: observers,
				Federate:  feds[cfg.MUCDomainOf(host)], FederationFrom: cfg.MUC.FederationFrom,
				FederationGrace: cfg.MUC.FederationGrace, LinkQueued: linkDomains(cfg),
			})
			if err != nil {
				return fmt.Errorf("chat service of %s: %w", host, err)
			}
			if err := rt.AddService(cfg.MUCDomainOf(host), svc); err != nil {
				return err
			}
			// Before the router and the store close; a no-op after the shutdown below.
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
				defer cancel()
				_ = svc.Close(cctx)
			}()
			rooms = append(rooms, svc)
		}
	}
	// The IRC gateway, a service on its own domain, before clients can bind.
	gw, err := startIRC(cfg, path, log, m, rt, labels)
	if err != nil {
		return err
	}
	defer func() {
		gctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
		defer cancel()
		gw.shutdown(gctx)
	}()
	// Federation and components, before clients can bind (startPeers).
	peers, err := startPeers(cfg, log, m, rt, src)
	if peers != nil {
		defer func() {
			pctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
			defer cancel()
			peers.shutdown(pctx)
		}()
	}
	if err != nil {
		return err
	}
	// Constrained links, for their domains instead of s2s (startLinks).
	links, err := startLinks(cfg, log, m, st, rt, labels, rooms, src)
	if err != nil {
		return err
	}
	// After the mail relay's shutdown (deferred later, so run earlier):
	// mail in flight between them is committed to one queue or the other.
	defer func() {
		lctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
		defer cancel()
		links.shutdown(lctx)
	}()
	uploads, err := startUpload(cfg, log, src, rt)
	if err != nil {
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
		defer cancel()
		uploads.shutdown(uctx)
	}()
	mailSvc, err := startMail(cfg, log, st, src, rt, labels, mailMap, uploads.files(), links)
	if err != nil {
		return err
	}
	// Before the store closes: deliveries record their outcome.
	defer func() {
		mctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
		defer cancel()
		mailSvc.shutdown(mctx)
	}()
	srv := c2s.New(c2s.Config{
		Domain: cfg.Server.Domain, Domains: cfg.Server.Domains, TLS: src.TLSConfig("xmpp-client"),
		RequireTLS: cfg.C2S.RequireTLS, AllowPlainWithoutTLS: cfg.C2S.AllowPlainWithoutTLS,
		MaxStanza: cfg.C2S.MaxStanzaSize, HandshakeTimeout: cfg.C2S.HandshakeTimeout,
		IdleTimeout: cfg.C2S.IdleTimeout, SendQueue: cfg.C2S.SendQueue, ResumeTimeout: resumeTimeout(cfg.C2S.ResumeTimeout),
		RateBytes: cfg.C2S.RateBytes, RateBurst: cfg.C2S.RateBurst,
		Registration: cfg.Auth.Registration, Router: rt, Accounts: acc,
		Limiter: c2s.NewAuthLimiter(cfg.Auth.MaxFailuresPerIP, cfg.Auth.MaxFailuresPerAccount, cfg.Auth.FailureWindow),
		Log:     log, Metrics: m,
	})

	var lns []string
	listen := func(addrs []string, direct bool, kind string) error {
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				// A host without IPv6 loopback should still start on IPv4.
				if strings.HasPrefix(a, "[::1]") && len(addrs) > 1 {
					log.Warn("listener unavailable", "addr", a, "err", err)
					continue
				}
				return fmt.Errorf("listen on %s: %w", a, err)
			}
			lns = append(lns, fmt.Sprintf("%s (%s)", ln.Addr(), kind))
			go func() {
				if err := srv.Serve(ln, direct); err != nil {
					log.Error("c2s listener stopped", "addr", a, "err", err)
				}
			}()
		}
		return nil
	}
	if err := listen(cfg.C2S.Listen, false, "c2s, STARTTLS"); err != nil {
		srv.Shutdown(ctx)
		return err
	}
	if err := listen(cfg.C2S.ListenTLS, true, "c2s, direct TLS"); err != nil {
		srv.Shutdown(ctx)
		return err
	}
	lns = append(lns, peers.lns...)
	if mailSvc != nil {
		lns = append(lns, mailSvc.lns...)
	}
	if uploads != nil {
		lns = append(lns, uploads.lns...)
	}
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	if cfg.Admin.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/", obs.NewAdminHandler(m, func() error { return nil }))
		// Profiles for operators diagnosing a live server; the admin
		// listener is loopback-only unless configured otherwise.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		a, err := obs.ServeAdmin(adminCtx, cfg.Admin.Listen, mux, log)
		if err != nil {
			srv.Shutdown(ctx)
			return fmt.Errorf("admin listener: %w", err)
		}
		lns = append(lns, fmt.Sprintf("http://%s/metrics and /healthz (admin)", a))
	}

	fmt.Fprintf(stdout, "Aldis %s serving %s (data in %s)\n", version, strings.Join(cfg.Domains(), ", "), cfg.Server.DataDir)
	for _, l := range lns {
		fmt.Fprintf(stdout, "  listening on %s\n", l)
	}
	cfgArg := ""
	if path != "" {
		cfgArg = " --config " + path
	}
	fmt.Fprintf(stdout, "Add a user with: aldis user add%s alice@%s\n", cfgArg, cfg.Server.Domain)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			reload(log, level, src, rt, labels, path, mailSvc)
			gw.reload()
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
			gw.shutdown(sctx) // IRC users leave the rooms first
			if len(rooms) > 0 {
				// While sessions can still hear it: occupants get status 332.
				for _, svc := range rooms {
					if err := svc.Close(sctx); err != nil {
						log.Warn("chat rooms did not close in time", "err", err)
					}
				}
				// Let the routed 332 presences reach the session queues.
				rt.Drain(time.Second)
			}
			err := srv.Shutdown(sctx)
			cancel()
			if err != nil {
				log.Warn("shutdown timed out; remaining connections closed", "err", err)
			}
			return nil
		}
	}
}

// resumeTimeout maps the configured window to c2s's convention, where 0
// means its default and a negative value disables resumption.
func resumeTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// reload applies what can change without a restart: the log level, the
// offline quota, whether accounts may remove themselves, and the
// certificate files. Other settings need a restart, which the log says.
func reload(log *slog.Logger, level *slog.LevelVar, src *certs.Hosts, rt *router.Router, labels *seclabel.Guard, path string, mailSvc *mailService) {
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			log.Error("reload: configuration has errors; keeping the running one", "err", err)
			return
		}
		level.Set(parseLevel(cfg.Log.Level))
		rt.SetPolicy(cfg.Offline.MaxPerUser, cfg.Auth.Registration)
		mailMap := mailSvc.reloadMap(log, cfg, path, labels)
		reloadLabels(log, labels, cfg, path, mailPrincipals(cfg, mailMap))
		mailSvc.setMap(mailMap)
	}
	if err := src.Reload(); err != nil {
		log.Error("reload: certificate", "err", err)
		return
	}
	log.Info("reloaded log level, offline quota, account removal, security policy, mail maps and certificates (other settings need a restart)")
}

// openCertificates loads the certificate of every domain served: the
// [[tls.host]] ones, and tls.cert_file (or a self-signed certificate for
// every domain, generated on first run) for the rest.
func openCertificates(cfg config.Config, log *slog.Logger) (*certs.Hosts, error) {
	def, generated, err := certs.Open(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Server.DataDir, cfg.Domains())
	if err != nil {
		return nil, err
	}
	if generated {
		log.Info("generated a self-signed certificate", "file", def.CertFile())
	}
	by := map[string]*certs.Source{}
	for _, h := range cfg.TLS.Hosts {
		src, _, err := certs.Open(h.CertFile, h.KeyFile, cfg.Server.DataDir, []string{h.Domain})
		if err != nil {
			return nil, fmt.Errorf("tls.host %s: %w", h.Domain, err)
		}
		by[h.Domain] = src
	}
	return certs.NewHosts(def, by), nil
}

// mucFederations sorts the [[muc.federate]] rooms by the chat service they are on (XEP-0289).
// The link relay's state callback reaches them through each service's PeerDown and PeerUp.
func mucFederations(cfg config.Config) (map[string][]muc.Federation, error) {
	out := map[string][]muc.Federation{}
	for i, f := range cfg.MUC.Federate {
		room, err := jid.Parse(cfg.FederatedRoom(f))
		if err != nil {
			return nil, fmt.Errorf("muc.federate[%d].room: %w", i, err)
		}
		with, err := jid.Parse(f.With)
		if err != nil {
			return nil, fmt.Errorf("muc.federate[%d].with: %w", i, err)
		}
		mode, ok := muc.ParseFedMode(f.Mode)
		if !ok {
			return nil, fmt.Errorf("muc.federate[%d].mode: %q is not a federation mode", i, f.Mode)
		}
		out[room.Domain()] = append(out[room.Domain()], muc.Federation{Room: room.Local(), With: with.Bare(), Mode: mode, GhostGrace: f.GhostGrace})
	}
	return out, nil
}
