package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/static"
	"github.com/mcgate/mcgate/probe"
	"github.com/mcgate/mcgate/proxy"
)

// gatewayOptions are the flags of `mcgate gateway`.
type gatewayOptions struct {
	identityDir      string
	identityPoll     time.Duration
	leafWarning      time.Duration
	listenAddr       string
	adminAddr        string
	probeAddr        string
	staticConfig     string
	allowIdentities  []string
	clusterDomain    string
	clusterName      string
	handshakeTimeout time.Duration
	routeTimeout     time.Duration
	dialTimeout      time.Duration
	idleTimeout      time.Duration
	writeStall       time.Duration
	unsentLimitKiB   int
	parkDelay        time.Duration
	drainTimeout     time.Duration
	maxConns         int
	bufferMiB        int64
	maxHandshakes    int
	maxPerSource     int
	logLevel         string
	logFormat        string
	pprof            bool
	mirror           mirrorFlags
}

// bufferMemory is --buffer-memory-mib in the proxy's terms (<0: none).
func (o *gatewayOptions) bufferMemory() int64 {
	if o.bufferMiB <= 0 {
		return -1
	}
	return o.bufferMiB << 20
}

func newGatewayCmd() *cobra.Command {
	var o gatewayOptions
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the gateway: mTLS ingress on :4143, egress listeners, admin on :4191",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGateway(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.identityDir, "identity-dir", "/var/run/mcgate/identity", "directory with tls.crt (leaf, then chain), tls.key and ca.crt (trust anchors)")
	f.DurationVar(&o.identityPoll, "identity-poll-interval", identity.DefaultPollInterval, "how often to look for rotated identity files")
	f.DurationVar(&o.leafWarning, "leaf-expiry-warning", identity.DefaultLeafExpiryWarning, "warn in the log when the leaf certificate ends within this (at every load, and when it enters the window; negative: never)")
	f.StringVar(&o.listenAddr, "listen-addr", ":4143", "ingress address (mTLS from other clusters)")
	f.StringVar(&o.adminAddr, "admin-addr", ":4191", "admin address (/ready, /live, /metrics)")
	f.StringVar(&o.probeAddr, "probe-addr", "", "address serving only /ready and /live, for other clusters' probes through the load balancer (default: none; probes use --admin-addr)")
	f.StringVar(&o.staticConfig, "static-config", "", "YAML file of exported services and egress listeners (instead of Kubernetes)")
	f.StringArrayVar(&o.allowIdentities, "allow-identity", nil, "client identity allowed to connect, exact or with a trailing * (repeatable; default: any identity issued under the trust anchor)")
	f.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "this cluster's DNS domain")
	f.StringVar(&o.clusterName, "cluster-name", "local", "this cluster's name, the cluster label of ingress metrics")
	f.DurationVar(&o.handshakeTimeout, "handshake-timeout", 10*time.Second, "TLS handshake deadline")
	f.DurationVar(&o.routeTimeout, "route-timeout", 10*time.Second, "deadline for reading the transport header or HTTP authority")
	f.DurationVar(&o.dialTimeout, "dial-timeout", 5*time.Second, "backend or remote gateway connect deadline")
	f.DurationVar(&o.idleTimeout, "idle-timeout", time.Hour, "close connections with no bytes either way for this long (0: 1h, negative: never)")
	f.IntVar(&o.unsentLimitKiB, "unsent-limit-kib", 0, "KiB each spliced socket may queue unsent (TCP_NOTSENT_LOWAT) for a peer that does not read; 0: the kernel's autotuning (faster bulk, up to tcp_wmem's maximum per stalled peer until --write-stall-timeout)")
	f.DurationVar(&o.writeStall, "write-stall-timeout", proxy.DefaultWriteStallTimeout, "reset a connection whose client or backend took none of the bytes written to it for this long (negative: only --idle-timeout)")
	f.DurationVar(&o.parkDelay, "park-delay", time.Second, "a connection direction that carried no byte this long waits in epoll without a goroutine or buffer (negative: never)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long open connections may finish")
	f.IntVar(&o.maxConns, "max-conns", 10000, "open client connections per direction")
	f.Int64Var(&o.bufferMiB, "buffer-memory-mib", proxy.DefaultBufferMemory>>20, "MiB of 64 KiB bulk buffers the busy connections of each direction may hold at once; past it they copy through small buffers (0: none)")
	f.IntVar(&o.maxHandshakes, "max-handshakes", 1000, "concurrent unauthenticated (handshaking) connections")
	f.IntVar(&o.maxPerSource, "max-handshakes-per-source", 0, "concurrent handshakes from one client IP (default: a tenth of --max-handshakes)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "json", "json or console")
	f.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof/ on the admin port")
	o.mirror.register(f)
	return cmd
}

