package proxy_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

// Tests of parking (park.go): a direction idle for the park delay gives up
// its goroutine and buffer and resumes when its socket is readable. Park
// delays are short, so the tests wait for parking as an event (the
// gateway_parked_directions gauge), never for time.

const testParkDelay = 10 * time.Millisecond

func withParkDelay(d time.Duration) pairOpt {
	return func(i *proxy.IngressConfig, e *proxy.EgressConfig) { i.ParkDelay, e.ParkDelay = d, d }
}

// parkRoute is a way to a backend with parking on: straight to an ingress
// gateway (one hop), or through an egress→ingress tunnel (two hops).
type parkRoute struct {
	hops int
	regs []*prometheus.Registry // one per hop, the first hop first
	// connect opens a client connection; raw is its TCP connection.
	connect func() (c net.Conn, raw *net.TCPConn, err error)
	// listen is the first hop's address.
	listen string
	// stop ends the first hop's Run (its drain included).
	stop func() error
	// logs of the ingress gateway.
	logs *testproxy.SyncBuffer
}

var routeKinds = []string{"ingress", "tunnel"}

func startParkRoute(t *testing.T, kind, backend string, opts ...pairOpt) *parkRoute {
	t.Helper()
	if kind == "tunnel" {
		p := startPair(t, backend, nil, opts...)
		return &parkRoute{hops: 2, regs: []*prometheus.Registry{p.reg, p.east.reg}, listen: p.listen, stop: p.stop,
			logs: p.east.logs, connect: func() (net.Conn, *net.TCPConn, error) {
				c, err := net.DialTimeout("tcp", p.listen, 5*time.Second)
				if err != nil {
					return nil, nil, err
				}
				return c, c.(*net.TCPConn), nil
			}}
	}
	ca := testpki.New(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {backend}}}, nil, func(c *proxy.IngressConfig) {
		for _, o := range opts {
			o(c, &proxy.EgressConfig{})
		}
	})
	cfg := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	cfg.ServerName = "api.production.svc.cluster.local"
	stop := sync.OnceValue(func() error {
		gw.cancel()
		err := <-gw.done
		gw.done <- err // for the cleanup
		return err
	})
	return &parkRoute{hops: 1, regs: []*prometheus.Registry{gw.reg}, listen: gw.Addr().String(), stop: stop, logs: gw.logs,
		connect: func() (net.Conn, *net.TCPConn, error) {
			raw, err := net.DialTimeout("tcp", gw.Addr().String(), 5*time.Second)
			if err != nil {
				return nil, nil, err
			}
			c := tls.Client(raw, cfg)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if err := c.Handshake(); err != nil {
				raw.Close()
				return nil, nil, err
			}
			c.SetDeadline(time.Time{})
			return c, raw.(*net.TCPConn), nil
		}}
}

// dial opens a client connection that the test's end closes.
func (r *parkRoute) dial(t *testing.T) (net.Conn, *net.TCPConn) {
	t.Helper()
	c, raw, err := r.connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, raw
}

// gauge sums name over every hop.
func (r *parkRoute) gauge(t *testing.T, name string) int {
	t.Helper()
	n := 0.0
	for _, reg := range r.regs {
		n += counter(t, reg, name, nil)
	}
	return int(n)
}

// waitParked waits until perHop directions are parked on every hop, in all.
func (r *parkRoute) waitParked(t *testing.T, perHop int) {
	t.Helper()
	wait.Until(t, 10*time.Second, fmt.Sprintf("%d parked directions per hop", perHop), func() bool {
		return r.gauge(t, "gateway_parked_directions") == perHop*r.hops
	})
}

// waitClosed waits until no hop has an open connection or a parked direction.
func (r *parkRoute) waitClosed(t *testing.T) {
	t.Helper()
	wait.Until(t, 10*time.Second, "every connection closed, nothing parked", func() bool {
		return r.gauge(t, "gateway_open_connections") == 0 && r.gauge(t, "gateway_parked_directions") == 0
	})
}

// firstHopRefuses reports whether the first hop no longer accepts.
func (r *parkRoute) firstHopRefuses() bool {
	c, err := net.DialTimeout("tcp", r.listen, time.Second)
	if err == nil {
		c.Close()
	}
	return err != nil
}

// scriptedBackend starts a backend that echoes the first message of each
// connection (5 bytes), waits for the test's cue, then runs then.
func scriptedBackend(t *testing.T, then func(net.Conn)) (addr string, cue func()) {
	t.Helper()
	ch := make(chan struct{})
	cue = sync.OnceFunc(func() { close(ch) })
	t.Cleanup(cue) // before the backend's cleanup, which waits for serve
	be := testproxy.NewBackend(t, func(c net.Conn) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
		<-ch
		then(c)
	})
	return be.Addr(), cue
}

