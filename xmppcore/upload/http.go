package upload

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Handler serves PUT (uploads into slots) and GET/HEAD (downloads) under
// /upload/<token>/<name>.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, name, ok := s.split(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case http.MethodPut:
			s.put(w, r, token, name)
		case http.MethodGet, http.MethodHead:
			s.get(w, r, token, name)
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

// split reads /<base path>/upload/<token>/<name>.
func (s *Service) split(p string) (token, name string, ok bool) {
	rest, found := strings.CutPrefix(p, path.Join("/", s.base.Path, "upload")+"/")
	if !found {
		return "", "", false
	}
	token, name, found = strings.Cut(rest, "/")
	if !found || token == "" || name == "" || strings.Contains(name, "/") || len(token) != 24 {
		return "", "", false
	}
	return token, name, true
}

func (s *Service) put(w http.ResponseWriter, r *http.Request, token, name string) {
	sl, ok := s.take(token)
	if !ok || sl.name != name {
		http.Error(w, "no such upload slot, or it has expired", http.StatusForbidden)
		return
	}
	if r.ContentLength != sl.size {
		http.Error(w, fmt.Sprintf("the slot is for %d bytes", sl.size), http.StatusRequestEntityTooLarge)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != sl.contentType {
		http.Error(w, "the content type differs from the slot's", http.StatusBadRequest)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, sl.size+1))
	if err != nil || int64(len(data)) != sl.size {
		http.Error(w, "the body does not have the slot's size", http.StatusBadRequest)
		return
	}
	if err := s.write(token, name, sl.contentType, data); err != nil {
		s.cfg.Log.Error("store upload", "err", err)
		http.Error(w, "could not store the file", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// write stores a file and its content type, atomically: a reader sees
// the whole file or none.
func (s *Service) write(token, name, contentType string, data []byte) error {
	if err := s.root.Mkdir(token, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("upload: %w", err)
	}
	if err := s.root.WriteFile(token+"/.type", []byte(contentType), 0o600); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	tmp := token + "/.partial"
	if err := s.root.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if err := s.root.Rename(tmp, token+"/"+name); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request, token, name string) {
	if strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	f, err := s.root.Open(token + "/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	ct := "application/octet-stream"
	if b, err := s.root.ReadFile(token + "/.type"); err == nil && len(b) > 0 {
		ct = string(b)
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	// Never rendered by a browser on our origin: a download, sandboxed.
	h.Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, max-age=86400")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	http.ServeContent(w, r, "", fi.ModTime(), f)
}
