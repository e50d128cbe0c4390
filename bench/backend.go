package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	echoSNI    = "echo.bench.svc.cluster.local"
	discardSNI = "discard.bench.svc.cluster.local"
)

// Every address of a run is on one loopback /24 (127.0.0.x by default):
// .1 backends, .2 ingress proxies, .3 egress proxies. The test picks another
// /24, so that it can run while a full bench runs on the same machine.
var loopback = "127.0.0"

func ingressAddr(port int) string { return fmt.Sprintf("%s.2:%d", loopback, port) }
func egressAddr(port int) string  { return fmt.Sprintf("%s.3:%d", loopback, port) }
func backendAddr(port int) string { return fmt.Sprintf("%s.1:%d", loopback, port) }

// Backend addresses. Plain ones stand behind every proxy; the TLS ones are the
// "direct" system: the client's mTLS ends in the backend itself, no hop.
func echoAddr() string          { return backendAddr(18080) }
func discardAddr() string       { return backendAddr(18081) }
func directEchoAddr() string    { return backendAddr(18443) }
func directDiscardAddr() string { return backendAddr(18444) }

// backends serves echo and discard on loopback, in the harness process (so on
// the load generator's core), and counts what discard received: bulk
// throughput is what arrived, not what the client managed to buffer.
type backends struct {
	discarded atomic.Int64
	lns       []net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
}

func startBackends(serverTLS *tls.Config) (*backends, error) {
	b := &backends{conns: map[net.Conn]struct{}{}}
	for _, l := range []struct {
		addr    string
		tls     bool
		discard bool
	}{{echoAddr(), false, false}, {discardAddr(), false, true}, {directEchoAddr(), true, false}, {directDiscardAddr(), true, true}} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("backend %s: %w", l.addr, err)
		}
		if l.tls {
			ln = tls.NewListener(ln, serverTLS)
		}
		b.lns = append(b.lns, ln)
		b.wg.Add(1)
		go b.serve(ln, l.discard)
	}
	return b, nil
}

func (b *backends) serve(ln net.Listener, discard bool) {
	defer b.wg.Done()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors (EMFILE) and the like pass: keep serving,
			// as servers do, rather than silently losing the backend.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if discard {
				b.sink(c)
			} else {
				echo(c)
			}
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
			c.Close()
		}()
	}
}

// echo copies back until the client half-closes, then half-closes too. It
// copies through a buffer on purpose: io.Copy between TCP conns would splice
// through a pipe, two more descriptors per idle connection in this process.
func echo(c net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	closeWrite(c)
}

// open is the number of connections the backends hold.
func (b *backends) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// settle waits (bounded) until the backends hold at most n connections, so
// a cell starts once the previous one's connections are gone.
func (b *backends) settle(n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for b.open() > n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *backends) sink(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		b.discarded.Add(int64(n))
		if err != nil {
			return
		}
	}
}

func (b *backends) close() {
	for _, ln := range b.lns {
		ln.Close()
	}
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// target is where a scenario's client connects: through TLS with this SNI, or
// plain TCP (the app side of an egress listener).
type target struct {
	Addr string
	SNI  string
	TLS  bool
}

// dialer opens one scenario's client connections to its target; with resume
// set, TLS clients resume sessions from a shared cache.
type dialer struct {
	t   target
	cfg *tls.Config
}

func newDialer(base *tls.Config, t target, resume bool) *dialer {
	cfg := base.Clone()
	cfg.ServerName = t.SNI
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return &dialer{t: t, cfg: cfg}
}

// dial returns a connection ready for application bytes and whether its TLS
// session was resumed.
func (d *dialer) dial(ctx context.Context) (net.Conn, bool, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.t.Addr)
	if err != nil {
		return nil, false, err
	}
	if !d.t.TLS {
		return c, false, nil
	}
	tc := tls.Client(&batchConn{Conn: c}, d.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, false, fmt.Errorf("handshake with %s: %w", d.t.Addr, err)
	}
	return tc, tc.ConnectionState().DidResume, nil
}

// batchConn lets writeBatched send the TLS records of one large write with
// one syscall: crypto/tls writes each 16 KiB record with its own, which
// makes the load generator's core, not the proxy's, the bound of bulk cells.
type batchConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	held    []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.holding {
		return b.Conn.Write(p)
	}
	b.held = append(b.held, p...)
	return len(p), nil
}

// writeBatched writes p to c, a connection from dialer.dial, gathering its
// TLS records into one syscall.
func writeBatched(c net.Conn, p []byte) error {
	tc, ok := c.(*tls.Conn)
	if !ok {
		_, err := c.Write(p)
		return err
	}
	bc := tc.NetConn().(*batchConn)
	bc.mu.Lock()
	bc.holding = true
	bc.mu.Unlock()
	_, err := tc.Write(p)
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.holding = false
	if err == nil {
		_, err = bc.Conn.Write(bc.held)
	}
	bc.held = bc.held[:0]
	return err
}

// isClosed tells the errors a run's own shutdown causes from real ones.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
