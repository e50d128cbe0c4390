package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// IngressConfig configures the server that terminates mTLS from other
// clusters. Zero durations and limits take the defaults noted.
type IngressConfig struct {
	// ListenAddr is where to listen (default ":4143"), unless Listener is set.
	ListenAddr string
	// Listener, when set, is used instead of listening on ListenAddr; the
	// server closes it.
	Listener net.Listener
	// TLS is the server config: it must require and verify client
	// certificates (identity.ServerTLSConfig). The server adds ALPN handling.
	TLS *tls.Config
	// Authorize is called after every handshake, resumed ones included, and
	// returns the peer's identity for logs, or an error to refuse it.
	Authorize func(tls.ConnectionState) (peer string, err error)
	Router    Router
	// ClusterDomain of this cluster's service names (default cluster.local).
	ClusterDomain string
	// ServerIdentity returns the gateway's own identity in DNS form: an
	// SNI that is no service name is accepted only when it is this one
	// (Linkerd clients send it, then a transport header or an HTTP
	// authority names the target). Nil: only service names and no SNI.
	ServerIdentity func() string
	// Cluster is this cluster's name, the `cluster` label of its series.
	Cluster string

	HandshakeTimeout time.Duration // default 10s
	RouteTimeout     time.Duration // reading the header or HTTP authority; default 10s
	DialTimeout      time.Duration // connecting to a backend; default 5s
	IdleTimeout      time.Duration // no bytes either way; default 1h, <0 disables
	ParkDelay        time.Duration // a direction that read nothing this long gives up its goroutine and buffer until readable (Linux); default 1s, <0 never
	DrainTimeout     time.Duration // default 30s
	MaxConns         int           // open client connections; default 10000
	// BufferMemory bounds the bytes of bulk buffers all connections hold
	// at once (default DefaultBufferMemory, <0: none, every connection
	// copies through its small buffer).
	BufferMemory int64
	// WriteStallTimeout resets a connection whose client or backend took
	// none of the bytes written to it for this long (default
	// DefaultWriteStallTimeout, <0: only IdleTimeout bounds it).
	WriteStallTimeout time.Duration
	// UnsentLimit caps the bytes each spliced socket queues that TCP has
	// not sent (TCP_NOTSENT_LOWAT; 0: the kernel's autotuning, up to
	// tcp_wmem's maximum for a peer that does not read).
	UnsentLimit int
	// MaxHandshakes caps concurrent unauthenticated connections (default
	// 1000); past it the oldest handshake is evicted if it has taken over a
	// quarter of HandshakeTimeout, else the newcomer is refused.
	MaxHandshakes int
	// MaxHandshakesPerSource caps them per client IP address (default a
	// tenth of MaxHandshakes): one host cannot take every slot.
	MaxHandshakesPerSource int

	// Dial connects to backends (default net.Dialer.DialContext).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Log     zerolog.Logger
	Metrics *Metrics
}

// IngressServer accepts mTLS connections, picks an exported service, and
// splices to one of its endpoints. Run owns every goroutine it starts.
type IngressServer struct {
	cfg        IngressConfig
	ln         net.Listener
	tlsConfig  *tls.Config
	m          *Metrics
	conns      tracker
	handshakes handshakeSlots
	draining   atomic.Bool
	splice     spliceOptions // its parker is run by Run

	requests, toUpstream, toClient prometheus.Counter
	duration                       prometheus.Observer
	open                           prometheus.Gauge
}

