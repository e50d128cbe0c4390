package kubetest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Forwarder is a TCP forwarder on 127.0.0.1 in front of an API server: a
// mirror given its URL reaches the cluster through it, so cutting it is an
// outage of the path while the API server keeps serving everyone else.
type Forwarder struct {
	t      testing.TB
	addr   string // fixed across Cut and Restore
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewForwarder forwards to target (host:port) until the test ends.
func NewForwarder(t testing.TB, target string) *Forwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	f.serve(ln)
	t.Cleanup(func() {
		f.Cut()
		f.wg.Wait()
	})
	return f
}

// URL is the API server's URL through the forwarder: "localhost", a name
// in the API server's serving certificate.
func (f *Forwarder) URL() string {
	_, port, _ := net.SplitHostPort(f.addr)
	return "https://localhost:" + port
}

func (f *Forwarder) serve(ln net.Listener) {
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", f.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			if !f.track(c, up) {
				continue // cut meanwhile
			}
			for _, p := range [][2]net.Conn{{up, c}, {c, up}} {
				f.wg.Go(func() {
					io.Copy(p[0], p[1])
					// Either side ending ends both, as a real path would.
					p[0].Close()
					p[1].Close()
					f.mu.Lock()
					delete(f.conns, p[0])
					delete(f.conns, p[1])
					f.mu.Unlock()
				})
			}
		}
	})
}

func (f *Forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

// Cut closes the listener and resets every open connection: clients see
// their streams break, then "connection refused".
func (f *Forwarder) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN: the path broke
		}
		c.Close()
	}
}

// Restore listens again on the same address.
func (f *Forwarder) Restore() {
	f.t.Helper()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.serve(ln)
}
