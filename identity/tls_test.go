package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

// pair is a gateway (server) and a client gateway of another cluster under
// the same anchor, each with its own issuer, as in a real multicluster setup.
type pair struct {
	ca, clientCA   *testpki.CA
	srv, cli       *identity.FileSource
	srvDir, cliDir string
	gateway        identity.Name
}

func newPair(t testing.TB, srvClock, cliClock *clock) *pair {
	t.Helper()
	p := &pair{ca: testpki.New(t)}
	p.clientCA = &testpki.CA{Anchor: p.ca.Anchor, Issuer: testpki.NewIssuer(t, p.ca.Anchor)}
	p.gateway = testpki.Name(t, gatewaySA, gatewayNS)
	p.srvDir = identityDir(t, p.ca, p.ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
	p.cliDir = identityDir(t, p.clientCA, p.clientCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
	p.srv = newSource(t, p.srvDir, srvClock)
	p.cli = newSource(t, p.cliDir, cliClock)
	return p
}

func TestHandshakeFullThenResumed(t *testing.T) {
	p := newPair(t, nil, nil)
	s := startServer(t, identity.ServerTLSConfig(p.srv))
	cfg := identity.ClientTLSConfig(p.cli, p.gateway)
	authz, err := identity.NewAuthorizer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, wantResume := range []bool{false, true, true} {
		_, cs, h, err := connect(t, s, cfg)
		if err != nil || h.err != nil {
			t.Fatalf("connection %d: client %v, server %v", i, err, h.err)
		}
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("connection %d: version %x, want TLS 1.3", i, cs.Version)
		}
		if cs.DidResume != wantResume || h.state.DidResume != wantResume {
			t.Errorf("connection %d: resumed client=%v server=%v, want %v", i, cs.DidResume, h.state.DidResume, wantResume)
		}
		peer, err := authz.Authorize(h.state)
		if err != nil || peer != p.gateway.String() {
			t.Errorf("connection %d: Authorize = %q, %v; want %q", i, peer, err, p.gateway)
		}
		n, err := identity.PeerName(cs)
		if err != nil || n != p.gateway {
			t.Errorf("connection %d: server identity %v, %v", i, n, err)
		}
	}
}

func TestServerRefusesClient(t *testing.T) {
	ca := testpki.New(t)
	srv := newSource(t, identityDir(t, ca, ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{})), nil)
	s := startServer(t, identity.ServerTLSConfig(srv))
	other := testpki.New(t)
	otherIssuer := &testpki.CA{Anchor: ca.Anchor, Issuer: testpki.NewIssuer(t, ca.Anchor)}
	now := time.Now()
	tests := []struct {
		name    string
		cfg     *tls.Config
		wantErr string
	}{
		{"no client certificate", rawClient(nil), "didn't provide a certificate"},
		{"another anchor", rawClient(other.Leaf(t, "web", "prod", identity.CertOptions{}), other.Issuer.Cert), "unknown authority"},
		{"issuer missing from chain", rawClient(otherIssuer.Leaf(t, "web", "prod", identity.CertOptions{})), "unknown authority"},
		{"expired", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{
			NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}), ca.Issuer.Cert), "expired"},
		{"not yet valid", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{
			NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}), ca.Issuer.Cert), "not yet valid"},
		{"leaf signs certificates", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}), ca.Issuer.Cert), "KeyCertSign"},
		{"DNS-only leaf signs certificates", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{NoSPIFFEURI: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}), ca.Issuer.Cert), "KeyCertSign"},
		{"DNS-only leaf of another anchor", rawClient(other.Leaf(t, "web", "prod", identity.CertOptions{NoSPIFFEURI: true}), other.Issuer.Cert), "unknown authority"},
		{"no identity", rawClient(customLeaf(t, ca.Issuer, []string{"web.prod.svc.cluster.local"}, nil), ca.Issuer.Cert), "neither a SPIFFE URI SAN"},
		{"SPIFFE ID that is no service account", rawClient(customLeaf(t, ca.Issuer, nil, []string{"spiffe://cluster.local/web"}), ca.Issuer.Cert), "path must be"},
		{"two URI SANs", rawClient(customLeaf(t, ca.Issuer, nil, []string{"spiffe://cluster.local/ns/prod/sa/web", "https://example.com"}), ca.Issuer.Cert), "more than one URI SAN"},
		{"server-only leaf", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), ca.Issuer.Cert), "lacks the clientAuth"},
		{"DNS-only server-only leaf", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{NoSPIFFEURI: true,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), ca.Issuer.Cert), "lacks the clientAuth"},
		{"two identities", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{
			DNSNames: []string{"db.prod.serviceaccount.identity.linkerd.cluster.local"}}), ca.Issuer.Cert), "two identities"},
		{"five certificates", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{}), ca.Issuer.Cert, ca.Anchor.Cert, other.Issuer.Cert, other.Anchor.Cert), "chain refused before verification: 5 certificates"},
		{"chain out of order", rawClient(ca.Leaf(t, "web", "prod", identity.CertOptions{}), ca.Anchor.Cert, ca.Issuer.Cert), "chain refused before verification"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, h, err := connect(t, s, tt.cfg)
			if h.err == nil || !strings.Contains(h.err.Error(), tt.wantErr) {
				t.Fatalf("server handshake error = %v, want one containing %q", h.err, tt.wantErr)
			}
			if err == nil {
				t.Fatalf("client round trip succeeded after the server refused (conn %v)", c.RemoteAddr())
			}
		})
	}
}

