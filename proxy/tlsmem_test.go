package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestTLSStateFieldsFound: the crypto/tls fields that idle connections
// release exist in this Go with the types tlsmem.go expects. When a Go
// release changes them, this fails and the release silently stops working
// elsewhere (connections keep their buffers, as crypto/tls would).
func TestTLSStateFieldsFound(t *testing.T) {
	for name, off := range map[string]uintptr{"rawInput": rawInputOffset, "hand": handOffset,
		"peerCertificates": peerCertsOffset, "verifiedChains": verifiedChainsOffset} {
		if off == 0 {
			t.Errorf("tls.Conn has no field %s of the expected type", name)
		}
	}
}

// TestTLSStateReviewedGoVersion: this Go's crypto/tls was reviewed against
// what tlsmem.go assumes. Fields can keep their names and types and change
// what they mean; on a Go release nobody reviewed the gateway keeps the
// release off (and warns at start), and this test fails so that upgrading
// Go forces the review that turns it back on.
func TestTLSStateReviewedGoVersion(t *testing.T) {
	if !slices.Contains(reviewedGoVersions, runtime.Version()) {
		t.Fatalf("crypto/tls of %s was not reviewed for tlsmem.go (reviewed: %v): read it against the list above reviewedGoVersions, then add it",
			runtime.Version(), reviewedGoVersions)
	}
	if !ReleasesTLSState() {
		t.Error("ReleasesTLSState is false on a reviewed Go: the gateway would warn at start")
	}
	if v, reviewed, found := TLSStateReview(); v != runtime.Version() || !slices.Equal(reviewed, reviewedGoVersions) || !found {
		t.Errorf("TLSStateReview = %s, %v, %v", v, reviewed, found)
	}
}

// mustReleaseTLS fails a test of what the release does where this build
// does not release (see TestTLSStateReviewedGoVersion).
func mustReleaseTLS(t *testing.T) {
	t.Helper()
	if !ReleasesTLSState() {
		t.Fatalf("this build does not release TLS state on %s (see TestTLSStateReviewedGoVersion)", runtime.Version())
	}
}

// heldConn sends writes on, or keeps them while hold is set, so a test
// can deliver a TLS record in pieces.
type heldConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	held []byte
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		h.held = append(h.held, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}

// startHold keeps the writes from now on.
func (h *heldConn) startHold() {
	h.mu.Lock()
	h.hold = true
	h.mu.Unlock()
}

// take ends the hold and returns what it kept, unsent.
func (h *heldConn) take() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	held := h.held
	h.hold, h.held = false, nil
	return held
}

// heldLen is how many bytes the hold keeps now.
func (h *heldConn) heldLen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// TestTLSStateRelease: a gateway's server connection that forgot its
// client's chain and dropped its input buffers after bulk data goes on
// reading exactly what the client sends, and a record that had only partly
// arrived when the buffers were released is kept and completed.
func TestTLSStateRelease(t *testing.T) {
	mustReleaseTLS(t)
	c, s := tcpPair(t)
	hc := &heldConn{Conn: c}
	clientCfg, serverCfg := mtlsConfigs(t)
	client, server := tls.Client(hc, clientCfg), tls.Server(s, serverCfg)
	handshake(t, client, server)

	if len(server.ConnectionState().PeerCertificates) == 0 {
		t.Fatal("server has no client certificate to forget")
	}
	forgetPeerChain(server)
	if cs := server.ConnectionState(); cs.PeerCertificates != nil || cs.VerifiedChains != nil {
		t.Error("the client's chain is still held after forgetPeerChain")
	}

	send := func(p []byte) {
		go func() { client.Write(p) }()
	}
	expect := func(want []byte) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(server, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("server read other bytes than the client sent")
		}
	}
	bulk := make([]byte, 256<<10)
	rand.Read(bulk)
	send(bulk)
	expect(bulk)
	rawInput := tlsConnAt[bytes.Buffer](server, rawInputOffset)
	if rawInput.Cap() < 16<<10 {
		t.Fatalf("raw input holds %d bytes after bulk data, want a full record's room", rawInput.Cap())
	}
	releaseTLSInput(server)
	if rawInput.Cap() != 0 {
		t.Errorf("raw input still holds %d bytes after release", rawInput.Cap())
	}
	after := []byte("after the release")
	send(after)
	expect(after)

	// A record cut in two: the first half arrives, the read times out
	// waiting for the rest (as before parking), the release keeps it.
	hc.startHold()
	msg := bytes.Repeat([]byte("partial "), 125)
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	record := hc.take()
	half := len(record) / 2
	if _, err := c.Write(record[:half]); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := server.Read(make([]byte, len(msg))); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of half a record: %d, %v; want a timeout", n, err)
	}
	if rawInput.Len() != half {
		t.Fatalf("raw input holds %d bytes, want the %d that arrived", rawInput.Len(), half)
	}
	releaseTLSInput(server)
	if rawInput.Len() != half {
		t.Fatalf("release dropped a partial record: %d bytes left of %d", rawInput.Len(), half)
	}
	if _, err := c.Write(record[half:]); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Time{})
	expect(msg)
}
