package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// EgressRoute is one local listener whose connections are tunnelled over
// mTLS to a remote gateway.
type EgressRoute struct {
	Listen string // local address, e.g. "127.0.0.3:14200" or ":4200"
	// Cluster names the remote cluster (the `cluster` metric label).
	Cluster string
	// GatewayAddresses of the remote gateway ("host:port"), tried in turn.
	GatewayAddresses []string
	// Target is the remote service "<svc>.<ns>.svc.<domain>:<port>".
	Target string
	// TransportHeader sends Linkerd's transport header (ALPN
	// transport.l5d.io/v1, SNI = ServerName) instead of naming the target
	// in the SNI: the form a stock Linkerd gateway accepts.
	TransportHeader bool
	// ServerName is the SNI of TransportHeader mode: the gateway identity
	// (DNS form). Without TransportHeader it must be empty: the SNI is
	// outbound_.<port>_._.<fqdn>, naming the target.
	ServerName string
	// TLS verifies the remote gateway's identity and presents ours
	// (identity.ClientTLSConfig). Share one per remote gateway so its
	// session cache lets repeated connections resume.
	TLS *tls.Config
}

// EgressConfig holds what all egress listeners share.
type EgressConfig struct {
	DialTimeout  time.Duration // TCP connect + TLS handshake; default 10s
	IdleTimeout  time.Duration // default 1h, <0 disables
	ParkDelay    time.Duration // see IngressConfig.ParkDelay; default 1s, <0 never parks
	BufferMemory int64         // see IngressConfig.BufferMemory
	DrainTimeout time.Duration // default 30s
	MaxConns     int           // default 10000, over all egress listeners
	Dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	Log          zerolog.Logger
	Metrics      *Metrics

	// WriteStallTimeout: as IngressConfig's, for the local client and the
	// remote gateway.
	WriteStallTimeout time.Duration
	// UnsentLimit: as IngressConfig's.
	UnsentLimit int
}

// EgressSet runs the egress listeners. Update changes the set at any time
// (the mirror calls it as services come and go); Run owns the listeners'
// goroutines and drains them when its context ends.
type EgressSet struct {
	cfg    EgressConfig
	m      *Metrics
	conns  tracker
	splice spliceOptions // its parker is run by Run

	mu        sync.Mutex
	listeners map[string]*egressListener // by listen address
	stopped   bool
	wg        sync.WaitGroup // accept loops
	ctx       context.Context
	cancel    context.CancelFunc
}

type egressListener struct {
	route  EgressRoute
	ln     net.Listener
	tls    *tls.Config
	header []byte // transport header, when route.TransportHeader
	done   chan struct{}

	requests, toUpstream, toClient prometheus.Counter
	duration                       prometheus.Observer
}

// NewEgress creates an empty set.
func NewEgress(cfg EgressConfig) *EgressSet {
	setDefault(&cfg.DialTimeout, 10*time.Second)
	setDefault(&cfg.IdleTimeout, time.Hour)
	setDefault(&cfg.WriteStallTimeout, DefaultWriteStallTimeout)
	setDefault(&cfg.ParkDelay, time.Second)
	setDefault(&cfg.DrainTimeout, 30*time.Second)
	setDefault(&cfg.MaxConns, 10000)
	setDefault(&cfg.BufferMemory, DefaultBufferMemory)
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &EgressSet{cfg: cfg, m: cfg.Metrics.orNew(), listeners: map[string]*egressListener{}, ctx: ctx, cancel: cancel}
	e.conns.max = cfg.MaxConns
	var err error
	buffers := newBufferBudget(cfg.BufferMemory, e.m.buffers.WithLabelValues(Egress))
	if e.splice, err = newSpliceOptions(cfg.IdleTimeout, cfg.ParkDelay, buffers, cfg.Log, e.m.parked.WithLabelValues(Egress)); err != nil {
		// Out of descriptors at start, most likely: serve without parking.
		cfg.Log.Warn().Err(err).Msg("egress: idle connections will not be parked")
		e.splice, _ = newSpliceOptions(cfg.IdleTimeout, -1, buffers, cfg.Log, nil)
	}
	e.splice.writeStall = max(cfg.WriteStallTimeout, 0)
	e.splice.unsentLimit = max(cfg.UnsentLimit, 0)
	return e
}