func TestClientChecksServer(t *testing.T) {
	p := newPair(t, nil, nil)
	s := startServer(t, identity.ServerTLSConfig(p.srv))
	dnsSpelling, err := identity.ParseName(p.gateway.DNS())
	if err != nil {
		t.Fatal(err)
	}

	// The proxy clones the config and sets the SNI of each target; the
	// server's identity is checked all the same.
	withSNI := identity.ClientTLSConfig(p.cli, dnsSpelling).Clone()
	withSNI.ServerName = "outbound_.8080_._.api.production.svc.cluster.local"
	if _, cs, h, err := connect(t, s, withSNI); err != nil || h.err != nil {
		t.Fatalf("with SNI: client %v, server %v", err, h.err)
	} else if h.state.ServerName != withSNI.ServerName {
		t.Errorf("server saw SNI %q, want %q", h.state.ServerName, withSNI.ServerName)
	} else if cs.DidResume {
		t.Error("first connection resumed")
	}
	if _, cs, _, err := connect(t, s, withSNI); err != nil || !cs.DidResume {
		t.Errorf("second connection with SNI: err %v, resumed %v; want a resumed session", err, cs.DidResume)
	}

	wrong := testpki.Name(t, "other", gatewayNS)
	_, err = dial(t, s.addr, identity.ClientTLSConfig(p.cli, wrong))
	if err == nil || !strings.Contains(err.Error(), "want "+wrong.String()) {
		t.Fatalf("dial with wrong server identity: %v", err)
	}
	s.next(t)

	// A server whose leaf is for clients only is refused.
	clientOnly := newSource(t, identityDir(t, p.ca, p.ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})), nil)
	cs := startServer(t, identity.ServerTLSConfig(clientOnly))
	_, err = dial(t, cs.addr, identity.ClientTLSConfig(p.cli, p.gateway))
	if err == nil || !strings.Contains(err.Error(), "lacks the serverAuth") {
		t.Fatalf("dial to a server with a client-only leaf: %v", err)
	}
	cs.next(t)

	// A server under another anchor is refused even with the right name.
	other := testpki.New(t)
	foreign := newSource(t, identityDir(t, other, other.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{})), nil)
	fs := startServer(t, identity.ServerTLSConfig(foreign))
	_, err = dial(t, fs.addr, identity.ClientTLSConfig(p.cli, p.gateway))
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("dial to a server of another anchor: %v", err)
	}
}

// TestLinkerdDNSOnlyLeaf: stock Linkerd leaves name their identity with the
// DNS SAN only; both ends accept them.
func TestLinkerdDNSOnlyLeaf(t *testing.T) {
	ca := testpki.New(t)
	linkerd := identity.CertOptions{NoSPIFFEURI: true}
	srv := newSource(t, identityDir(t, ca, ca.Leaf(t, gatewaySA, gatewayNS, linkerd)), nil)
	cli := newSource(t, identityDir(t, ca, ca.Leaf(t, "web", "prod", linkerd)), nil)
	if got := cli.Name(); got != testpki.Name(t, "web", "prod") {
		t.Fatalf("source identity %v", got)
	}
	svid, err := cli.GetX509SVID()
	if err != nil || svid.ID.String() != "spiffe://cluster.local/ns/prod/sa/web" {
		t.Fatalf("GetX509SVID = %v, %v", svid, err)
	}
	s := startServer(t, identity.ServerTLSConfig(srv))
	cfg := identity.ClientTLSConfig(cli, testpki.Name(t, gatewaySA, gatewayNS))
	for _, wantResume := range []bool{false, true} {
		_, cs, h, err := connect(t, s, cfg)
		if err != nil || h.err != nil {
			t.Fatalf("client %v, server %v", err, h.err)
		}
		if cs.DidResume != wantResume {
			t.Errorf("resumed %v, want %v", cs.DidResume, wantResume)
		}
		if n, err := identity.PeerName(h.state); err != nil || n != testpki.Name(t, "web", "prod") {
			t.Errorf("client identity %v, %v", n, err)
		}
		if len(h.state.PeerCertificates[0].URIs) != 0 {
			t.Error("client leaf has a URI SAN")
		}
	}
}

