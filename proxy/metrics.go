package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Directions, the `direction` label of every proxy series.
const (
	Ingress = "ingress" // mTLS from another cluster to a local service
	Egress  = "egress"  // plain TCP from a local app, tunnelled to a remote gateway
)

// Metrics holds the proxy's series. One Metrics is shared by the ingress
// server and the egress set of a process; create it with NewMetrics and a
// registry owned by the caller.
type Metrics struct {
	requests          *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	open              *prometheus.GaugeVec
	bytes             *prometheus.CounterVec
	handshakeFailures *prometheus.CounterVec
	handshakeSeconds  *prometheus.HistogramVec
	refused           *prometheus.CounterVec
	parked            *prometheus.GaugeVec
	buffers           *prometheus.GaugeVec
}

// NewMetrics creates the proxy series and registers them with reg.
//
// gateway_requests_total and gateway_request_duration_seconds keep the
// names Linkerd users query; one "request" is one tunnelled connection, and
// `cluster` is the remote cluster for egress and this cluster for ingress.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_requests_total",
			Help: "Tunnelled connections opened to an upstream, by cluster and direction.",
		}, []string{"cluster", "direction"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_request_duration_seconds",
			Help:    "Lifetime of tunnelled connections, by cluster and direction.",
			Buckets: []float64{.005, .01, .05, .1, .5, 1, 5, 10, 60, 300, 1800, 3600},
		}, []string{"cluster", "direction"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_open_connections",
			Help: "Client connections currently open, by direction.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_bytes_total",
			Help: "Bytes spliced, by direction and flow (to_upstream, to_client).",
		}, []string{"direction", "flow"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_handshake_failures_total",
			Help: "Failed TLS handshakes, by direction and reason.",
		}, []string{"direction", "reason"}),
		handshakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_handshake_duration_seconds",
			Help:    "Duration of successful TLS handshakes, by direction and whether the session was resumed.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"direction", "resumed"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_refused_connections_total",
			Help: "Connections refused after accept, by direction and reason.",
		}, []string{"direction", "reason"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_parked_directions",
			Help: "Directions of open connections idle long enough to have given up their goroutine and buffer, waiting in epoll, by direction.",
		}, []string{"direction"}),
		buffers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_buffer_bytes",
			Help: "Bytes of 64 KiB bulk buffers held by busy connections, by direction; bounded by --buffer-memory-mib.",
		}, []string{"direction"}),
	}
	reg.MustRegister(m.requests, m.duration, m.open, m.bytes,
		m.handshakeFailures, m.handshakeSeconds, m.refused, m.parked, m.buffers)
	return m
}

// orNew returns m, or metrics on a private registry when m is nil, so the
// zero Config works in tests and benchmarks.
func (m *Metrics) orNew() *Metrics {
	if m != nil {
		return m
	}
	return NewMetrics(prometheus.NewRegistry())
}

// BytesSpliced is the total of gateway_bytes_total: every byte copied either
// way by the ingress and the egress so far. It reads the series, so it is
// for callers that ask now and then (the memory releaser, once a second).
func (m *Metrics) BytesSpliced() uint64 {
	ch := make(chan prometheus.Metric, 8)
	go func() {
		m.bytes.Collect(ch)
		close(ch)
	}()
	var total float64
	for c := range ch {
		var d dto.Metric
		if c.Write(&d) == nil && d.Counter != nil {
			total += d.Counter.GetValue()
		}
	}
	return uint64(total)
}