// NewIngress validates cfg and binds the listener, so that the address is
// known (Addr) and errors show at start; Run serves.
func NewIngress(cfg IngressConfig) (*IngressServer, error) {
	if cfg.TLS == nil || cfg.Router == nil || cfg.Authorize == nil {
		return nil, errors.New("proxy: ingress needs TLS, Router and Authorize")
	}
	setDefault(&cfg.ListenAddr, ":4143")
	setDefault(&cfg.ClusterDomain, "cluster.local")
	setDefault(&cfg.Cluster, "local")
	setDefault(&cfg.HandshakeTimeout, 10*time.Second)
	setDefault(&cfg.RouteTimeout, 10*time.Second)
	setDefault(&cfg.DialTimeout, 5*time.Second)
	setDefault(&cfg.IdleTimeout, time.Hour)
	setDefault(&cfg.WriteStallTimeout, DefaultWriteStallTimeout)
	setDefault(&cfg.ParkDelay, time.Second)
	setDefault(&cfg.DrainTimeout, 30*time.Second)
	setDefault(&cfg.MaxConns, 10000)
	setDefault(&cfg.BufferMemory, DefaultBufferMemory)
	setDefault(&cfg.MaxHandshakes, 1000)
	setDefault(&cfg.MaxHandshakesPerSource, max(cfg.MaxHandshakes/10, 1))
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	s := &IngressServer{cfg: cfg, m: cfg.Metrics.orNew(), ln: cfg.Listener}
	var err error
	if s.ln == nil {
		if s.ln, err = listenTCP(cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("proxy: ingress: %w", err)
		}
	}
	buffers := newBufferBudget(cfg.BufferMemory, s.m.buffers.WithLabelValues(Ingress))
	if s.splice, err = newSpliceOptions(cfg.IdleTimeout, cfg.ParkDelay, buffers, cfg.Log, s.m.parked.WithLabelValues(Ingress)); err != nil {
		if cfg.Listener == nil {
			s.ln.Close()
		}
		return nil, fmt.Errorf("proxy: ingress: %w", err)
	}
	s.splice.writeStall = max(cfg.WriteStallTimeout, 0)
	s.splice.unsentLimit = max(cfg.UnsentLimit, 0)
	s.conns.max = cfg.MaxConns
	s.handshakes = handshakeSlots{max: cfg.MaxHandshakes, perSource: cfg.MaxHandshakesPerSource,
		minAge: evictAge(cfg.HandshakeTimeout)}
	s.tlsConfig = withALPN(authorizing(cfg.TLS, cfg.Authorize))
	s.requests = s.m.requests.WithLabelValues(cfg.Cluster, Ingress)
	s.duration = s.m.duration.WithLabelValues(cfg.Cluster, Ingress)
	s.open = s.m.open.WithLabelValues(Ingress)
	s.toUpstream = s.m.bytes.WithLabelValues(Ingress, "to_upstream")
	s.toClient = s.m.bytes.WithLabelValues(Ingress, "to_client")
	return s, nil
}

// Addr is the address the server listens on.
func (s *IngressServer) Addr() net.Addr { return s.ln.Addr() }

// Draining reports whether Run has stopped accepting.
func (s *IngressServer) Draining() bool { return s.draining.Load() }

// HandshakesInProgress is the number of connections in their TLS handshake.
func (s *IngressServer) HandshakesInProgress() int { return s.handshakes.inProgress() }

// OpenConns is the number of client connections open now.
func (s *IngressServer) OpenConns() int { return s.conns.len() }

// Run accepts until ctx is done, then stops accepting, lets open
// connections finish for up to DrainTimeout, closes the rest, and returns
// nil once every connection has ended and every goroutine it started has
// exited or is exiting.
func (s *IngressServer) Run(ctx context.Context) error {
	parked := s.splice.runParker()
	stop := context.AfterFunc(ctx, func() {
		// Closed first: Draining promises that nothing more is accepted.
		s.ln.Close()
		s.draining.Store(true)
	})
	defer stop()
	err := acceptLoop(ctx, s.ln, s.cfg.Log, func(c net.Conn) {
		if !s.conns.add(c) {
			s.refuse(c, "", "", "connection_limit", nil)
			c.Close()
			return
		}
		go func() {
			if !s.serve(c) {
				s.conns.done(c)
			}
		}()
	})
	if n := s.conns.drain(s.cfg.DrainTimeout); n > 0 {
		s.cfg.Log.Warn().Int("closed", n).Msg("drain timeout: closed open connections")
	}
	parked()
	return err
}