// TestResumedSessionIsCheckedAgain: Go does not call VerifyPeerCertificate on
// a resumed session; VerifyConnection must refuse sessions whose client chain
// is no longer valid or no longer trusted.
// TestSessionsAfterRotation: a session made before a rotation is not resumed
// once its anchors are gone or its chain has expired; the handshake falls
// back to a full one, which lets a peer with a new leaf through and refuses
// one without.
func TestSessionsAfterRotation(t *testing.T) {
	t.Run("server drops the anchor, client has a new leaf", func(t *testing.T) {
		p, s, clientCfg, resumed, offers := resumedForeignClient(t)

		next := testpki.New(t)
		writeDir(t, p.srvDir, next, next.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
		writeDir(t, p.cliDir, next, next.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
		reload(t, p.srv, p.cli)
		_, cs, h, err := connect(t, s, clientCfg)
		if err != nil || h.err != nil {
			t.Fatalf("client %v, server %v: the stale session cost the connection", err, h.err)
		}
		wantFallback(t, offers, resumed, cs)
	})
	t.Run("server drops the anchor, client has the old leaf", func(t *testing.T) {
		p, s, clientCfg, resumed, offers := resumedForeignClient(t)

		// The client trusts the new anchor too but has no new leaf yet.
		next := testpki.New(t)
		writeDir(t, p.srvDir, next, next.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
		writeDir(t, p.cliDir, p.clientCA, p.clientCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}), p.ca.Anchor.Cert, next.Anchor.Cert)
		reload(t, p.srv, p.cli)
		_, cs, h, _ := connect(t, s, clientCfg)
		if h.err == nil || !strings.Contains(h.err.Error(), "unknown authority") {
			t.Fatalf("server handshake error = %v, want unknown authority", h.err)
		}
		wantFallback(t, offers, resumed, cs)
	})
	t.Run("client issuer expired", func(t *testing.T) {
		srvClock := &clock{now: time.Now()}
		ca := testpki.New(t)
		// The client's issuer ends in an hour, its leaf in a day: Go's own
		// resumption check looks at the leaf only.
		shortIssuer, err := identity.NewIssuer(ca.Anchor, identity.CertOptions{NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		cliCA := &testpki.CA{Anchor: ca.Anchor, Issuer: shortIssuer}
		srv := newSource(t, identityDir(t, ca, ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{})), srvClock)
		cli := newSource(t, identityDir(t, cliCA, cliCA.Leaf(t, "web", "prod", identity.CertOptions{})), nil)
		cfg, resumed, offers := recordSessions(identity.ServerTLSConfig(srv))
		s := startServer(t, cfg)
		clientCfg := identity.ClientTLSConfig(cli, testpki.Name(t, gatewaySA, gatewayNS))
		resume(t, s, clientCfg, resumed)
		drain(offers)

		srvClock.Advance(2 * time.Hour)
		_, cs, h, _ := connect(t, s, clientCfg)
		if h.err == nil || !strings.Contains(h.err.Error(), "expired") {
			t.Fatalf("server handshake error = %v, want expired", h.err)
		}
		wantFallback(t, offers, resumed, cs)
	})
	t.Run("client leaf expired", func(t *testing.T) {
		srvClock := &clock{now: time.Now()}
		p := newPair(t, srvClock, nil)
		cfg, resumed, offers := recordSessions(identity.ServerTLSConfig(p.srv))
		s := startServer(t, cfg)
		clientCfg := identity.ClientTLSConfig(p.cli, p.gateway)
		resume(t, s, clientCfg, resumed)
		drain(offers)

		// Go itself declines to resume a session whose client leaf expired;
		// the full handshake that follows is refused.
		srvClock.Advance(25 * time.Hour)
		_, _, h, _ := connect(t, s, clientCfg)
		if h.err == nil || !strings.Contains(h.err.Error(), "expired") {
			t.Fatalf("server handshake error = %v, want expired", h.err)
		}
		if didResume(t, resumed) {
			t.Error("the expired session was resumed")
		}
	})
	t.Run("client drops the anchor, server has a new leaf", func(t *testing.T) {
		// A rollover: both trust the old and the new anchor; the client
		// already has a leaf under the new one, the server not yet.
		oldCA, newCA := testpki.New(t), testpki.New(t)
		both := []*x509.Certificate{oldCA.Anchor.Cert, newCA.Anchor.Cert}
		srvDir := identityDir(t, oldCA, oldCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}), both...)
		cliDir := identityDir(t, newCA, newCA.Leaf(t, "web", "prod", identity.CertOptions{}), both...)
		srv, cli := newSource(t, srvDir, nil), newSource(t, cliDir, nil)
		cfg, resumed, offers := recordSessions(identity.ServerTLSConfig(srv))
		s := startServer(t, cfg)
		clientCfg := identity.ClientTLSConfig(cli, testpki.Name(t, gatewaySA, gatewayNS))
		resume(t, s, clientCfg, resumed)
		drain(offers)

		// The server moves to the new anchor's leaf, still trusting both,
		// and the client drops the old anchor: its session holds the
		// server's old leaf, which it no longer trusts.
		writeDir(t, srvDir, newCA, newCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}), both...)
		writeDir(t, cliDir, newCA, newCA.Leaf(t, "web", "prod", identity.CertOptions{}), newCA.Anchor.Cert)
		reload(t, srv, cli)
		_, cs, h, err := connect(t, s, clientCfg)
		if err != nil || h.err != nil {
			t.Fatalf("client %v, server %v: the stale session cost the connection", err, h.err)
		}
		if cs.DidResume || didResume(t, resumed) {
			t.Error("the session from before the client's rotation was resumed")
		}
		select {
		case <-offers:
			t.Error("the client offered a session made under anchors it has dropped")
		default:
		}
	})
}

