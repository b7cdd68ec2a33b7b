package config

import (
	"fmt"
	"net/url"
)

// Upload is the [upload] table: the HTTP file upload service (XEP-0363).
type Upload struct {
	Enabled bool `toml:"enabled"`
	// Domain is the service's XMPP domain; empty = "upload." + server.domain (use UploadDomain).
	Domain string `toml:"domain"`
	// Listen are the HTTPS listeners, host:port.
	Listen []string `toml:"listen"`
	// PublicURL is the base URL clients reach the listeners at; empty =
	// https://<server.domain>. Without a port it gets the first listener's.
	PublicURL string `toml:"public_url"`
	MaxSize   int    `toml:"max_size"` // bytes per file
}

func defaultUpload() Upload {
	return Upload{Listen: []string{"127.0.0.1:5443"}, MaxSize: 10 << 20}
}

// UploadDomain returns the upload service's domain.
func (c Config) UploadDomain() string {
	if c.Upload.Domain != "" {
		return c.Upload.Domain
	}
	return "upload." + c.Server.Domain
}

func (c Config) uploadProblems(ck *checker, listener func(key, addr string)) {
	u := c.Upload
	for i, a := range u.Listen {
		listener(indexKey("upload.listen", i), a)
	}
	if u.Domain != "" {
		if msg := checkHostname(u.Domain); msg != "" {
			ck.add(msg, "upload.domain")
		}
	}
	if u.Enabled && len(u.Listen) == 0 {
		ck.add("an enabled upload service needs at least one listener", "upload.listen", "upload.enabled")
	}
	if u.PublicURL != "" {
		p, err := url.Parse(u.PublicURL)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			ck.add(fmt.Sprintf("%q is not an http(s) URL", u.PublicURL), "upload.public_url")
		}
	}
	ck.intRange("upload.max_size", u.MaxSize, 1, 1<<30)
}
