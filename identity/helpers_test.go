package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

const (
	gatewaySA = "linkerd-gateway"
	gatewayNS = "linkerd-multicluster"
)

// handshake is what the test server saw of one connection.
type handshake struct {
	state tls.ConnectionState
	err   error
}

// server is a TLS echo server on 127.0.0.1 that reports every handshake.
type server struct {
	addr    string
	results chan handshake
}

// startServer serves cfg on a loopback port until the test ends; every
// goroutine it starts is joined in t.Cleanup.
func startServer(t testing.TB, cfg *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), results: make(chan handshake, 64)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				serveEcho(tls.Server(c, cfg), s.results)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func serveEcho(c *tls.Conn, results chan<- handshake) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.HandshakeContext(ctx)
	cancel()
	select {
	case results <- handshake{state: c.ConnectionState(), err: err}:
	default: // a benchmark does not read them
	}
	if err != nil {
		return
	}
	io.Copy(c, c)
	c.CloseWrite()
}

// next returns the server's view of the next handshake.
func (s *server) next(t testing.TB) handshake {
	t.Helper()
	select {
	case h := <-s.results:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake reached the server")
		return handshake{}
	}
}

// dial connects to addr with cfg and completes the client's handshake.
func dial(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := dialConn(t.Context(), addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// dialConn is dial for callers that close the connection themselves.
func dialConn(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// echo writes msg and reads it back. In TLS 1.3 the server checks the
// client's certificate after the client's handshake has returned, and sends
// its session tickets after the handshake, so a round trip is what shows a
// refusal and what fills the client's session cache.
func echo(c *tls.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}

// connect dials and does one round trip; it returns the client's and the
// server's view of the handshake.
func connect(t testing.TB, s *server, cfg *tls.Config) (*tls.Conn, tls.ConnectionState, handshake, error) {
	t.Helper()
	c, err := dial(t, s.addr, cfg)
	if err != nil {
		return nil, tls.ConnectionState{}, s.next(t), err
	}
	err = echo(c, "ping")
	return c, c.ConnectionState(), s.next(t), err
}

// identityDir writes leaf (with ca's issuer as chain) and anchors into a new
// directory.
func identityDir(t testing.TB, ca *testpki.CA, leaf *identity.KeyPair, anchors ...*x509.Certificate) string {
	t.Helper()
	dir := t.TempDir()
	writeDir(t, dir, ca, leaf, anchors...)
	return dir
}

func writeDir(t testing.TB, dir string, ca *testpki.CA, leaf *identity.KeyPair, anchors ...*x509.Certificate) {
	t.Helper()
	if len(anchors) == 0 {
		anchors = []*x509.Certificate{ca.Anchor.Cert}
	}
	if err := identity.WriteIdentityDir(dir, leaf, []*x509.Certificate{ca.Issuer.Cert}, anchors); err != nil {
		t.Fatal(err)
	}
}

// clock is a settable time source for FileSourceConfig.Clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newSource(t testing.TB, dir string, clk *clock) *identity.FileSource {
	t.Helper()
	cfg := identity.FileSourceConfig{Dir: dir, Log: zerolog.Nop()}
	if clk != nil {
		cfg.Clock = clk.Now
	}
	src, err := identity.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// rawClient presents leaf and chain without any verification of its own:
// a client that the server alone has to judge.
func rawClient(leaf *identity.KeyPair, chain ...*x509.Certificate) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if leaf != nil {
		cert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
		for _, c := range chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// recordResumption wraps cfg's VerifyConnection to tell whether the
// handshakes it judged were resumed.
func recordResumption(cfg *tls.Config) (*tls.Config, <-chan bool) {
	c, resumed, _ := recordSessions(cfg)
	return c, resumed
}

// recordSessions is recordResumption that also reports each session ticket
// a client offers: true when the server was willing to resume it.
func recordSessions(cfg *tls.Config) (*tls.Config, <-chan bool, <-chan bool) {
	resumed, offers := make(chan bool, 16), make(chan bool, 16)
	c := cfg.Clone()
	verify := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		resumed <- cs.DidResume
		return verify(cs)
	}
	if unwrap := c.UnwrapSession; unwrap != nil {
		c.UnwrapSession = func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := unwrap(ticket, cs)
			offers <- ss != nil
			return ss, err
		}
	}
	return c, resumed, offers
}

// customLeaf issues a leaf with exactly the given SANs, which NewLeaf (that
// always writes an identity) cannot make.
func customLeaf(t testing.TB, issuer *identity.KeyPair, dnsNames, uris []string) *identity.KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "custom"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &key.PublicKey, issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &identity.KeyPair{Cert: cert, Key: key}
}