// TestParkedIngressResumes: an idle connection parks both directions and
// carries data both ways again, as often as it goes idle, in every routing
// form: a sniffed HTTP/1 request and a transport header leave a reader in
// front of the TLS connection, which is drained before parking.
func TestParkedIngressResumes(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil,
		func(c *proxy.IngressConfig) { c.ParkDelay = testParkDelay })
	client := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	gwName := testpki.Name(t, gwSA, gwNS).DNS()
	bytesTotal := func(flow string) float64 {
		return counter(t, gw.reg, "gateway_bytes_total", map[string]string{"direction": "ingress", "flow": flow})
	}
	parked := func() float64 {
		return counter(t, gw.reg, "gateway_parked_directions", map[string]string{"direction": "ingress"})
	}
	for _, tt := range []struct {
		name    string
		sni     string
		alpn    []string
		preface []byte
	}{
		{"sni", "api.production.svc.cluster.local", nil, nil},
		{"transport header", gwName, []string{proxy.TransportHeaderALPN},
			proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: 8080, Name: "api.production.svc.cluster.local"})},
		{"http1 host", gwName, nil, []byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local:8080\r\n\r\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up0, down0 := bytesTotal("to_upstream"), bytesTotal("to_client")
			c, err := dialTLS(t, gw.Addr().String(), client, tt.sni, tt.alpn...)
			if err != nil {
				t.Fatal(err)
			}
			first := string(tt.preface) + "before parking"
			if tt.alpn != nil {
				if _, err := c.Write(tt.preface); err != nil { // consumed by the gateway
					t.Fatal(err)
				}
				first = "before parking"
			}
			sent := 0
			for i, msg := range []string{first, "after parking", "after parking again"} {
				if i > 0 {
					wait.Until(t, 10*time.Second, "both directions parked", func() bool { return parked() == 2 })
					if n := gw.OpenConns(); n != 1 {
						t.Fatalf("OpenConns = %d with the connection parked, want 1", n)
					}
					wait.Until(t, 10*time.Second, "no goroutine left for the parked connection", func() bool { return connGoroutines() == 0 })
				}
				if got, err := echo(c, msg); err != nil || got != msg {
					t.Fatalf("echo %d = %q, %v; want %q", i, got, err, msg)
				}
				sent += len(msg)
			}
			c.Close()
			wait.Until(t, 10*time.Second, "connection closed, nothing parked", func() bool { return gw.OpenConns() == 0 && parked() == 0 })
			if up, down := bytesTotal("to_upstream")-up0, bytesTotal("to_client")-down0; up != float64(sent) || down != float64(sent) {
				t.Errorf("bytes to_upstream %v, to_client %v; want %d each", up, down, sent)
			}
		})
	}
}

// TestParkedTunnelResumes: both gateways of a tunnel park an idle
// connection, and it carries data again.
func TestParkedTunnelResumes(t *testing.T) {
	be := newBackend(t)
	r := startParkRoute(t, "tunnel", be.Addr(), withParkDelay(testParkDelay))
	c, _ := r.dial(t)
	for i, msg := range []string{"before", "after parking", "after parking again"} {
		if i > 0 {
			r.waitParked(t, 2)
			wait.Until(t, 10*time.Second, "no goroutine left for the parked connection", func() bool { return connGoroutines() == 0 })
		}
		if got, err := echo(c, msg); err != nil || got != msg {
			t.Fatalf("echo %d = %q, %v; want %q", i, got, err, msg)
		}
	}
	c.Close()
	r.waitClosed(t)
}

// TestHalfCloseWhileParked: with both directions parked, the backend's
// FIN reaches the client after its last bytes; the client's direction
// stays parked, then its answer and FIN reach the backend.
func TestHalfCloseWhileParked(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			received := make(chan []byte, 1)
			backend, cue := scriptedBackend(t, func(c net.Conn) {
				io.WriteString(c, "bye")
				c.(*net.TCPConn).CloseWrite()
				b, _ := io.ReadAll(c)
				received <- b
			})
			r := startParkRoute(t, kind, backend, withParkDelay(testParkDelay))
			c, _ := r.dial(t)
			if got, err := echo(c, "hello"); err != nil || got != "hello" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			r.waitParked(t, 2)
			cue()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if got, err := io.ReadAll(c); err != nil || string(got) != "bye" {
				t.Fatalf("client read %q, %v; want bye and EOF", got, err)
			}
			r.waitParked(t, 1) // the client's direction, still idle
			const answer = "answer after the backend's FIN"
			if _, err := io.WriteString(c, answer); err != nil {
				t.Fatal(err)
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			select {
			case b := <-received:
				if string(b) != answer {
					t.Fatalf("backend received %q, want %q", b, answer)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("backend never saw the answer and EOF")
			}
			r.waitClosed(t)
		})
	}
}

