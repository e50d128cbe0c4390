// Package probe serves the gateway's admin port (/ready, /live, /metrics)
// and runs the workers that probe remote gateways.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
)

// AdminConfig configures the admin server.
type AdminConfig struct {
	Addr     string       // default ":4191", unless Listener is set
	Listener net.Listener // closed by the server
	Gatherer prometheus.Gatherer
	// Ready returns nil when the gateway can serve (identity loaded,
	// listeners up) and an error saying why not otherwise (e.g. draining).
	Ready func() error
	// Pprof adds /debug/pprof/ (off by default: it exposes internals).
	Pprof bool
	// ProbeOnly serves /ready and /live and nothing else: the listener
	// behind the gateway Service's mc-probe port, which other clusters (and
	// whoever else reaches the load balancer) probe. Metrics and pprof stay
	// on the admin port, reachable inside the cluster only.
	ProbeOnly bool
	// MaxConns caps the open connections (default DefaultMaxConns): past
	// it, newcomers wait in the kernel's accept queue and hold no
	// descriptor of the process, so the admin and probe ports cannot take
	// the descriptors the data plane's listeners need.
	MaxConns int
	// IdleTimeout closes a keep-alive connection idle this long
	// (default 30s).
	IdleTimeout time.Duration
	Log         zerolog.Logger
}

// Bounds of the admin server; the probe port is reachable through the load
// balancer without any credential, so none of them may be unbounded.
const (
	// DefaultMaxConns is AdminConfig.MaxConns unless set.
	DefaultMaxConns         = 64
	defaultAdminIdleTimeout = 30 * time.Second
	adminReadHeaderTimeout  = 5 * time.Second
	adminReadTimeout        = 10 * time.Second // requests are GETs: headers and no body
	adminWriteTimeout       = 30 * time.Second // a /metrics response to a client that reads slowly
	adminMaxHeaderBytes     = 8 << 10
	// pprofWriteTimeout lets /debug/pprof/profile and /trace run their
	// default 30 s and more (they refuse a duration past WriteTimeout).
	pprofWriteTimeout = 5 * time.Minute
)

// Admin is the admin HTTP server.
type Admin struct {
	cfg AdminConfig
	ln  net.Listener
	srv *http.Server
}

// NewAdmin binds the admin listener; Run serves it.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if cfg.Ready == nil || (cfg.Gatherer == nil && !cfg.ProbeOnly) {
		return nil, errors.New("probe: admin needs a Gatherer and a Ready func")
	}
	if cfg.Addr == "" {
		cfg.Addr = ":4191"
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultAdminIdleTimeout
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("probe: admin: %w", err)
		}
	}
	a := &Admin{cfg: cfg, ln: netutil.LimitListener(ln, cfg.MaxConns)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("live\n"))
	})
	if !cfg.ProbeOnly {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	if cfg.Pprof && !cfg.ProbeOnly {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
	}
	if cfg.Pprof && !cfg.ProbeOnly {
		a.srv.WriteTimeout = pprofWriteTimeout
	}
	return a, nil
}

// Addr is the address the admin server listens on.
func (a *Admin) Addr() net.Addr { return a.ln.Addr() }

func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	if err := a.cfg.Ready(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// Close releases the listener of an Admin that will not Run.
func (a *Admin) Close() error { return a.ln.Close() }

// Run serves until ctx is done, then shuts down gracefully. The caller
// keeps ctx alive while the proxies drain, so that /ready can say so.
func (a *Admin) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("probe: admin: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(shutdownCtx)
	<-errc // Serve returns ErrServerClosed once Shutdown starts
	return err
}