func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// runGateway wires the gateway and runs it until ctx ends, then drains in
// order: stop accepting and let connections finish (ingress and egress in
// parallel, up to --drain-timeout), and only then stop the admin server, so
// that /ready answers 503 during the drain.
func runGateway(ctx context.Context, o gatewayOptions, stderr io.Writer) error {
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if o.staticConfig != "" && o.mirror.kubeconfig != "" {
		return errors.New("gateway: --static-config and --kubeconfig exclude each other: the static file replaces Kubernetes")
	}
	if n, err := applyContainerMemoryLimit(); err != nil {
		log.Warn().Err(err).Msg("no soft memory limit from the container")
	} else if n > 0 {
		log.Info().Int64("bytes", n).Msg("soft memory limit: 90% of the container's")
	}
	if !proxy.ReleasesTLSState() {
		goVersion, reviewed, found := proxy.TLSStateReview()
		log.Warn().Str("go", goVersion).Strs("reviewed_go", reviewed).Bool("tls_fields_found", found).
			Msg("this Go's crypto/tls was not reviewed for mcgate: idle connections keep their TLS buffers (about 40 KiB more each)")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	src, err := identity.NewFileSource(identity.FileSourceConfig{
		Dir: o.identityDir, PollInterval: o.identityPoll, Metrics: reg, ExpiryWarning: o.leafWarning,
		Log: log.With().Str("component", "identity").Logger(),
	})
	if err != nil {
		return err
	}
	authz, err := identity.NewAuthorizer(o.allowIdentities)
	if err != nil {
		return err
	}
	// The route table and egress listeners come from the static file, or
	// else from Kubernetes (the mirror, with in-cluster config by default).
	var (
		router    proxy.Router
		staticEgr []static.Egress
		mirrorRT  *mirrorRuntime
	)
	if o.staticConfig != "" {
		cfg, err := static.Load(o.staticConfig)
		if err != nil {
			return err
		}
		router, staticEgr = cfg.Table(), cfg.Egress
	} else {
		if mirrorRT, err = newMirror(o.mirror, o.clusterDomain, log, reg); err != nil {
			return err
		}
		router = mirrorRT.Router()
	}
	metrics := proxy.NewMetrics(reg)
	ingress, err := proxy.NewIngress(proxy.IngressConfig{
		ListenAddr: o.listenAddr, TLS: identity.ServerTLSConfig(src), Authorize: authz.Authorize,
		Router: router, ClusterDomain: o.clusterDomain, Cluster: o.clusterName,
		ServerIdentity:   func() string { return src.Name().DNS() },
		HandshakeTimeout: o.handshakeTimeout, RouteTimeout: o.routeTimeout, DialTimeout: o.dialTimeout,
		IdleTimeout: o.idleTimeout, WriteStallTimeout: o.writeStall, UnsentLimit: o.unsentLimitKiB << 10, ParkDelay: o.parkDelay, DrainTimeout: o.drainTimeout,
		MaxConns: o.maxConns, MaxHandshakes: o.maxHandshakes, MaxHandshakesPerSource: o.maxPerSource,
		BufferMemory: o.bufferMemory(),
		Log:          log.With().Str("component", "ingress").Logger(), Metrics: metrics,
	})
	if err != nil {
		return err
	}
	egress := proxy.NewEgress(proxy.EgressConfig{
		DialTimeout: o.dialTimeout, IdleTimeout: o.idleTimeout, WriteStallTimeout: o.writeStall, UnsentLimit: o.unsentLimitKiB << 10, ParkDelay: o.parkDelay, DrainTimeout: o.drainTimeout,
		MaxConns: o.maxConns, BufferMemory: o.bufferMemory(), Log: log.With().Str("component", "egress").Logger(), Metrics: metrics,
	})
	tlsFor := newEgressTLS(src)
	routes, err := egressRoutes(tlsFor, staticEgr)
	if err != nil {
		return err
	}
	if err := egress.Update(routes); err != nil {
		return err
	}

	var draining atomic.Bool
	ready := func() error {
		if draining.Load() {
			return errors.New("draining")
		}
		if mirrorRT != nil && !mirrorRT.m.Synced() {
			return errors.New("waiting for the Kubernetes caches")
		}
		return nil
	}
	admin, err := probe.NewAdmin(probe.AdminConfig{
		Addr: o.adminAddr, Gatherer: reg, Pprof: o.pprof, Ready: ready,
		Log: log.With().Str("component", "admin").Logger(),
	})
	if err != nil {
		return err
	}
	admins := []*probe.Admin{admin}
	if o.probeAddr != "" {
		p, err := probe.NewAdmin(probe.AdminConfig{
			Addr: o.probeAddr, ProbeOnly: true, Ready: ready,
			Log: log.With().Str("component", "probe").Logger(),
		})
		if err != nil {
			admin.Close()
			return err
		}
		admins = append(admins, p)
	}
	log.Info().Str("listen", ingress.Addr().String()).Str("admin", admin.Addr().String()).Str("probe", o.probeAddr).
		Int("egress", len(routes)).Str("identity", src.Name().String()).Str("version", version).Msg("gateway started")

	g, gctx := errgroup.WithContext(ctx)
	// The admin servers outlive the drain, so that /ready answers 503
	// while connections finish.
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	for _, a := range admins {
		g.Go(func() error { return a.Run(adminCtx) })
	}
	g.Go(func() error {
		defer stopAdmin()
		stopDrain := context.AfterFunc(gctx, func() {
			draining.Store(true)
			log.Info().Dur("drain_timeout", o.drainTimeout).Msg("draining")
		})
		defer stopDrain()
		pg, pctx := errgroup.WithContext(gctx)
		pg.Go(func() error { return src.Run(pctx) })
		pg.Go(func() error { return ingress.Run(pctx) })
		pg.Go(func() error { return egress.Run(pctx) })
		pg.Go(func() error {
			return newMemoryReleaser(metrics.BytesSpliced, log.With().Str("component", "memory").Logger()).Run(pctx)
		})
		if mirrorRT != nil {
			mirrorRT.run(pctx, pg, tlsFor, egress, log)
		}
		return pg.Wait()
	})
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info().Msg("gateway stopped")
	return nil
}

// egressRoutes builds the proxy's egress routes of the static file.
func egressRoutes(tlsFor *egressTLS, entries []static.Egress) ([]proxy.EgressRoute, error) {
	var routes []proxy.EgressRoute
	for _, e := range entries {
		c, name, err := tlsFor.config(e.GatewayIdentity, e.Addresses())
		if err != nil {
			return nil, fmt.Errorf("egress %s: gatewayIdentity: %w", e.Listen, err)
		}
		r := proxy.EgressRoute{
			Listen: e.Listen, Cluster: e.Cluster, GatewayAddresses: e.Addresses(),
			Target: e.Target, TLS: c,
		}
		if strings.EqualFold(e.Mode, "transport-header") {
			r.TransportHeader, r.ServerName = true, name.DNS()
		}
		routes = append(routes, r)
	}
	return routes, nil
}

// egressTLS hands out one client TLS config per remote gateway (identity
// and addresses) and keeps it for the life of the process:
//   - session tickets are cached per config, by SNI, and every cluster's
//     gateway usually has the same identity and serves the same service
//     names, so a config shared by two remote clusters would make them evict
//     each other's tickets;
//   - the egress set compares configs by pointer to tell a changed route
//     from an unchanged one, so a config made anew at every update would
//     rebind every listener and lose its sessions.
type egressTLS struct {
	src     *identity.FileSource
	mu      sync.Mutex
	configs map[string]*tls.Config
}

func newEgressTLS(src *identity.FileSource) *egressTLS {
	return &egressTLS{src: src, configs: map[string]*tls.Config{}}
}

func (e *egressTLS) config(gatewayIdentity string, addrs []string) (*tls.Config, identity.Name, error) {
	name, err := identity.ParseName(gatewayIdentity)
	if err != nil {
		return nil, identity.Name{}, err
	}
	key := name.String() + " " + strings.Join(addrs, ",")
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.configs[key]
	if !ok {
		c = identity.ClientTLSConfig(e.src, name)
		e.configs[key] = c
	}
	return c, name, nil
}