// Update makes the listeners match routes: it binds new ones, closes the
// ones no longer wanted (their open connections finish on their own) and
// replaces those whose route changed. It returns the errors of routes it
// could not start; the others are in place.
func (e *EgressSet) Update(routes []EgressRoute) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errors.New("proxy: egress set stopped")
	}
	want := make(map[string]EgressRoute, len(routes))
	for _, r := range routes {
		want[r.Listen] = r
	}
	for addr, l := range e.listeners {
		if r, ok := want[addr]; !ok || !sameRoute(r, l.route) {
			l.ln.Close()
			<-l.done // the port must be free before a replacement binds it
			delete(e.listeners, addr)
		}
	}
	var errs []error
	for _, addr := range slices.Sorted(maps.Keys(want)) {
		if _, ok := e.listeners[addr]; ok {
			continue
		}
		l, err := e.newListener(want[addr])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.listeners[addr] = l
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer close(l.done)
			e.accept(l)
		}()
	}
	return errors.Join(errs...)
}

func sameRoute(a, b EgressRoute) bool {
	return a.Cluster == b.Cluster && a.Target == b.Target && a.TransportHeader == b.TransportHeader &&
		a.ServerName == b.ServerName && a.TLS == b.TLS && slices.Equal(a.GatewayAddresses, b.GatewayAddresses)
}

func (e *EgressSet) newListener(r EgressRoute) (*egressListener, error) {
	if r.TLS == nil || len(r.GatewayAddresses) == 0 {
		return nil, fmt.Errorf("proxy: egress %s: needs TLS and a gateway address", r.Listen)
	}
	// The target must be a service name, which the remote gateway routes by
	// or refuses: its SNI or header then reaches that target or nothing,
	// whatever the app writes in its bytes.
	d, _, err := ParseTarget(r.Target)
	if err != nil {
		return nil, fmt.Errorf("proxy: egress %s: %w", r.Listen, err)
	}
	host, _, _ := cutPort(r.Target)
	l := &egressListener{route: r, done: make(chan struct{})}
	l.tls = r.TLS.Clone() // shares the session cache; ServerName is ours
	switch {
	case r.TransportHeader && r.ServerName == "":
		return nil, fmt.Errorf("proxy: egress %s: transport header mode needs the gateway identity as ServerName", r.Listen)
	case r.TransportHeader:
		l.tls.ServerName = r.ServerName
		l.tls.NextProtos = []string{TransportHeaderALPN}
		l.header = AppendTransportHeader(nil, TransportHeader{Port: int32(d.Port), Name: host})
	case r.ServerName != "":
		// Any other SNI (the gateway's identity, say) would leave the
		// choice to the Host header of the app's bytes.
		return nil, fmt.Errorf("proxy: egress %s: ServerName is for transport header mode; the SNI names the target", r.Listen)
	default:
		if l.tls.ServerName, err = OutboundServerName(r.Target); err != nil {
			return nil, fmt.Errorf("proxy: egress %s: %w", r.Listen, err)
		}
	}
	if l.ln, err = listenTCP(r.Listen); err != nil {
		return nil, fmt.Errorf("proxy: egress: %w", err)
	}
	cluster := r.Cluster
	if cluster == "" {
		cluster = "remote"
	}
	l.requests = e.m.requests.WithLabelValues(cluster, Egress)
	l.duration = e.m.duration.WithLabelValues(cluster, Egress)
	l.toUpstream = e.m.bytes.WithLabelValues(Egress, "to_upstream")
	l.toClient = e.m.bytes.WithLabelValues(Egress, "to_client")
	return l, nil
}

