package hostile

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// round is one measured phase of the good client: its stats and every
// probe's latency, so that rounds can be pooled.
type round struct {
	stats
	lat []time.Duration
}

// probeRound runs n round trips one after the other, gap apart, as a good
// client of steady, modest rate would.
func probeRound(addr string, cfg *tls.Config, n int, gap time.Duration) round {
	var r round
	r.lat = make([]time.Duration, 0, n)
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for range n {
		start := time.Now()
		if err := roundTrip(addr, cfg); err != nil {
			r.failed++
			if r.firstErr == nil {
				r.firstErr = err
			}
			if r.failed >= 5 {
				break // enough to fail the phase; do not wait out every timeout
			}
		} else {
			r.ok++
		}
		r.lat = append(r.lat, time.Since(start))
		<-tick.C
	}
	r.summarize()
	return r
}

// summarize sets the percentiles from lat.
func (r *round) summarize() {
	slices.Sort(r.lat)
	r.p50 = r.lat[len(r.lat)/2]
	r.p99 = r.lat[min(len(r.lat)-1, len(r.lat)*99/100)]
	r.max = r.lat[len(r.lat)-1]
}

// pool is the rounds as one: an attack's rounds, or the quiet rounds
// alternated with them, which saw the same background load.
func pool(rs ...round) round {
	var p round
	for _, r := range rs {
		p.ok += r.ok
		p.failed += r.failed
		if p.firstErr == nil {
			p.firstErr = r.firstErr
		}
		p.lat = append(p.lat, r.lat...)
	}
	p.summarize()
	return p
}

// stalled reports, polled, whether the counter has stood still for at
// least settle: writers that never read are held by backpressure, not
// still filling buffers. Bytes that fill the kernel's and the gateway's
// buffers in the first second of such an attack are a bulk upload like
// any other, and the attack's steady state, which is what a client that
// never reads costs the others, starts once they stop.
func stalled(counter func() float64, settle time.Duration) func() bool {
	last, since := -1.0, time.Now()
	return func() bool {
		now, v := time.Now(), counter()
		if v != last {
			last, since = v, now
			return false
		}
		return now.Sub(since) >= settle
	}
}

func bytesToUpstream(t testing.TB, reg prometheus.Gatherer) func() float64 {
	return func() float64 {
		return metric(t, reg, "gateway_bytes_total", map[string]string{"direction": "ingress", "flow": "to_upstream"})
	}
}
