// Package testhealth is a mirror.GatewayHealth whose verdicts a test sets
// by hand, for tests of the mirror; the probe workers that implement it
// for real are tested in package probe.
package testhealth

import (
	"sync"

	"github.com/mcgate/mcgate/probe"
)

// Health says every cluster's gateway is alive until SetAlive says
// otherwise.
type Health struct {
	mu      sync.Mutex
	dead    map[string]bool
	targets []probe.Target
	changed chan struct{}
}

// New returns a Health with every gateway alive.
func New() *Health { return &Health{dead: map[string]bool{}, changed: make(chan struct{}, 1)} }

// Set records the probed gateways (see Targets).
func (h *Health) Set(ts []probe.Target) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = ts
}

// Targets is what the mirror last asked to probe.
func (h *Health) Targets() []probe.Target {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.targets
}

// Alive reports the verdict SetAlive gave cluster (alive by default).
func (h *Health) Alive(cluster string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.dead[cluster]
}

// Changed receives after each SetAlive.
func (h *Health) Changed() <-chan struct{} { return h.changed }

// SetAlive sets cluster's verdict and signals Changed (a mirror re-checks
// every mirror then, even when the verdict is the same).
func (h *Health) SetAlive(cluster string, alive bool) {
	h.mu.Lock()
	h.dead[cluster] = !alive
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
}
