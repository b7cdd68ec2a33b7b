package obs

import (
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics holds every server metric in its own set (no global registry), so tests and
// several servers in one process don't share counters.
//
// Metric names use Prometheus syntax with optional labels, e.g. `aldis_stanzas_in_total{type="message"}`.
// Names are chosen by the program, not by peers: an invalid name, or one name used for two kinds of
// metric, is a programming error and panics (in the metrics library). Build names that carry label
// values taken from the network with Name, which escapes them.
type Metrics struct {
	set *metrics.Set
}

// NewMetrics returns an empty metric set.
func NewMetrics() *Metrics {
	return &Metrics{set: metrics.NewSet()}
}

// Counter returns the counter called name, creating it on first use.
func (m *Metrics) Counter(name string) *metrics.Counter {
	return m.set.GetOrCreateCounter(name)
}

// Gauge registers a gauge whose value is f's result at each scrape. It is idempotent per name:
// after the first registration, later calls with the same name keep the first f.
// f must be safe to call from any goroutine.
func (m *Metrics) Gauge(name string, f func() float64) {
	m.set.GetOrCreateGauge(name, f)
}

// Histogram returns the histogram called name, creating it on first use.
// It is exposed with VictoriaMetrics' vmrange buckets, which need no bucket configuration.
func (m *Metrics) Histogram(name string) *metrics.Histogram {
	return m.set.GetOrCreateHistogram(name)
}

// WritePrometheus writes every metric of m in the Prometheus text exposition format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
}

// Name builds a metric name with labels from a family name and label name/value pairs,
// escaping the values: Name("aldis_stanzas_in_total", "type", t) is `aldis_stanzas_in_total{type="..."}`.
// A trailing label name without a value gets an empty value.
func Name(family string, labels ...string) string {
	if len(labels) == 0 {
		return family
	}
	var b strings.Builder
	b.WriteString(family)
	b.WriteByte('{')
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		if i+1 < len(labels) {
			writeLabelValue(&b, labels[i+1])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// writeLabelValue writes v with the Prometheus text format's label-value escapes.
func writeLabelValue(b *strings.Builder, v string) {
	for i := range len(v) {
		switch c := v[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
}
