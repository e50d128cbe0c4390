package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// attack is one kind of hostile client, run by many workers at once.
type attack struct {
	name    string
	workers int
	// every paces each worker: at most one hit per interval (0: back to
	// back); a worker whose connection lasted longer reconnects at once.
	every time.Duration
	// hit makes one hostile connection and returns when it is over or ctx
	// ends; it bumps dials once connected.
	hit func(ctx context.Context, addr string, dials *atomic.Int64)
	// metric and labels name the series the gateway must count the attack
	// in, with reason as the log's "reason" field; empty for attacks that
	// are bounded rather than refused.
	metric string
	reason string
	// orReason is a second reason the gateway may count the attack under
	// instead: a stalled handshake is evicted by a newer one of its own
	// source (reason evicted) once that source holds its share of the
	// slots, before it can time out.
	orReason string
	// reachesBackend: the attack is a valid client (e.g. it never reads),
	// so the backend may see it.
	reachesBackend bool
	// heapBound: the attack is bounded by backpressure, and the heap must
	// not grow while it goes on.
	heapBound bool
}

// launch starts the attack's workers; stop ends them and waits.
func (a attack) launch(addr string) (dials *atomic.Int64, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	dials = new(atomic.Int64)
	var wg sync.WaitGroup
	for range a.workers {
		wg.Go(func() {
			var tick <-chan time.Time
			if a.every > 0 {
				// Spread the workers over the interval rather than
				// connecting all at once every time.
				start := time.NewTimer(rand.N(a.every))
				select {
				case <-ctx.Done():
				case <-start.C:
				}
				start.Stop()
				t := time.NewTicker(a.every)
				defer t.Stop()
				tick = t.C
			}
			for ctx.Err() == nil {
				a.hit(ctx, addr, dials)
				if tick != nil {
					select {
					case <-ctx.Done():
					case <-tick:
					}
				}
			}
		})
	}
	return dials, func() { cancel(); wg.Wait() }
}

// dialRaw connects with TCP and closes the connection when ctx ends, so
// that a hit blocked on it returns.
func dialRaw(ctx context.Context, addr string) (net.Conn, func(), error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return c, func() { stop(); c.Close() }, nil
}

// sendThenDrain writes b and reads until the gateway closes the connection.
func sendThenDrain(b func() []byte) func(context.Context, string, *atomic.Int64) {
	return func(ctx context.Context, addr string, dials *atomic.Int64) {
		c, done, err := dialRaw(ctx, addr)
		if err != nil {
			return
		}
		defer done()
		dials.Add(1)
		c.Write(b())
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	}
}

// tlsThenDrain handshakes with cfg (the gateway may refuse there), writes
// preface, and reads until the gateway closes the connection.
func tlsThenDrain(cfg *tls.Config, preface []byte) func(context.Context, string, *atomic.Int64) {
	return func(ctx context.Context, addr string, dials *atomic.Int64) {
		raw, done, err := dialRaw(ctx, addr)
		if err != nil {
			return
		}
		defer done()
		dials.Add(1)
		c := tls.Client(raw, cfg)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.HandshakeContext(ctx); err != nil {
			return
		}
		if preface != nil {
			c.Write(preface)
		}
		io.Copy(io.Discard, c)
	}
}

// slowHello sends hello one byte per second and holds the connection until
// the gateway closes it.
func slowHello(hello []byte) func(context.Context, string, *atomic.Int64) {
	return func(ctx context.Context, addr string, dials *atomic.Int64) {
		c, done, err := dialRaw(ctx, addr)
		if err != nil {
			return
		}
		defer done()
		dials.Add(1)
		closed := make(chan struct{})
		go func() { io.Copy(io.Discard, c); close(closed) }()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			if _, err := c.Write(hello[i%len(hello) : i%len(hello)+1]); err != nil {
				return
			}
			select {
			case <-closed:
				return
			case <-ctx.Done():
				<-closed
				return
			case <-tick.C:
			}
		}
	}
}

// neverReads is a valid client of the exported service that writes as
// fast as it can and never reads the echo: backpressure must hold it.
func neverReads(cfg *tls.Config) func(context.Context, string, *atomic.Int64) {
	return func(ctx context.Context, addr string, dials *atomic.Int64) {
		raw, done, err := dialRaw(ctx, addr)
		if err != nil {
			return
		}
		defer done()
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			return
		}
		dials.Add(1)
		buf := make([]byte, 32<<10)
		for ctx.Err() == nil {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}

// clientHello returns the first TLS record a Go client sends: a complete
// ClientHello for sni.
func clientHello(t testing.TB, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}).Handshake()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// helloTrailingDot is a ClientHello whose SNI ends in a dot, which Go
// clients never send (they strip it) but an attacker can.
func helloTrailingDot(t testing.TB) []byte {
	t.Helper()
	h := clientHello(t, apiSNI+"X")
	i := bytes.LastIndex(h, []byte(apiSNI+"X"))
	if i < 0 {
		t.Fatal("SNI not found in the ClientHello")
	}
	h[i+len(apiSNI)] = '.'
	return h
}

func randomBytes() []byte {
	b := make([]byte, 64+rand.IntN(1024))
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}
