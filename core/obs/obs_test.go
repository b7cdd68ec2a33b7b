package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("output %q is not one JSON record: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" || rec["k"] != 1.0 {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	log, err = NewLogger(&buf, "debug", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hello", "who", "world")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG msg=hello who=world") {
		t.Errorf("text output = %q", got)
	}

	for _, bad := range [][2]string{{"verbose", "text"}, {"info", "xml"}, {"INFO", "text"}} {
		if _, err := NewLogger(io.Discard, bad[0], bad[1]); err == nil {
			t.Errorf("NewLogger(%q, %q) succeeded", bad[0], bad[1])
		}
	}
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	m.Counter(`aldis_stanzas_in_total{type="message"}`).Add(3)
	m.Counter(`aldis_stanzas_in_total{type="message"}`).Inc() // get-or-create returns the same counter
	m.Counter(Name("aldis_stanzas_in_total", "type", `we"ird\`)).Inc()
	m.Gauge("aldis_sessions", func() float64 { return 7 })
	m.Gauge("aldis_sessions", func() float64 { return 99 }) // idempotent: first registration wins
	m.Histogram("aldis_login_seconds").Update(0.25)

	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	out := buf.String()
	for _, want := range []string{
		`aldis_stanzas_in_total{type="message"} 4` + "\n",
		`aldis_stanzas_in_total{type="we\"ird\\"} 1` + "\n",
		"aldis_sessions 7\n",
		`aldis_login_seconds_bucket{vmrange=`,
		"aldis_login_seconds_sum 0.25\n",
		"aldis_login_seconds_count 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}

	// Sets are independent: nothing leaks into a second one.
	var other bytes.Buffer
	NewMetrics().WritePrometheus(&other)
	if other.Len() != 0 {
		t.Errorf("fresh Metrics exposes %q", other.String())
	}
}

func TestName(t *testing.T) {
	tests := []struct {
		family string
		labels []string
		want   string
	}{
		{"m", nil, "m"},
		{"m", []string{"a", "1", "b", "2"}, `m{a="1",b="2"}`},
		{"m", []string{"a", "x\"y\\z\nw"}, `m{a="x\"y\\z\nw"}`},
		{"m", []string{"a"}, `m{a=""}`},
	}
	for _, tt := range tests {
		if got := Name(tt.family, tt.labels...); got != tt.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tt.family, tt.labels, got, tt.want)
		}
	}
}

func TestAdminHandler(t *testing.T) {
	m := NewMetrics()
	m.Counter("aldis_test_total").Inc()
	var healthErr atomic.Pointer[error]
	h := NewAdminHandler(m, func() error {
		if p := healthErr.Load(); p != nil {
			return *p
		}
		return nil
	})

	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}

	rec := get("/metrics")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "aldis_test_total 1\n") {
		t.Errorf("/metrics: %d %q", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type = %q", ct)
	}
	if !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Error("/metrics lacks the Go runtime metrics")
	}

	if rec := get("/healthz"); rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Errorf("healthy /healthz: %d %q", rec.Code, rec.Body.String())
	}
	e := errors.New("storage: database is locked")
	healthErr.Store(&e)
	if rec := get("/healthz"); rec.Code != http.StatusServiceUnavailable || rec.Body.String() != "storage: database is locked\n" {
		t.Errorf("unhealthy /healthz: %d %q", rec.Code, rec.Body.String())
	}

	if rec := get("/other"); rec.Code != http.StatusNotFound {
		t.Errorf("/other: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", rec.Code)
	}

	rec = httptest.NewRecorder()
	NewAdminHandler(m, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("nil health: %d", rec.Code)
	}
}

func TestServeAdmin(t *testing.T) {
	m := NewMetrics()
	m.Counter("aldis_up_total").Inc()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := ServeAdmin(ctx, "127.0.0.1:0", NewAdminHandler(m, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	resp, err := client.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "aldis_up_total 1") {
		t.Fatalf("GET /metrics: %d %q", resp.StatusCode, body)
	}

	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err != nil {
			break // listener closed
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("admin server still accepting connections after ctx was cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeAdminErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := ServeAdmin(ctx, "", http.NotFoundHandler(), nil); err == nil {
		t.Error("ServeAdmin with an empty address succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := ServeAdmin(ctx, ln.Addr().String(), http.NotFoundHandler(), nil); err == nil {
		t.Error("ServeAdmin on a busy address succeeded")
	}
}
