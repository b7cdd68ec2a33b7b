package s2s

import (
	"context"
)

// verify asks the authoritative server of remote whether key is the one it
// generated for the stream id we gave it (XEP-0220 §2.1.2), on a stream of
// its own that ends with the answer.
func (m *Manager) verify(ctx context.Context, local, remote, id, key string) (bool, error) {
	s, err := m.dial(ctx, local, remote)
	if err != nil {
		return false, err
	}
	defer s.raw.Close()
	if !s.dbOffered {
		return false, &remoteError{"the authoritative server does not offer dialback"}
	}
	if err := s.write(dbElement("verify", local, remote, id, "", key).Append(nil)); err != nil {
		return false, err
	}
	for {
		el, err := s.next()
		if err != nil {
			return false, err
		}
		r, err := parseDialback(el)
		if err != nil || !r.verify || r.id != id || r.from != remote || r.to != local {
			continue
		}
		s.write([]byte("</stream:stream>"))
		return r.typ == "valid", nil
	}
}