// serve handles one client connection from handshake to splice. It
// returns true once a splice owns the connection: the splice, not this
// goroutine (whose stack the handshake grew), finishes the accounting and
// tells the tracker when it ends.
func (s *IngressServer) serve(raw net.Conn) (spliced bool) {
	start := time.Now()
	tc, peer, ok := s.handshake(raw)
	if !ok {
		return false
	}
	s.open.Inc()
	defer func() {
		if !spliced {
			s.open.Dec()
		}
	}()
	sni := tc.ConnectionState().ServerName

	// Reading a header or an HTTP authority waits on the client: bound it.
	// The reader that keeps what was read for the backend is made only
	// when routing reads: SNI routing needs none, and saves its buffer.
	tc.SetReadDeadline(time.Now().Add(s.cfg.RouteTimeout))
	var br *bufio.Reader
	reader := func() *bufio.Reader {
		if br == nil {
			br = bufio.NewReaderSize(tc, sniffBufferSize)
		}
		return br
	}
	dest, reason, err := s.destination(tc.ConnectionState(), reader)
	if err != nil {
		s.refuseRouted(tc, peer, sni, reason, err)
		return false
	}
	tc.SetReadDeadline(time.Time{})
	endpoints, err := s.cfg.Router.Route(dest)
	if err != nil {
		s.refuseRouted(tc, peer, sni, routeReason(err), fmt.Errorf("%s.%s:%d: %w", dest.Service, dest.Namespace, dest.Port, err))
		return false
	}
	up, err := dialAny(context.Background(), s.cfg.Dial, endpoints, s.cfg.DialTimeout)
	if err != nil {
		s.refuseRouted(tc, peer, sni, "dial_failed", err)
		return false
	}
	if err := writeDialStatus(tc, statusConnected, s.cfg.RouteTimeout); err != nil {
		// The egress gave up waiting: it has moved on to another cluster.
		s.refuse(tc, peer, sni, "client_gone", err)
		tc.Close()
		up.Close()
		return false
	}
	s.requests.Inc()
	forgetPeerChain(tc) // authorized and routed: nothing reads it from here on
	client := tlsSide(tc, raw)
	if br != nil {
		client.r = br
	}
	sp := newSplicer(s.splice, client, plainSide(up), s.toUpstream, s.toClient, func(err error) {
		s.duration.Observe(time.Since(start).Seconds())
		if err != nil && !isExpectedNetErr(err) {
			s.cfg.Log.Debug().Err(err).Str("peer", peer).Str("remote", raw.RemoteAddr().String()).
				Str("upstream", up.RemoteAddr().String()).Msg("connection ended with error")
		}
		s.open.Dec()
		s.conns.done(raw)
	})
	s.conns.closeWith(raw, func() { sp.abort(errDrained) })
	sp.start()
	return true
}

