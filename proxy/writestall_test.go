package proxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/proxy"
)

// Tests of the write-stall timeout (writestall.go): a peer that takes no
// bytes for the timeout gets a reset, one that reads slowly does not.

const testWriteStall = time.Second

func withWriteStall(d time.Duration) pairOpt {
	return func(i *proxy.IngressConfig, e *proxy.EgressConfig) { i.WriteStallTimeout, e.WriteStallTimeout = d, d }
}

// writeUntilError writes chunks to c until a write fails, and returns that
// error.
func writeUntilError(c net.Conn) error {
	chunk := make([]byte, 32<<10)
	for {
		if _, err := c.Write(chunk); err != nil {
			return err
		}
	}
}

// within waits for the error of a writer that must end long before 20 s.
func within(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the writer still writes 20 s on: the stalled peer was not reset")
		return nil
	}
}

// TestWriteStallResets: a client that stops reading while the backend
// keeps sending, or a backend that stops reading while the client keeps
// sending, holds the splice only until the write-stall timeout: the
// gateway resets the connection, the writer's write fails, and nothing is
// left open. Parking is off: the stalled direction must end on its own.
func TestWriteStallResets(t *testing.T) {
	for _, kind := range []string{"ingress", "tunnel"} {
		t.Run(kind+"/client stops reading", func(t *testing.T) {
			written := make(chan error, 1)
			be := testproxy.NewBackend(t, func(c net.Conn) { written <- writeUntilError(c) })
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(-1), withWriteStall(testWriteStall))
			c, _ := r.dial(t)
			if _, err := c.Write([]byte("go")); err != nil { // the tunnel's egress dials on the first byte
				t.Fatal(err)
			}
			if err := within(t, written); err == nil {
				t.Fatal("the backend's write to a client that never reads ended without an error")
			}
			r.waitClosed(t)
		})
		t.Run(kind+"/backend stops reading", func(t *testing.T) {
			release := make(chan struct{})
			be := testproxy.NewBackend(t, func(c net.Conn) { <-release })
			t.Cleanup(func() { close(release) }) // before the backend's cleanup waits for it
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(-1), withWriteStall(testWriteStall))
			c, _ := r.dial(t)
			c.SetWriteDeadline(time.Now().Add(20 * time.Second)) // far past the timeout: the test fails, not hangs
			if err := writeUntilError(c); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the client's write to a backend that never reads ended without an error")
			}
			r.waitClosed(t)
		})
	}
}

// TestWriteStallSlowReader: a client that reads well below the rate the
// backend sends, but steadily (32 KiB every 100 ms, for 1 MiB: several
// times what the sockets between them buffer, so the gateway's writes wait
// on it over and over), keeps its connection and gets every byte.
func TestWriteStallSlowReader(t *testing.T) {
	const total = 1 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), total/16)
	for _, kind := range []string{"ingress", "tunnel"} {
		t.Run(kind, func(t *testing.T) {
			written := make(chan error, 1)
			be := testproxy.NewBackend(t, func(c net.Conn) {
				_, err := c.Write(payload)
				written <- err
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			})
			r := startParkRoute(t, kind, be.Addr(), withParkDelay(-1), withWriteStall(testWriteStall))
			c, _ := r.dial(t)
			if _, err := c.Write([]byte("go")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 0, total)
			buf := make([]byte, 32<<10)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for len(got) < total {
				<-tick.C // the pace of a slow reader, not a wait for an event
				n, err := io.ReadFull(c, buf[:min(len(buf), total-len(got))])
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("slow reader: %v after %d of %d bytes", err, len(got), total)
				}
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("slow reader: the bytes differ from what the backend sent")
			}
			if err := within(t, written); err != nil {
				t.Fatalf("backend write to a slow reader: %v", err)
			}
		})
	}
}