// TestResetWhileParked: a reset by either peer of a parked connection
// reaches the other peer as a reset, and nothing stays open or parked.
func TestResetWhileParked(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind+"/backend resets", func(t *testing.T) {
			backend, cue := scriptedBackend(t, func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) })
			r := startParkRoute(t, kind, backend, withParkDelay(testParkDelay))
			c, _ := r.dial(t)
			if _, err := echo(c, "hello"); err != nil {
				t.Fatal(err)
			}
			r.waitParked(t, 2)
			cue()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client read: %v, want a reset", err)
			}
			r.waitClosed(t)
		})
		t.Run(kind+"/client resets", func(t *testing.T) {
			got := make(chan error, 1)
			backend, cue := scriptedBackend(t, func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := c.Read(make([]byte, 1))
				got <- err
			})
			cue() // the backend reads on at once
			r := startParkRoute(t, kind, backend, withParkDelay(testParkDelay))
			c, raw := r.dial(t)
			if _, err := echo(c, "hello"); err != nil {
				t.Fatal(err)
			}
			r.waitParked(t, 2)
			raw.SetLinger(0)
			raw.Close()
			if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("backend read: %v, want a reset", err)
			}
			r.waitClosed(t)
		})
	}
}

// TestIdleTimeoutWhileParked: a connection parked both ways is closed once
// idle for the idle timeout, though no goroutine reads it.
func TestIdleTimeoutWhileParked(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			be := newBackend(t)
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(testParkDelay),
				func(i *proxy.IngressConfig, e *proxy.EgressConfig) {
					i.IdleTimeout, e.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
				})
			c, _ := r.dial(t)
			if _, err := echo(c, "hello"); err != nil {
				t.Fatal(err)
			}
			r.waitParked(t, 2)
			r.waitClosed(t)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("client read after the idle timeout: %v, want the connection closed", err)
			}
		})
	}
}

// TestIdlePairWithOneActiveDirection: a pair whose one direction is parked
// (the backend never answers) lives past the idle timeout while the other
// direction carries bytes.
func TestIdlePairWithOneActiveDirection(t *testing.T) {
	var received sync.WaitGroup
	received.Add(1)
	var got int64
	be := testproxy.NewBackend(t, func(c net.Conn) {
		got, _ = io.Copy(io.Discard, c)
		received.Done()
	})
	const idle = 200 * time.Millisecond
	r := startParkRoute(t, "ingress", be.Addr(), withParkDelay(testParkDelay),
		func(i *proxy.IngressConfig, _ *proxy.EgressConfig) { i.IdleTimeout = idle })
	c, _ := r.dial(t)
	chunk := make([]byte, 1024)
	sent := 0
	write := func() {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("write after %d bytes: %v", sent, err)
		}
		sent += len(chunk)
	}
	write()
	wait.Until(t, 10*time.Second, "the backend's direction parked", func() bool { return r.gauge(t, "gateway_parked_directions") >= 1 })
	// Bytes keep flowing one way for three idle timeouts.
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for end := time.Now().Add(3 * idle); time.Now().Before(end); <-tick.C {
		write()
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	received.Wait()
	if got != int64(sent) {
		t.Fatalf("backend received %d bytes, want %d", got, sent)
	}
	c.Close()
	r.waitClosed(t)
}

