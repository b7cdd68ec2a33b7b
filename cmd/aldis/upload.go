package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/aldis-im/aldis/bridges/mailxmpp"
	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/upload"
)

// uploadService is the running HTTP file upload service and its listeners.
type uploadService struct {
	svc  *upload.Service
	srvs []*http.Server
	lns  []string
}

// startUpload starts the file upload service if [upload] enables it; nil
// otherwise.
func startUpload(cfg config.Config, log *slog.Logger, src *certs.Hosts, rt *router.Router) (*uploadService, error) {
	uc := cfg.Upload
	if !uc.Enabled {
		return nil, nil
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, addr := range uc.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("upload: listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	base, err := publicURL(cfg, lns[0].Addr())
	if err != nil {
		closeAll()
		return nil, err
	}
	domains := cfg.Domains()
	svc, err := upload.New(upload.Config{
		Domain: cfg.UploadDomain(), Local: func(d string) bool { return slices.Contains(domains, d) },
		Dir: filepath.Join(cfg.Server.DataDir, "uploads"), PublicURL: base,
		MaxSize: int64(uc.MaxSize), Router: rt, Log: log.With("component", "upload"),
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	if err := rt.AddService(cfg.UploadDomain(), svc); err != nil {
		closeAll()
		return nil, err
	}
	u := &uploadService{svc: svc}
	for _, ln := range lns {
		hs := &http.Server{Handler: svc.Handler(), TLSConfig: src.TLSConfig("h2", "http/1.1"),
			ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		u.srvs = append(u.srvs, hs)
		u.lns = append(u.lns, fmt.Sprintf("%s (file upload, %s)", ln.Addr(), base))
		go func() {
			if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("upload listener stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	return u, nil
}

// publicURL is the base URL of the files: upload.public_url, or
// https://<server.domain>; without a port (or with port 0) it gets the
// port the first listener got.
func publicURL(cfg config.Config, first net.Addr) (string, error) {
	raw := cfg.Upload.PublicURL
	if raw == "" {
		raw = "https://" + cfg.Server.Domain
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("upload.public_url: %w", err)
	}
	if p := u.Port(); p == "" || p == "0" {
		_, port, _ := net.SplitHostPort(first.String())
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u.String(), nil
}

// files is the service as the mail bridge uses it: a nil interface when off.
func (u *uploadService) files() mailxmpp.Files {
	if u == nil {
		return nil
	}
	return u.svc
}

func (u *uploadService) shutdown(ctx context.Context) {
	if u == nil {
		return
	}
	for _, s := range u.srvs {
		_ = s.Shutdown(ctx)
	}
	_ = u.svc.Close()
}