// resumedForeignClient starts a server and a client that has resumed a
// session with it once. The client keeps its sessions whatever its own
// anchors do, as a foreign client (a Linkerd proxy, say) does, so that the
// server's side of a rotation is what is tested.
func resumedForeignClient(t *testing.T) (p *pair, s *server, clientCfg *tls.Config, resumed, offers <-chan bool) {
	t.Helper()
	p = newPair(t, nil, nil)
	cfg, resumed, offers := recordSessions(identity.ServerTLSConfig(p.srv))
	s = startServer(t, cfg)
	clientCfg = identity.ClientTLSConfig(p.cli, p.gateway).Clone()
	clientCfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	resume(t, s, clientCfg, resumed)
	drain(offers)
	return p, s, clientCfg, resumed, offers
}

func drain(ch <-chan bool) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func reload(t *testing.T, srcs ...*identity.FileSource) {
	t.Helper()
	for _, src := range srcs {
		if err := src.Reload(); err != nil {
			t.Fatal(err)
		}
	}
}

// wantFallback checks that the client offered its session and the server
// declined it for a full handshake.
func wantFallback(t *testing.T, offers <-chan bool, resumed <-chan bool, cs tls.ConnectionState) {
	t.Helper()
	select {
	case accepted := <-offers:
		if accepted {
			t.Error("the server accepted the stale session")
		}
	default:
		t.Fatal("the client did not offer its session; the test shows nothing")
	}
	if cs.DidResume {
		t.Error("the client resumed the stale session")
	}
	select {
	case r := <-resumed:
		if r {
			t.Error("the server resumed the stale session")
		}
	default: // the full handshake failed before VerifyConnection
	}
}

// resume makes a full connection and then a resumed one with cfg.
func resume(t *testing.T, s *server, cfg *tls.Config, resumed <-chan bool) {
	t.Helper()
	for _, want := range []bool{false, true} {
		_, cs, h, err := connect(t, s, cfg)
		if err != nil || h.err != nil {
			t.Fatalf("client %v, server %v", err, h.err)
		}
		if got := didResume(t, resumed); got != want || cs.DidResume != want {
			t.Fatalf("resumed = %v (client %v), want %v", got, cs.DidResume, want)
		}
	}
}

func didResume(t *testing.T, resumed <-chan bool) bool {
	t.Helper()
	select {
	case r := <-resumed:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the server's VerifyConnection was not called")
		return false
	}
}

