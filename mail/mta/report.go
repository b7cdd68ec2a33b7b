package mta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/mail/dsn"
)

// Report tells from, by a delivery status notification queued like any
// other mail, that the message data could not be delivered to the
// recipients: used by carriers that took the message over from the queue
// (a constrained link) and failed later. status is the RFC 3463 code,
// e.g. "4.4.7" for a message that outlived its time. key makes the report
// idempotent: a second Report with the same key is refused by the queue.
func (m *MTA) Report(ctx context.Context, key, from string, to []string, data []byte, status string, cause error) error {
	if from == "" {
		m.log.Warn("undeliverable bounce dropped", "to", to, "err", cause)
		return nil
	}
	now := time.Now()
	fails := make([]dsn.Failure, len(to))
	for i, rcpt := range to {
		fails[i] = dsn.Failure{Recipient: rcpt, Status: status, Diagnostic: cause.Error(), LastTry: now}
	}
	report, ok := m.buildReport(from, fails, data, now)
	if !ok {
		return nil
	}
	err := m.Submit(ctx, Submission{ID: "dsn-" + key, To: []string{from}, Data: report})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("mta: queueing a report: %w", err)
	}
	return nil
}

// buildReport renders a bounce to from; false when it cannot be written
// (an address that cannot be put in a header: nobody to tell).
func (m *MTA) buildReport(from string, fails []dsn.Failure, original []byte, arrival time.Time) ([]byte, bool) {
	report, err := dsn.Build(dsn.Report{
		ReportingMTA: m.cfg.Hostname, To: from, Failures: fails, Original: original, Arrival: arrival,
		MessageID: newID() + "@" + m.cfg.Hostname, Trace: m.cfg.Hostname,
	})
	if err != nil {
		m.log.Warn("cannot build a bounce", "from", from, "err", err)
		return nil, false
	}
	return report, true
}