// handshake runs the TLS handshake under HandshakeTimeout and a cap on
// concurrent unauthenticated connections, then authorizes the peer.
func (s *IngressServer) handshake(raw net.Conn) (*tls.Conn, string, bool) {
	slot, reason := s.handshakes.acquire(raw)
	if slot == nil {
		s.refuse(raw, "", "", reason, nil)
		raw.Close()
		return nil, "", false
	}
	capped := capHandshake(raw)
	tc := tls.Server(newTransport(capped, s.splice.buffers), s.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	cancel()
	capped.handshakeDone()
	s.handshakes.release(slot)
	var forbidden *forbiddenError
	if errors.As(err, &forbidden) {
		s.refuse(raw, forbidden.peer, tc.ConnectionState().ServerName, "forbidden_identity", forbidden.err)
		raw.Close()
		return nil, "", false
	}
	if err != nil {
		reason := handshakeReason(err)
		if slot.evicted.Load() {
			reason = "evicted"
		}
		s.m.handshakeFailures.WithLabelValues(Ingress, reason).Inc()
		s.cfg.Log.Info().Str("reason", reason).Str("remote", raw.RemoteAddr().String()).
			Err(err).Msg("handshake failed")
		raw.Close()
		return nil, "", false
	}
	s.m.handshakeSeconds.WithLabelValues(Ingress, strconv.FormatBool(tc.ConnectionState().DidResume)).
		Observe(time.Since(start).Seconds())
	// Authorized in the handshake already (see authorizing); asked again
	// for the peer's name, which the logs need.
	peer, err := s.cfg.Authorize(tc.ConnectionState())
	if err != nil {
		s.refuse(tc, peer, tc.ConnectionState().ServerName, "forbidden_identity", err)
		tc.Close()
		return nil, "", false
	}
	return tc, peer, true
}

// forbiddenError is a handshake that Authorize refused.
type forbiddenError struct {
	peer string
	err  error
}

func (e *forbiddenError) Error() string { return e.err.Error() }
func (e *forbiddenError) Unwrap() error { return e.err }

// authorizing returns a clone of base that runs authorize inside the
// handshake, after base's own VerifyConnection. A refused identity then
// fails the handshake, before the server sends its session ticket (right
// after the client's certificate is verified): a ticket would give it
// cheap handshakes to retry with.
func authorizing(base *tls.Config, authorize func(tls.ConnectionState) (string, error)) *tls.Config {
	cfg := base.Clone()
	verify := base.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		if peer, err := authorize(cs); err != nil {
			return &forbiddenError{peer: peer, err: err}
		}
		return nil
	}
	return cfg
}

// evictAge is how long a handshake must have been going on before a
// newcomer may evict it when every handshake slot is taken (see
// handshakeSlots): a quarter of the handshake timeout (2.5 s by default),
// plenty for a few round trips between clusters.
func evictAge(timeout time.Duration) time.Duration {
	return max(timeout/4, 50*time.Millisecond)
}

// destination picks the target in the design's order: transport header
// (when ALPN negotiated it), then an SNI naming a service, then the HTTP
// authority of the first request. A non-empty SNI must name a service of
// this cluster or be the gateway's own identity (what Linkerd clients
// send): anything else is refused rather than left to the bytes that
// follow, so that the SNI decides whenever there is one, including for a
// name in another cluster domain or with port 0.
func (s *IngressServer) destination(cs tls.ConnectionState, reader func() *bufio.Reader) (Destination, string, error) {
	sni, named, err := s.sniDestination(cs.ServerName)
	if err != nil {
		return Destination{}, "bad_target_name", err
	}
	if cs.NegotiatedProtocol == TransportHeaderALPN {
		d, reason, err := s.headerDestination(reader())
		if err != nil {
			return Destination{}, reason, err
		}
		if named && (d.Service != sni.Service || d.Namespace != sni.Namespace || (sni.Port != 0 && d.Port != sni.Port)) {
			return Destination{}, "bad_target_name", fmt.Errorf("transport header names %s.%s:%d, SNI %q", d.Service, d.Namespace, d.Port, cs.ServerName)
		}
		return d, "", nil
	}
	if named {
		return sni, "", nil
	}
	authority, err := SniffAuthority(reader())
	if err != nil {
		return Destination{}, readReason(err, "no_target"), err
	}
	d, err := ParseAuthority(authority, s.cfg.ClusterDomain)
	if err != nil {
		return Destination{}, "bad_target_name", fmt.Errorf("authority %q: %w", authority, err)
	}
	return d, "", nil
}

// sniDestination reads the SNI: named reports a service name (which then
// decides), and an error one that is neither empty, a service name of this
// cluster, nor the gateway's own identity.
func (s *IngressServer) sniDestination(sni string) (d Destination, named bool, err error) {
	if sni == "" {
		return Destination{}, false, nil
	}
	if d, err = ParseServiceName(sni, s.cfg.ClusterDomain); err == nil {
		return d, true, nil
	}
	if s.cfg.ServerIdentity != nil && strings.EqualFold(sni, s.cfg.ServerIdentity()) {
		return Destination{}, false, nil
	}
	return Destination{}, false, fmt.Errorf("SNI %q is neither a service of this cluster nor the gateway's identity: %w", sni, err)
}