// TestDrainWithParkedConnections: parked connections count as open during
// a drain, wake and work when their clients speak, and the drain ends as
// soon as they close, with none closed by force.
func TestDrainWithParkedConnections(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			be := newBackend(t)
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(testParkDelay),
				func(i *proxy.IngressConfig, e *proxy.EgressConfig) {
					i.DrainTimeout, e.DrainTimeout = time.Minute, time.Minute
				})
			conns := make([]net.Conn, 3)
			for i := range conns {
				conns[i], _ = r.dial(t)
				if _, err := echo(conns[i], "hello"); err != nil {
					t.Fatal(err)
				}
			}
			r.waitParked(t, 2*len(conns))
			stopped := make(chan error, 1)
			go func() { stopped <- r.stop() }()
			wait.Until(t, 10*time.Second, "first hop refusing connections", r.firstHopRefuses)
			for i, c := range conns {
				if got, err := echo(c, "during drain"); err != nil || got != "during drain" {
					t.Fatalf("connection %d during drain: %q, %v", i, got, err)
				}
				select {
				case err := <-stopped:
					t.Fatalf("drain ended (%v) with connections open", err)
				default:
				}
				c.Close()
			}
			select {
			case err := <-stopped:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("drain did not end after the last connection closed")
			}
			if kind == "ingress" && contains(r.logs.String(), "drain timeout") {
				t.Errorf("connections closed by force:\n%s", r.logs.String())
			}
			if n := counter(t, r.regs[0], "gateway_parked_directions", nil); n != 0 {
				t.Errorf("%v directions still parked after the drain", n)
			}
		})
	}
}

// TestDrainTimeoutClosesParked: connections still parked at the drain
// deadline are closed, their clients learn it, and nothing is left.
func TestDrainTimeoutClosesParked(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			be := newBackend(t)
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(testParkDelay),
				func(i *proxy.IngressConfig, e *proxy.EgressConfig) {
					i.DrainTimeout, e.DrainTimeout = 100*time.Millisecond, 100*time.Millisecond
				})
			conns := make([]net.Conn, 3)
			for i := range conns {
				conns[i], _ = r.dial(t)
				if _, err := echo(conns[i], "hello"); err != nil {
					t.Fatal(err)
				}
			}
			r.waitParked(t, 2*len(conns))
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			for i, c := range conns {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("connection %d after the drain deadline: %v, want it closed", i, err)
				}
			}
			if kind == "ingress" && !contains(r.logs.String(), `"closed":3`) {
				t.Errorf("drain log does not count 3 closed connections:\n%s", r.logs.String())
			}
			first := r.regs[0]
			if p, o := counter(t, first, "gateway_parked_directions", nil), counter(t, first, "gateway_open_connections", nil); p != 0 || o != 0 {
				t.Errorf("after the drain: %v parked directions, %v open connections", p, o)
			}
			r.waitClosed(t)
		})
	}
}

// TestParkChurn: connections park and wake over and over (1 ms park delay)
// while others close or reset and are replaced, from several goroutines
// at once (run it with -race): every echo comes back intact, and at the end
// nothing is open, parked or running.
func TestParkChurn(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			be := newBackend(t)
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(time.Millisecond))
			const workers, perWorker, rounds = 4, 10, 40
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				conns []net.Conn
			)
			errs := make(chan error, workers)
			connect := func() (net.Conn, *net.TCPConn, error) {
				c, raw, err := r.connect()
				if err == nil {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				return c, raw, err
			}
			ready := make(chan struct{})
			var dialled sync.WaitGroup
			dialled.Add(workers)
			for w := range workers {
				wg.Go(func() {
					errs <- func() error {
						own := make([]net.Conn, perWorker)
						raws := make([]*net.TCPConn, perWorker)
						var err error
						for i := range own {
							if own[i], raws[i], err = connect(); err != nil {
								dialled.Done()
								return err
							}
						}
						dialled.Done()
						<-ready // every connection parked once
						for n := range rounds {
							i := (n * 7) % perWorker
							switch n % 5 {
							case 3, 4: // close or reset, and replace
								if n%5 == 4 {
									raws[i].SetLinger(0)
								}
								own[i].Close()
								if own[i], raws[i], err = connect(); err != nil {
									return err
								}
							}
							msg := fmt.Sprintf("worker %d round %d", w, n)
							if got, err := echo(own[i], msg); err != nil || got != msg {
								return fmt.Errorf("echo %q = %q, %v", msg, got, err)
							}
						}
						return nil
					}()
				})
			}
			dialled.Wait()
			if len(errs) == 0 {
				r.waitParked(t, 2*workers*perWorker)
			}
			close(ready)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			r.waitClosed(t)
			wait.Until(t, 10*time.Second, "connection goroutines gone", func() bool { return connGoroutines() == 0 })
		})
	}
}

// connGoroutines counts the goroutines serving or splicing a connection.
func connGoroutines() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for n == len(buf) {
		buf = make([]byte, 2*len(buf))
		n = runtime.Stack(buf, true)
	}
	buf, n = buf[:n], 0
	for _, f := range []string{"proxy.(*direction).run(", "proxy.(*IngressServer).serve(", "proxy.(*EgressSet).serve("} {
		n += bytes.Count(buf, []byte(f))
	}
	return n
}
