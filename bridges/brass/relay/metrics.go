package relay

import (
	"context"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/aldis-im/aldis/core/obs"
)

// metrics are a link's counters, labelled with its name.
type metrics struct {
	sent       *vm.Counter // handed to the bearer (retransmissions included)
	acked      *vm.Counter
	expired    *vm.Counter
	failed     *vm.Counter // refused, rejected by the far side, too large
	rejected   *vm.Counter
	received   *vm.Counter
	duplicates *vm.Counter
	delivered  *vm.Counter // inbound, handed to the router or the MTA
	spoofed    *vm.Counter
	bounced    *vm.Counter
	dropped    *vm.Counter // by the traffic policy
	folded     *vm.Counter
	forbidden  *vm.Counter
	intakeFull *vm.Counter
}

func newMetrics(l *Link) *metrics {
	mt := l.cfg.Metrics
	name := func(family string, labels ...string) string {
		return obs.Name(family, append([]string{"link", l.cfg.Name}, labels...)...)
	}
	c := func(family string, labels ...string) *vm.Counter { return mt.Counter(name(family, labels...)) }
	m := &metrics{
		sent:       c("aldis_relay_items_sent_total"),
		acked:      c("aldis_relay_items_acked_total"),
		expired:    c("aldis_relay_items_expired_total"),
		failed:     c("aldis_relay_items_failed_total"),
		rejected:   c("aldis_relay_items_rejected_total"),
		received:   c("aldis_relay_items_received_total"),
		duplicates: c("aldis_relay_items_duplicate_total"),
		delivered:  c("aldis_relay_items_delivered_total"),
		spoofed:    c("aldis_relay_items_spoofed_total"),
		bounced:    c("aldis_relay_bounces_total"),
		dropped:    c("aldis_relay_stanzas_dropped_total"),
		folded:     c("aldis_relay_presence_folded_total"),
		forbidden:  c("aldis_relay_stanzas_forbidden_total"),
		intakeFull: c("aldis_relay_intake_full_total"),
	}
	depth := func(q interface {
		Count(context.Context) (int, error)
	}) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := q.Count(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}
	}
	// A gauge keeps the first function registered under its name: a link
	// rebuilt under the same name on the same Metrics reports the first.
	mt.Gauge(name("aldis_relay_queue_depth", "dir", "out"), depth(l.out))
	mt.Gauge(name("aldis_relay_queue_depth", "dir", "in"), depth(l.in))
	mt.Gauge(name("aldis_relay_items_waiting"), func() float64 { return float64(l.snap.Load().ready) })
	mt.Gauge(name("aldis_relay_items_unacked"), func() float64 { return float64(l.snap.Load().pending) })
	mt.Gauge(name("aldis_relay_presence_held"), func() float64 { return float64(l.snap.Load().folded) })
	mt.Gauge(name("aldis_relay_state"), func() float64 { return float64(l.snap.Load().state) })
	return m
}
