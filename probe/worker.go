package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Target is one remote gateway to probe: GET http://<addr><Path> for each
// of Addresses ("host:port") every Period, until one answers 200.
type Target struct {
	Cluster          string
	Addresses        []string
	Path             string
	Period           time.Duration
	Timeout          time.Duration
	FailureThreshold int
}

func (t Target) equal(o Target) bool {
	return t.Cluster == o.Cluster && slices.Equal(t.Addresses, o.Addresses) && t.Path == o.Path &&
		t.Period == o.Period && t.Timeout == o.Timeout && t.FailureThreshold == o.FailureThreshold
}

// WorkersConfig configures the probe workers.
type WorkersConfig struct {
	Log        zerolog.Logger
	Registerer prometheus.Registerer
	// Client sends the probes; nil means a plain HTTP client that ignores
	// proxy environment variables (a probe must reach the gateway itself).
	Client *http.Client
}

// Workers probes the gateways of the linked clusters, one goroutine per
// cluster, and keeps a liveness verdict for each. A gateway is dead after
// FailureThreshold consecutive failed rounds, counted from the worker's
// start too, so a gateway that is down from the beginning is reported dead
// (Linkerd #8590 never reports it). Before that verdict a cluster counts as
// alive, so a restart does not make every mirror fail fast.
type Workers struct {
	cfg     WorkersConfig
	changed chan struct{}
	m       metrics

	mu      sync.Mutex
	ctx     context.Context // nil until Run
	stopped bool            // Run has returned: start nothing more
	wg      sync.WaitGroup
	workers map[string]*worker
	alive   map[string]bool
}

type metrics struct {
	alive    *prometheus.GaugeVec
	enabled  *prometheus.GaugeVec
	latency  *prometheus.GaugeVec
	hist     *prometheus.HistogramVec
	probes   *prometheus.CounterVec
	success  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// latencyBuckets are Linkerd's, so its dashboards read ours.
var latencyBuckets = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// NewWorkers registers the probe metrics.
func NewWorkers(cfg WorkersConfig) (*Workers, error) {
	if cfg.Registerer == nil {
		return nil, errors.New("probe: workers need a Registerer")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       (&net.Dialer{}).DialContext,
			DisableKeepAlives: true, // each probe checks that a connection can be opened
		}}
	}
	cl := []string{"target_cluster_name"}
	m := metrics{
		alive:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gateway_alive", Help: "1 when the remote gateway answers its probe."}, cl),
		enabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gateway_enabled", Help: "1 when the remote gateway is probed."}, cl),
		latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gateway_latency", Help: "Latency of the last successful probe, in milliseconds."}, cl),
		hist: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gateway_probe_latency_ms",
			Help: "Latency of successful probes of the remote gateway, in milliseconds.", Buckets: latencyBuckets}, cl),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_probes", Help: "Probes of the remote gateway."},
			[]string{"target_cluster_name", "probe_successful"}),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "service_mirror_probe_success_total",
			Help: "Successful probes of the remote gateway."}, []string{"cluster"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "service_mirror_probe_failure_total",
			Help: "Failed probes of the remote gateway."}, []string{"cluster"}),
	}
	for _, c := range []prometheus.Collector{m.alive, m.enabled, m.latency, m.hist, m.probes, m.success, m.failures} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("probe: register metrics: %w", err)
		}
	}
	return &Workers{cfg: cfg, changed: make(chan struct{}, 1), m: m,
		workers: map[string]*worker{}, alive: map[string]bool{}}, nil
}

// Run owns the worker goroutines: it starts the ones Set asked for, and when
// ctx ends it stops them all and returns once they have exited.
func (w *Workers) Run(ctx context.Context) error {
	w.mu.Lock()
	w.ctx = ctx
	for _, wk := range w.workers {
		w.startLocked(wk)
	}
	w.mu.Unlock()
	<-ctx.Done()
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	// The workers' contexts derive from ctx, so they are ending already.
	w.wg.Wait()
	return nil
}