// Addrs returns the bound address of each listener, by listen address.
func (e *EgressSet) Addrs() map[string]net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]net.Addr, len(e.listeners))
	for k, l := range e.listeners {
		out[k] = l.ln.Addr()
	}
	return out
}

// Run waits for ctx, then closes every listener, lets open connections
// finish for up to DrainTimeout and closes the rest.
func (e *EgressSet) Run(ctx context.Context) error {
	parked := e.splice.runParker()
	defer parked() // after the drain below
	<-ctx.Done()
	e.mu.Lock()
	e.stopped = true
	for _, l := range e.listeners {
		l.ln.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
	if n := e.conns.drain(e.cfg.DrainTimeout); n > 0 {
		e.cfg.Log.Warn().Int("closed", n).Msg("drain timeout: closed open egress connections")
	}
	e.cancel()
	return nil
}

func (e *EgressSet) accept(l *egressListener) {
	open := e.m.open.WithLabelValues(Egress)
	err := acceptLoop(e.ctx, l.ln, e.cfg.Log, func(c net.Conn) {
		if !e.conns.add(c) {
			e.refuse(c, l, "connection_limit", nil)
			c.Close()
			return
		}
		go func() {
			open.Inc()
			if !e.serve(c, l, open) {
				open.Dec()
				e.conns.done(c)
			}
		}()
	})
	if err != nil {
		e.cfg.Log.Error().Err(err).Str("listen", l.route.Listen).Msg("egress listener failed")
	}
}

// serve connects c to the remote gateway and starts the splice. It
// returns true once a splice owns c: the splice, not this goroutine (whose
// stack the handshake grew), finishes the accounting (open included) and
// tells the tracker when it ends.
func (e *EgressSet) serve(c net.Conn, l *egressListener, open prometheus.Gauge) bool {
	start := time.Now()
	up, raw, err := e.dialGateway(l)
	if err != nil {
		e.refuse(c, l, "gateway_unavailable", err)
		c.Close()
		return false
	}
	if l.header != nil {
		if _, err := up.Write(l.header); err != nil {
			e.refuse(c, l, "gateway_unavailable", err)
			c.Close()
			up.Close()
			return false
		}
	}
	l.requests.Inc()
	sp := newSplicer(e.splice, plainSide(c), tlsSide(up, raw), l.toUpstream, l.toClient, func(err error) {
		l.duration.Observe(time.Since(start).Seconds())
		if err != nil && !isExpectedNetErr(err) {
			e.cfg.Log.Debug().Err(err).Str("target", l.route.Target).Msg("egress connection ended with error")
		}
		open.Dec()
		e.conns.done(c)
	})
	e.conns.closeWith(c, func() { sp.abort(errDrained) })
	sp.start()
	return true
}

// dialGateway opens an mTLS connection to one of the remote gateway's
// addresses, trying each in turn within DialTimeout.
func (e *EgressSet) dialGateway(l *egressListener) (*tls.Conn, net.Conn, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
	defer cancel()
	var errs []error
	for _, addr := range l.route.GatewayAddresses {
		raw, err := e.cfg.Dial(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tc := tls.Client(newTransport(raw, e.splice.buffers), l.tls)
		hs := time.Now()
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			e.m.handshakeFailures.WithLabelValues(Egress, handshakeReason(err)).Inc()
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		e.m.handshakeSeconds.WithLabelValues(Egress, strconv.FormatBool(tc.ConnectionState().DidResume)).
			Observe(time.Since(hs).Seconds())
		return tc, raw, nil
	}
	return nil, nil, errors.Join(errs...)
}

func (e *EgressSet) refuse(c net.Conn, l *egressListener, reason string, err error) {
	e.m.refused.WithLabelValues(Egress, reason).Inc()
	e.cfg.Log.Info().Str("reason", reason).Str("remote", c.RemoteAddr().String()).
		Str("target", l.route.Target).Err(err).Msg("egress connection refused")
}
