package obs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Timeouts of the admin HTTP server. It only serves small responses to scrapers and probes,
// so slow or idle clients are cut off early.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 60 * time.Second
	adminShutdownTimeout   = 5 * time.Second
)

// NewAdminHandler serves the admin endpoints:
//
//   - /metrics: m in the Prometheus text format, followed by the Go runtime and process metrics;
//   - /healthz: 200 "ok" while health returns nil, 503 with the error text otherwise.
//
// A nil health always reports healthy.
func NewAdminHandler(m *Metrics, health func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintln(w, err)
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// ServeAdmin listens on addr and serves h in the background until ctx is done, then shuts the
// server down gracefully. It returns the bound address, which tells the caller the port when addr
// asks for port 0. A nil log discards the server's messages.
func ServeAdmin(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if addr == "" {
		return nil, errors.New("admin server: empty listen address (an empty admin.listen means disabled; don't call ServeAdmin)")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin server: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	bound := ln.Addr()
	go func() {
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "addr", bound.String(), "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		// ctx is already done, so the shutdown deadline needs a fresh context.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("admin server shutdown", "addr", bound.String(), "err", err)
			_ = srv.Close()
		}
		log.Info("admin server stopped", "addr", bound.String())
	}()
	log.Info("admin server listening", "addr", bound.String())
	return bound, nil
}