// Set makes the probed set equal to targets: new clusters get a worker,
// changed ones a restarted worker that keeps the current verdict, and
// clusters no longer listed are dropped with their metrics.
func (w *Workers) Set(targets []Target) {
	w.mu.Lock()
	defer w.mu.Unlock()
	want := map[string]Target{}
	for _, t := range targets {
		want[t.Cluster] = t
	}
	for c, wk := range w.workers {
		if t, ok := want[c]; ok && t.equal(wk.t) {
			continue
		}
		if wk.cancel != nil {
			wk.cancel()
		}
		delete(w.workers, c)
		if _, ok := want[c]; !ok {
			delete(w.alive, c)
			w.deleteMetrics(c)
			w.notify()
		}
	}
	for c, t := range want {
		if _, ok := w.workers[c]; ok {
			continue
		}
		wk := &worker{w: w, t: t}
		w.workers[c] = wk
		if _, ok := w.alive[c]; !ok {
			w.alive[c] = true
			w.m.alive.WithLabelValues(c).Set(1)
		}
		w.m.enabled.WithLabelValues(c).Set(1)
		if w.ctx != nil && !w.stopped {
			w.startLocked(wk)
		}
	}
}

func (w *Workers) deleteMetrics(c string) {
	for _, v := range []interface{ DeleteLabelValues(...string) bool }{w.m.alive, w.m.enabled, w.m.latency, w.m.hist} {
		v.DeleteLabelValues(c)
	}
	w.m.probes.DeleteLabelValues(c, "true")
	w.m.probes.DeleteLabelValues(c, "false")
	w.m.success.DeleteLabelValues(c)
	w.m.failures.DeleteLabelValues(c)
}

func (w *Workers) startLocked(wk *worker) {
	ctx, cancel := context.WithCancel(w.ctx)
	wk.cancel = cancel
	w.wg.Add(1)
	go wk.run(ctx)
}

// Alive reports the verdict for a cluster's gateway. Clusters that are not
// probed (no probe path, no gateway) count as alive.
func (w *Workers) Alive(cluster string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, ok := w.alive[cluster]
	return !ok || a
}

// Changed receives a value after any verdict changed (one-slot: several
// changes may be folded into one notification; read Alive afterwards).
func (w *Workers) Changed() <-chan struct{} { return w.changed }

func (w *Workers) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// verdict records a worker's result; wk guards against a replaced worker
// still finishing its last probe.
func (w *Workers) verdict(wk *worker, alive bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.workers[wk.t.Cluster] != wk {
		return
	}
	c := wk.t.Cluster
	if w.alive[c] == alive {
		return
	}
	w.alive[c] = alive
	if alive {
		w.m.alive.WithLabelValues(c).Set(1)
	} else {
		w.m.alive.WithLabelValues(c).Set(0)
	}
	w.cfg.Log.Info().Str("cluster", c).Bool("alive", alive).Msg("remote gateway liveness changed")
	w.notify()
}

type worker struct {
	w      *Workers
	t      Target
	cancel context.CancelFunc
	next   int // index of the address to try first (the last one that answered)
}

func (wk *worker) run(ctx context.Context) {
	defer wk.w.wg.Done()
	failures := 0
	timer := time.NewTimer(0) // first probe at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		lat, err := wk.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		c := wk.t.Cluster
		if err == nil {
			failures = 0
			ms := float64(lat) / float64(time.Millisecond)
			wk.w.m.hist.WithLabelValues(c).Observe(ms)
			wk.w.m.latency.WithLabelValues(c).Set(ms)
			wk.w.m.probes.WithLabelValues(c, "true").Inc()
			wk.w.m.success.WithLabelValues(c).Inc()
			wk.w.verdict(wk, true)
		} else {
			failures++
			wk.w.m.probes.WithLabelValues(c, "false").Inc()
			wk.w.m.failures.WithLabelValues(c).Inc()
			wk.w.cfg.Log.Debug().Err(err).Str("cluster", c).Int("failures", failures).Msg("gateway probe failed")
			if failures >= wk.t.FailureThreshold {
				wk.w.verdict(wk, false)
			}
		}
		timer.Reset(jitter(wk.t.Period))
	}
}

// jitter spreads probes of many clusters over up to 10% of the period, as
// Linkerd's ticker does.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// probe runs one round: the addresses in turn, starting with the last one
// that answered, until one returns 200, all within Timeout.
func (wk *worker) probe(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, wk.t.Timeout)
	defer cancel()
	var errs []error
	n := len(wk.t.Addresses)
	if n == 0 {
		return 0, errors.New("no gateway address")
	}
	for i := range n {
		idx := (wk.next + i) % n
		start := time.Now()
		err := wk.get(ctx, wk.t.Addresses[idx])
		if err == nil {
			wk.next = idx
			return time.Since(start), nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return 0, errors.Join(errs...)
}

func (wk *worker) get(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+wk.t.Path, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	resp, err := wk.w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %s", addr, strconv.Itoa(resp.StatusCode))
	}
	return nil
}
