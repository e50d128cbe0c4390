package proxy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBufferMemory is the default budget of a server's bulk buffers.
const DefaultBufferMemory = 128 << 20

// bufferBudget bounds the bytes of bulk buffers (the 64 KiB copy buffer of
// a busy direction, a transport's read-ahead and write-gathering buffers)
// that the connections of one server hold at once. A busy connection may
// hold four, so without a bound the worst case (every connection streaming
// both ways to a slow reader) grows with --max-conns past any container
// limit. A direction or transport refused a buffer carries on with its
// small buffer and without read-ahead: slower, never stuck, and it asks
// again at its next full read.
type bufferBudget struct {
	max   int64
	used  atomic.Int64
	gauge prometheus.Gauge // bytes in use; may be nil
}

// newBufferBudget returns a budget of max bytes; max <= 0 means none may
// be taken (every connection stays on small buffers).
func newBufferBudget(max int64, gauge prometheus.Gauge) *bufferBudget {
	return &bufferBudget{max: max, gauge: gauge}
}

// take reserves n bytes and reports whether it could. A nil budget grants
// everything (tests that build splices by hand).
func (b *bufferBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	if b.gauge != nil {
		b.gauge.Add(float64(n))
	}
	return true
}

// give returns n bytes that take granted.
func (b *bufferBudget) give(n int64) {
	if b == nil {
		return
	}
	b.used.Add(-n)
	if b.gauge != nil {
		b.gauge.Sub(float64(n))
	}
}

// inUse is the number of bytes taken and not given back.
func (b *bufferBudget) inUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}
