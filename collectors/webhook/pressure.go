package webhook

import (
	"fmt"
	"sync"
	"time"

	"github.com/doraflow/doraflow/pkg/bus"
)

// Pressure is a process's backpressure towards the bus, shared by all its
// handlers: a bounded number of deliveries publishing at once, and what
// JetStream last said about its limits. A delivery beyond the bound, or
// while JetStream has just refused one for its limits, is answered 503 with
// Retry-After at once rather than queued without bound: a webhook sender
// retries, a queue in memory only grows.
type Pressure struct {
	slots chan struct{}
	now   func() time.Time

	mu        sync.Mutex
	limitErr  error     // JetStream's last refusal for its limits, until a publish succeeds
	limitedAt time.Time // when
}

// limitPause is how long after JetStream refused a publish for its limits
// the handlers refuse deliveries without trying: one delivery a pause
// probes whether there is room again.
const limitPause = time.Second

// limitReported is how long a refusal for limits keeps /readyz at 503
// without a publish since: without traffic nothing says whether there is
// room again, and a probe that never recovers would keep traffic away for
// good.
const limitReported = 30 * time.Second

// NewPressure bounds the deliveries publishing at once to maxInflight.
func NewPressure(maxInflight int) *Pressure {
	return &Pressure{slots: make(chan struct{}, max(maxInflight, 1)), now: time.Now}
}

// errPressure says why a delivery is refused before it is published.
type errPressure struct{ reason string }

func (e *errPressure) Error() string { return e.reason }

// acquire takes a publishing slot, or says why not; release gives it back.
// A nil Pressure bounds nothing.
func (p *Pressure) acquire() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	limited, at := p.limitErr, p.limitedAt
	p.mu.Unlock()
	if limited != nil && p.now().Sub(at) < limitPause {
		return &errPressure{reason: "the event bus is at its limits (JetStream storage full), retry later"}
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	default:
		return &errPressure{reason: fmt.Sprintf("%d deliveries publishing at once (collector.max_inflight_publishes), retry later", cap(p.slots))}
	}
}

func (p *Pressure) release() {
	if p != nil {
		<-p.slots
	}
}

// record notes a publish's outcome: a refusal for JetStream's limits, or
// a success that clears one.
func (p *Pressure) record(err error) {
	if p == nil {
		return
	}
	switch {
	case err == nil:
		p.mu.Lock()
		p.limitErr = nil
		p.mu.Unlock()
	case bus.IsLimit(err):
		p.mu.Lock()
		p.limitErr, p.limitedAt = err, p.now()
		p.mu.Unlock()
	}
}

// Limited is JetStream's last refusal of a publish for its limits, if no
// publish has succeeded since and it is recent; else nil. What /readyz
// reports for a collector.
func (p *Pressure) Limited() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limitErr == nil || p.now().Sub(p.limitedAt) > limitReported {
		return nil
	}
	return fmt.Errorf("bus: JetStream has no room: it refused a publish for its storage limits %s ago: %w", p.now().Sub(p.limitedAt).Round(time.Second), p.limitErr)
}

// Inflight is the number of deliveries publishing now.
func (p *Pressure) Inflight() int {
	if p == nil {
		return 0
	}
	return len(p.slots)
}