// TestRotationKeepsOpenConnections: new files apply to the next handshake;
// a connection made before keeps carrying data both ways.
func TestRotationKeepsOpenConnections(t *testing.T) {
	p := newPair(t, nil, nil)
	s := startServer(t, identity.ServerTLSConfig(p.srv))
	clientCfg := identity.ClientTLSConfig(p.cli, p.gateway)
	before, cs, h, err := connect(t, s, clientCfg)
	if err != nil || h.err != nil {
		t.Fatalf("client %v, server %v", err, h.err)
	}
	oldServerLeaf, oldClientLeaf := cs.PeerCertificates[0], h.state.PeerCertificates[0]

	// Both ends get new leaves; the server also a new issuer under the anchor.
	srvCA := &testpki.CA{Anchor: p.ca.Anchor, Issuer: testpki.NewIssuer(t, p.ca.Anchor)}
	writeDir(t, p.srvDir, srvCA, srvCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
	writeDir(t, p.cliDir, p.clientCA, p.clientCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}))
	for _, src := range []*identity.FileSource{p.srv, p.cli} {
		if err := src.Reload(); err != nil {
			t.Fatal(err)
		}
	}

	// A full handshake (no session cache) sees the new leaves.
	fresh := clientCfg.Clone()
	fresh.ClientSessionCache = nil
	_, cs, h, err = connect(t, s, fresh)
	if err != nil || h.err != nil {
		t.Fatalf("after rotation: client %v, server %v", err, h.err)
	}
	if cs.PeerCertificates[0].Equal(oldServerLeaf) || h.state.PeerCertificates[0].Equal(oldClientLeaf) {
		t.Fatal("a handshake after the rotation used an old leaf")
	}
	if !cs.PeerCertificates[1].Equal(srvCA.Issuer.Cert) {
		t.Error("the server did not send its new chain")
	}
	// A session from before the rotation still resumes: its certificates
	// are still valid and trusted.
	if _, cs, h, err := connect(t, s, clientCfg); err != nil || h.err != nil || !cs.DidResume {
		t.Errorf("resumption after rotation: client %v, server %v, resumed %v", err, h.err, cs.DidResume)
	}
	// The connection made before the rotation still works both ways.
	for i := range 3 {
		if err := echo(before, strings.Repeat("x", 1000*(i+1))); err != nil {
			t.Fatalf("open connection after rotation: %v", err)
		}
	}
}

// TestAnchorRollover: during an anchor rollover ca.crt holds the old and the
// new anchor; leaves under either interoperate until the old one is dropped.
func TestAnchorRollover(t *testing.T) {
	oldCA, newCA := testpki.New(t), testpki.New(t)
	both := []*x509.Certificate{oldCA.Anchor.Cert, newCA.Anchor.Cert}
	gw := testpki.Name(t, gatewaySA, gatewayNS)
	// West still has a leaf under the old anchor, east already one under the new.
	westDir := identityDir(t, oldCA, oldCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}), both...)
	eastDir := identityDir(t, newCA, newCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}), both...)
	west, east := newSource(t, westDir, nil), newSource(t, eastDir, nil)
	westSrv := startServer(t, identity.ServerTLSConfig(west))
	eastSrv := startServer(t, identity.ServerTLSConfig(east))
	if _, _, h, err := connect(t, eastSrv, identity.ClientTLSConfig(west, gw)); err != nil || h.err != nil {
		t.Fatalf("west (old anchor) to east (new anchor): client %v, server %v", err, h.err)
	}
	if _, _, h, err := connect(t, westSrv, identity.ClientTLSConfig(east, gw)); err != nil || h.err != nil {
		t.Fatalf("east (new anchor) to west (old anchor): client %v, server %v", err, h.err)
	}

	// East finishes the rollover and drops the old anchor: west's old leaf
	// is refused from then on.
	writeDir(t, eastDir, newCA, newCA.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{}), newCA.Anchor.Cert)
	if err := east.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, h, _ := connect(t, eastSrv, identity.ClientTLSConfig(west, gw)); h.err == nil || !strings.Contains(h.err.Error(), "unknown authority") {
		t.Fatalf("west's old-anchor leaf after east dropped the old anchor: server error %v", h.err)
	}
}

// TestLeafAloneFromOwnCluster: a client of the gateway's own cluster that
// sends its leaf without the issuer (openssl s_client -cert without
// -cert_chain) is accepted, since the gateway knows its own issuer.
func TestLeafAloneFromOwnCluster(t *testing.T) {
	ca := testpki.New(t)
	srv := newSource(t, identityDir(t, ca, ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{})), nil)
	s := startServer(t, identity.ServerTLSConfig(srv))
	for _, opts := range []identity.CertOptions{{}, {NoSPIFFEURI: true}} {
		_, _, h, err := connect(t, s, rawClient(ca.Leaf(t, "web", "prod", opts)))
		if err != nil || h.err != nil {
			t.Fatalf("leaf alone (%+v): client %v, server %v", opts, err, h.err)
		}
	}
}
