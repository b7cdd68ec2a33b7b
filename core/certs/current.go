package certs

import "crypto/tls"

// Certificate returns the certificate in use, for TLS configurations built
// elsewhere (server-to-server streams present it both ways).
func (s *Source) Certificate() *tls.Certificate { return s.cur.Load() }