// headerDestination reads the transport header's target.
func (s *IngressServer) headerDestination(r *bufio.Reader) (Destination, string, error) {
	h, err := ReadTransportHeader(r)
	if err != nil {
		return Destination{}, readReason(err, "bad_transport_header"), err
	}
	if h.Port < 1 || h.Port > 65535 {
		return Destination{}, "bad_transport_header", fmt.Errorf("%w: port %d", errBadHeader, h.Port)
	}
	d, err := ParseServiceName(h.Name, s.cfg.ClusterDomain)
	if err != nil {
		return Destination{}, "bad_target_name", fmt.Errorf("transport header name %q: %w", h.Name, err)
	}
	d.Port = int(h.Port)
	return d, "", nil
}

// readReason is route_timeout when reading the route ran into
// RouteTimeout, and otherwise the reason of what was being read.
func readReason(err error, reason string) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "route_timeout"
	}
	return reason
}

// refuse counts and logs one refused connection.
func (s *IngressServer) refuse(c net.Conn, peer, sni, reason string, err error) {
	s.m.refused.WithLabelValues(Ingress, reason).Inc()
	ev := s.cfg.Log.Info().Str("reason", reason).Str("remote", c.RemoteAddr().String())
	if peer != "" {
		ev = ev.Str("peer", peer)
	}
	if sni != "" {
		ev = ev.Str("sni", sni)
	}
	ev.Err(err).Msg("connection refused")
}

// refuseRouted refuses an authenticated connection that could not be
// routed: the status byte first, when the egress asked for it, so that it
// can try another cluster before its client sees anything.
func (s *IngressServer) refuseRouted(tc *tls.Conn, peer, sni, reason string, err error) {
	s.refuse(tc, peer, sni, reason, err)
	_ = writeDialStatus(tc, statusOf(reason), s.cfg.RouteTimeout)
	tc.Close()
}

func routeReason(err error) string {
	switch {
	case errors.Is(err, ErrNotExported):
		return "not_exported"
	case errors.Is(err, ErrUnknownPort):
		return "unknown_port"
	case errors.Is(err, ErrNoEndpoints):
		return "no_endpoints"
	}
	return "route_error"
}

// withALPN returns a server config that negotiates the transport header
// protocol when the client offers it, and otherwise agrees to the client's
// first choice: the gateway is a tunnel to a service that speaks what the
// client asked for, and refusing unknown protocols would break h2 clients.
func withALPN(base *tls.Config) *tls.Config {
	header := base.Clone()
	header.NextProtos = []string{TransportHeaderALPN}
	none := base.Clone()
	none.NextProtos = nil
	status := base.Clone()
	status.NextProtos = []string{DialStatusALPN}
	cfg := base.Clone()
	inner := base.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if inner != nil {
			// The identity package does not use this hook today; if it
			// ever does, its choice wins and ALPN is left to it.
			return inner(hello)
		}
		switch {
		case slices.Contains(hello.SupportedProtos, TransportHeaderALPN):
			return header, nil
		case slices.Contains(hello.SupportedProtos, DialStatusALPN):
			return status, nil
		case len(hello.SupportedProtos) == 0:
			return none, nil
		}
		c := base.Clone()
		c.NextProtos = hello.SupportedProtos[:1]
		return c, nil
	}
	return cfg
}

// dialAny connects to one of endpoints, starting at a random one and
// trying the others in turn until one answers or the timeout expires.
func dialAny(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), endpoints []string, timeout time.Duration) (net.Conn, error) {
	if len(endpoints) == 0 {
		return nil, ErrNoEndpoints
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	first := rand.IntN(len(endpoints))
	var errs []error
	for i := range endpoints {
		addr := endpoints[(first+i)%len(endpoints)]
		c, err := dial(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
