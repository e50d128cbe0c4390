package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// upstreamSplice is a splice as an egress gateway makes it: a plain side
// to an application and a TLS side to a remote gateway, the splice being
// the TLS client.
type upstreamSplice struct {
	app       net.Conn  // the application's end of the plain side
	up        *tls.Conn // the splice's TLS connection
	server    *tls.Conn // the remote gateway's end of it
	serverRaw *heldConn // the remote gateway's TCP connection; it can hold writes
	parker    *parker   // nil unless parkDelay > 0
}

// startUpstreamSplice connects and starts the splice, parking after
// parkDelay (0: never). adjust may change the TLS configs before the
// handshake. The splice ends, and its parker stops, when the test ends.
func startUpstreamSplice(t *testing.T, parkDelay time.Duration, adjust func(client, server *tls.Config, serverRaw *heldConn)) *upstreamSplice {
	t.Helper()
	budget := newBufferBudget(1<<20, nil)
	o, err := newSpliceOptions(0, parkDelay, budget, zerolog.Nop(), prometheus.NewGauge(prometheus.GaugeOpts{Name: "parked"}))
	if err != nil {
		t.Fatal(err)
	}
	if parkDelay > 0 && o.parker == nil {
		t.Fatal("no parker on this platform")
	}
	t.Cleanup(o.runParker()) // after the splice has ended: cleanups run last first

	clientCfg, serverCfg := mtlsConfigs(t)
	app, client := tcpPair(t)
	upRaw, s := tcpPair(t)
	u := &upstreamSplice{app: app, serverRaw: &heldConn{Conn: s}, parker: o.parker}
	if adjust != nil {
		adjust(clientCfg, serverCfg, u.serverRaw)
	}
	u.up = tls.Client(newTransport(upRaw, budget), clientCfg)
	u.server = tls.Server(u.serverRaw, serverCfg)
	handshake(t, u.up, u.server)

	done := make(chan error, 1)
	bytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})
	sp := newSplicer(o, plainSide(client), tlsSide(u.up, upRaw), bytes, bytes, func(err error) { done <- err })
	sp.start()
	t.Cleanup(func() {
		sp.abort(net.ErrClosed) // ends it whatever the test left it in
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("splice did not end")
		}
	})
	return u
}

// waitParked waits until both directions are parked.
func (u *upstreamSplice) waitParked(t *testing.T) {
	t.Helper()
	wait.Until(t, 10*time.Second, "both directions parked", func() bool { return u.parker.parkedLen() == 2 })
}

// readFull reads len(want) bytes from c and fails t unless they are want.
func readFull(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestTruncatedTLSUpstream: when the remote gateway's TLS stream ends
// without close_notify (a FIN at a record boundary, which crypto/tls
// reports as io.EOF, or one in the middle of a record,
// io.ErrUnexpectedEOF), the application must not take it for the end of a
// complete response: it reads what came before and then a reset, running
// or parked. close_notify and then FIN stays a half-close: the application
// reads EOF and its answer still reaches the remote gateway.
func TestTruncatedTLSUpstream(t *testing.T) {
	for _, end := range []struct {
		name  string
		clean bool
		end   func(t *testing.T, u *upstreamSplice)
	}{
		{"fin at a record boundary", false, func(t *testing.T, u *upstreamSplice) {
			u.serverRaw.Conn.(*net.TCPConn).CloseWrite()
		}},
		{"fin inside a record", false, func(t *testing.T, u *upstreamSplice) {
			u.serverRaw.startHold()
			if _, err := io.WriteString(u.server, "never whole"); err != nil {
				t.Fatal(err)
			}
			record := u.serverRaw.take()
			if _, err := u.serverRaw.Conn.Write(record[:len(record)/2]); err != nil {
				t.Fatal(err)
			}
			u.serverRaw.Conn.(*net.TCPConn).CloseWrite()
		}},
		{"close_notify then fin", true, func(t *testing.T, u *upstreamSplice) {
			u.server.CloseWrite()
			u.serverRaw.Conn.(*net.TCPConn).CloseWrite()
		}},
	} {
		for _, parkDelay := range []time.Duration{0, 5 * time.Millisecond} {
			name := end.name + "/running"
			if parkDelay > 0 {
				name = end.name + "/parked"
			}
			t.Run(name, func(t *testing.T) {
				u := startUpstreamSplice(t, parkDelay, nil)
				io.WriteString(u.server, "response, first part")
				readFull(t, u.app, "response, first part")
				if parkDelay > 0 {
					u.waitParked(t)
				}
				end.end(t, u)
				u.app.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := u.app.Read(make([]byte, 1))
				if !end.clean {
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("application read after the truncation: %v, want a reset", err)
					}
					return
				}
				if err != io.EOF {
					t.Fatalf("application read after close_notify and FIN: %v, want EOF", err)
				}
				io.WriteString(u.app, "answer")
				readFull(t, u.server, "answer")
			})
		}
	}
}

// notifyingCache is a client session cache that says when a ticket is put.
type notifyingCache struct {
	tls.ClientSessionCache
	put chan<- struct{}
}

func (c notifyingCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		c.put <- struct{}{}
	}
}

// TestParkedTLSTakesTicket: a post-handshake message (a NewSessionTicket,
// which a TLS 1.3 server sends after its handshake, here held back until
// the connection has parked) reaches a parked TLS connection whose input
// buffers were released; crypto/tls takes it (the client caches the
// session), and bytes still flow both ways afterwards.
func TestParkedTLSTakesTicket(t *testing.T) {
	mustReleaseTLS(t)
	tickets := make(chan struct{}, 4)
	u := startUpstreamSplice(t, 5*time.Millisecond, func(client, server *tls.Config, serverRaw *heldConn) {
		wrap := server.WrapSession
		server.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			serverRaw.startHold() // the ticket, and all after it until the test sends it
			return wrap(cs, ss)
		}
		client.ClientSessionCache = notifyingCache{client.ClientSessionCache, tickets}
	})
	if u.serverRaw.heldLen() == 0 {
		t.Fatal("the server sent no session ticket")
	}
	io.WriteString(u.app, "request")
	readFull(t, u.server, "request")
	u.waitParked(t)
	// Under the parker's lock, which a wake takes before it hands the
	// direction on, the parked connection is the test's to look at.
	u.parker.mu.Lock()
	rawInput := tlsConnAt[bytes.Buffer](u.up, rawInputOffset).Cap()
	hand := tlsConnAt[bytes.Buffer](u.up, handOffset).Cap()
	u.parker.mu.Unlock()
	if rawInput != 0 || hand != 0 {
		t.Fatalf("parked connection holds input buffers of %d and %d bytes, want them released", rawInput, hand)
	}

	if _, err := u.serverRaw.Conn.Write(u.serverRaw.take()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tickets:
	case <-time.After(10 * time.Second):
		t.Fatal("the parked connection never took the session ticket")
	}
	io.WriteString(u.server, "response")
	readFull(t, u.app, "response")
	io.WriteString(u.app, "and more")
	readFull(t, u.server, "and more")
}
