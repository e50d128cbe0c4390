package proxy_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/testproxy"
)

// TestTruncatedTLSClient: a client that sends some bytes and then closes
// TCP without close_notify has not ended its TLS stream cleanly, so the
// backend must not see a clean end (a FIN would tell it the request was
// complete): it reads the bytes the client sent, then a reset, and so does
// the client. The same holds while the connection is parked.
// TestIngressHalfClose and TestHalfCloseWhileParked keep a clean end
// (close_notify, then FIN) a half-close.
func TestTruncatedTLSClient(t *testing.T) {
	for _, tt := range []struct {
		name   string
		parked bool
	}{{"running", false}, {"parked", true}} {
		t.Run(tt.name, func(t *testing.T) {
			const sent = "the first half of a request"
			received := make(chan string, 1)
			after := make(chan error, 1)
			be := testproxy.NewBackend(t, func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, len(sent))
				n, _ := io.ReadFull(c, buf)
				received <- string(buf[:n])
				_, err := c.Read(make([]byte, 1))
				after <- err
			})
			delay := time.Duration(-1) // never parks
			if tt.parked {
				delay = testParkDelay
			}
			r := startParkRoute(t, "ingress", be.Addr(), withParkDelay(delay))
			c, raw := r.dial(t)
			if _, err := io.WriteString(c, sent); err != nil {
				t.Fatal(err)
			}
			if got := <-received; got != sent {
				t.Fatalf("backend received %q, want %q", got, sent)
			}
			if tt.parked {
				r.waitParked(t, 2)
			}
			if err := raw.CloseWrite(); err != nil { // a FIN, and no close_notify before it
				t.Fatal(err)
			}
			if err := <-after; !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("backend read after the truncation: %v, want a reset", err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("client read after its truncation: %v, want a reset", err)
			}
			r.waitClosed(t)
		})
	}
}
