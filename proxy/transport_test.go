package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

// countingConn counts the calls that reach the TCP connection under a
// transport: the syscalls the transport is there to save.
type countingConn struct {
	net.Conn
	reads, writes atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tlsPair runs a TLS 1.3 handshake over a loopback pair, each side through
// a transport (sharing budget) over a counting connection.
func tlsPair(t *testing.T, budget *bufferBudget) (client, server *tls.Conn, clientRaw, serverRaw *countingConn) {
	t.Helper()
	clientCfg, serverCfg := mtlsConfigs(t)
	c, s := tcpPair(t)
	clientRaw, serverRaw = &countingConn{Conn: c}, &countingConn{Conn: s}
	client = tls.Client(newTransport(clientRaw, budget), clientCfg)
	server = tls.Server(newTransport(serverRaw, budget), serverCfg)
	handshake(t, client, server)
	return client, server, clientRaw, serverRaw
}

// mtlsConfigs are a gateway's server config and a client's config for it,
// as mcgate builds them, under a fresh test anchor.
func mtlsConfigs(t *testing.T) (client, server *tls.Config) {
	t.Helper()
	ca := testpki.New(t)
	const gwSA, gwNS = "linkerd-gateway", "linkerd-multicluster"
	server = identity.ServerTLSConfig(testpki.Source(t, ca.IdentityDir(t, gwSA, gwNS)))
	client = identity.ClientTLSConfig(testpki.Source(t, ca.IdentityDir(t, "web", "default")), testpki.Name(t, gwSA, gwNS))
	return client, server
}

// handshake runs both ends' TLS handshakes and fails t if either fails.
func handshake(t *testing.T, client, server *tls.Conn) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestTransportGathersRecords: a 64 KiB write is four TLS records; through
// side.write they leave in one write to the socket, and arrive intact.
// Without room in the buffer budget they leave one by one.
func TestTransportGathersRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget *bufferBudget
		writes int64
	}{
		{"budget has room", newBufferBudget(transportBufSize, nil), 1},
		{"budget exhausted", newBufferBudget(transportBufSize-1, nil), 4},
	} {
		t.Run(tc.name, func(t *testing.T) { testGathersRecords(t, tc.budget, tc.writes) })
	}
}

func testGathersRecords(t *testing.T, budget *bufferBudget, wantWrites int64) {
	client, server, clientRaw, _ := tlsPair(t, budget)
	// Past crypto/tls's small opening records, so the count is exact.
	warm := make([]byte, 256<<10)
	warmed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, io.LimitReader(server, int64(len(warm))))
		close(warmed)
	}()
	if _, err := client.Write(warm); err != nil {
		t.Fatal(err)
	}
	<-warmed
	payload := make([]byte, 64<<10-1024) // four records plus room for their overhead
	rand.Read(payload)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(payload))
		io.ReadFull(server, b)
		got <- b
	}()

	before := clientRaw.writes.Load()
	s := tlsSide(client, clientRaw.Conn)
	if s.tr == nil {
		t.Fatal("tlsSide found no transport under the TLS connection")
	}
	if err := s.write(payload); err != nil {
		t.Fatal(err)
	}
	if n := clientRaw.writes.Load() - before; n != wantWrites {
		t.Errorf("a 4-record write took %d socket writes, want %d", n, wantWrites)
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Error("payload corrupted on the way")
	}
	if s.tr.wbuf != nil {
		t.Error("transport keeps a write buffer after flush")
	}
	if n := budget.inUse(); n != 0 {
		t.Errorf("%d bytes of the budget still taken", n)
	}
}

// TestTransportHoldKeepsOtherWriters: writes from another goroutine during
// a hold (crypto/tls's alerts) are sent in order by flush, and a write
// error that crypto/tls did not see comes out of flush.
func TestTransportHoldKeepsOtherWriters(t *testing.T) {
	c, s := tcpPair(t)
	tr := newTransport(c, nil)
	tr.hold()
	var wg sync.WaitGroup
	for _, msg := range []string{"one", "two"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.Write([]byte(msg))
		}()
	}
	wg.Wait()
	if err := tr.flush(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	if _, err := io.ReadFull(s, b); err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "onetwo" && got != "twoone" {
		t.Errorf("peer got %q", got)
	}

	tr.hold()
	tr.Write([]byte("lost"))
	c.Close()
	if err := tr.flush(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("flush after the socket closed: %v, want net.ErrClosed", err)
	}
}

// TestTransportCloseGivesBack: a connection closed while its read-ahead
// buffer still holds bytes gives the buffer's share of the budget back.
func TestTransportCloseGivesBack(t *testing.T) {
	c, s := tcpPair(t)
	budget := newBufferBudget(transportBufSize, nil)
	tr := newTransport(s, budget)
	tr.readAhead = true
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if n := budget.inUse(); n != transportBufSize {
		t.Fatalf("budget in use %d while 990 bytes wait in the read-ahead buffer, want %d", n, transportBufSize)
	}
	tr.Close()
	if n := budget.inUse(); n != 0 {
		t.Errorf("budget in use %d after close, want 0", n)
	}
	if _, err := tr.Read(make([]byte, 10)); err == nil {
		t.Error("read after close succeeded")
	}
}
