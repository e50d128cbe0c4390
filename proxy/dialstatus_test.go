package proxy_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/proxy"
)

// TestIngressDialStatus: a client that offers mcgate.io/dial-status/v1
// learns, in one byte before anything of the backend's, whether the
// gateway reached a backend; the byte is the wire contract between
// gateways, so the test reads it raw. A client that does not offer it sees
// no extra byte.
func TestIngressDialStatus(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	// An address nothing listens on: bind, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	gw := startGateway(t, ca, routes{
		"production/api":  {8080: {be.Addr()}},
		"production/idle": {8080: nil},
		"production/dead": {8080: {dead}},
	}, nil)
	client := clientConfig(t, ca, "web", "west", identity.CertOptions{})

	for _, tt := range []struct {
		service string
		status  byte
	}{
		{"api", 0},
		{"idle", 2},    // no ready endpoints
		{"dead", 3},    // the backend refused the dial
		{"missing", 1}, // not exported
	} {
		t.Run(tt.service, func(t *testing.T) {
			c, err := dialTLS(t, gw.Addr().String(), client, tt.service+".production.svc.cluster.local", proxy.DialStatusALPN)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if p := c.ConnectionState().NegotiatedProtocol; p != proxy.DialStatusALPN {
				t.Fatalf("ALPN = %q, want %q", p, proxy.DialStatusALPN)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				t.Fatalf("status byte: %v", err)
			}
			if b[0] != tt.status {
				t.Fatalf("status %d, want %d", b[0], tt.status)
			}
			if tt.status != 0 {
				if _, err := c.Read(b[:]); err == nil {
					t.Fatal("a refused connection must be closed after its status")
				}
				return
			}
			if got, err := echo(c, "after the status"); err != nil || got != "after the status" {
				t.Fatalf("echo after status: %q, %v", got, err)
			}
		})
	}

	t.Run("not offered", func(t *testing.T) {
		c, err := dialTLS(t, gw.Addr().String(), client, "api.production.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if got, err := echo(c, "no status byte"); err != nil || got != "no status byte" {
			t.Fatalf("echo: %q, %v", got, err)
		}
	})
}
