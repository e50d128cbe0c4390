package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"testing"
	"time"
)

func cacheKey(i int) [sha256.Size]byte {
	var k [sha256.Size]byte
	binary.BigEndian.PutUint64(k[:], uint64(i))
	return k
}

// anyWindow is a validity window that includes cacheNow.
var (
	cacheNow  = time.Unix(1_700_000_000, 0)
	anyWindow = verifiedChain{notBefore: cacheNow.Add(-time.Hour), notAfter: cacheNow.Add(time.Hour)}
)

// checkCacheBounds: the segments stay within their bounds and the index
// holds exactly their entries.
func checkCacheBounds(t *testing.T, c *verifiedCache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.probation.Len() > maxProbation || c.protected.Len() > maxVerified-maxProbation ||
		len(c.entries) != c.probation.Len()+c.protected.Len() {
		t.Fatalf("probation %d (max %d), protected %d (max %d), index %d",
			c.probation.Len(), maxProbation, c.protected.Len(), maxVerified-maxProbation, len(c.entries))
	}
}

// TestVerifiedCacheEviction: memory stays bounded, and chains seen once,
// however many, never flush the chains of peers that came back.
func TestVerifiedCacheEviction(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, c *verifiedCache)
	}{
		{"returning peers survive any number of one-time chains", func(t *testing.T, c *verifiedCache) {
			const peers = 100
			for i := range peers {
				c.put(cacheKey(i), anyWindow)
				if _, ok := c.get(cacheKey(i), cacheNow); !ok {
					t.Fatalf("peer %d missed right after its put", i)
				}
			}
			for i := range 10 * maxVerified { // a holder of many valid certificates, each presented once
				c.put(cacheKey(peers+i), anyWindow)
			}
			checkCacheBounds(t, c)
			for i := range peers {
				if _, ok := c.get(cacheKey(i), cacheNow); !ok {
					t.Fatalf("returning peer %d flushed by chains seen once", i)
				}
			}
		}},
		{"probation forgets its least recently used first", func(t *testing.T, c *verifiedCache) {
			for i := range maxProbation + 1 {
				c.put(cacheKey(i), anyWindow)
			}
			if _, ok := c.get(cacheKey(0), cacheNow); ok {
				t.Fatal("the oldest chain on probation kept past maxProbation")
			}
			if _, ok := c.get(cacheKey(1), cacheNow); !ok {
				t.Fatal("the second oldest chain on probation forgotten")
			}
		}},
		{"a full protected segment demotes its least recently used", func(t *testing.T, c *verifiedCache) {
			for i := range maxVerified - maxProbation + 1 {
				c.put(cacheKey(i), anyWindow)
				c.get(cacheKey(i), cacheNow)
			}
			checkCacheBounds(t, c)
			if c.len() != maxVerified-maxProbation+1 {
				t.Fatalf("%d chains remembered, want %d: a demoted chain is kept on probation", c.len(), maxVerified-maxProbation+1)
			}
			c.mu.Lock()
			demoted := c.entries[cacheKey(0)].Value.(*cachedChain).protected
			c.mu.Unlock()
			if demoted {
				t.Fatal("the least recently used protected chain was not demoted")
			}
		}},
		{"bounded with everything promoted", func(t *testing.T, c *verifiedCache) {
			for i := range 3 * maxVerified {
				c.put(cacheKey(i), anyWindow)
				c.get(cacheKey(i), cacheNow)
			}
			checkCacheBounds(t, c)
			if c.len() > maxVerified {
				t.Fatalf("%d chains remembered, at most %d", c.len(), maxVerified)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, &verifiedCache{}) })
	}
}

// TestVerifiedCacheWindow: a chain is served only inside its validity
// window, and forgotten once it has expired.
func TestVerifiedCacheWindow(t *testing.T) {
	nb, na := cacheNow, cacheNow.Add(24*time.Hour)
	tests := []struct {
		name      string
		at        time.Time
		hit       bool
		forgotten bool
	}{
		{"before NotBefore", nb.Add(-time.Nanosecond), false, false},
		{"at NotBefore", nb, true, false},
		{"at NotAfter", na, true, false},
		{"after NotAfter", na.Add(time.Nanosecond), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c verifiedCache
			c.put(cacheKey(1), verifiedChain{notBefore: nb, notAfter: na})
			if _, ok := c.get(cacheKey(1), tt.at); ok != tt.hit {
				t.Fatalf("hit = %v, want %v", ok, tt.hit)
			}
			if forgotten := c.len() == 0; forgotten != tt.forgotten {
				t.Fatalf("forgotten = %v, want %v", forgotten, tt.forgotten)
			}
		})
	}
}

// testChain is a peer chain under a fresh anchor: leaf, issuer, anchor.
type testChain struct {
	anchor, issuer, leaf *KeyPair
}

func newTestChain(t testing.TB, leafOpts CertOptions) testChain {
	t.Helper()
	anchor, err := NewAnchor(CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := NewIssuer(anchor, CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name, err := NewName("cluster.local", "west", "web")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := NewLeaf(issuer, name, leafOpts)
	if err != nil {
		t.Fatal(err)
	}
	return testChain{anchor, issuer, leaf}
}

// TestTrustVerifyCache: trust.verify caches by the exact chain presented,
// for the chain's validity window only, and never lets a cached chain
// skip the checks that depend on the handshake rather than the chain.
func TestTrustVerifyCache(t *testing.T) {
	now := time.Now()
	tc := newTestChain(t, CertOptions{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	tr := newTrust([]*x509.Certificate{tc.anchor.Cert}, []*x509.Certificate{tc.issuer.Cert})
	full := []*x509.Certificate{tc.leaf.Cert, tc.issuer.Cert}
	verify := func(certs []*x509.Certificate, usage x509.ExtKeyUsage, at time.Time) error {
		_, err := tr.verify(certs, usage, at)
		return err
	}
	if err := verify(full, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.verified.get(chainKey(full), now); !ok {
		t.Fatal("a chain that verified was not remembered")
	}
	// The leaf alone (completed with our own issuer) is other bytes: its
	// own entry, not a hit on the full chain's.
	if _, ok := tr.verified.get(chainKey(full[:1]), now); ok {
		t.Fatal("the leaf alone hits the entry of leaf and issuer")
	}
	if err := verify(full[:1], x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Fatal(err)
	}
	if n := tr.verified.len(); n != 2 {
		t.Fatalf("%d entries, want 2 (one per presented chain)", n)
	}
	for _, tt := range []struct {
		name string
		at   time.Time
	}{
		{"before the leaf's NotBefore", tc.leaf.Cert.NotBefore.Add(-time.Second)},
		{"after the leaf's NotAfter", tc.leaf.Cert.NotAfter.Add(time.Second)},
	} {
		if err := verify(full, x509.ExtKeyUsageClientAuth, tt.at); err == nil {
			t.Errorf("%s: a cached chain verified", tt.name)
		}
	}
	if _, ok := tr.verified.get(chainKey(full), now); ok {
		t.Fatal("an expired chain is still remembered")
	}
}

// TestTrustVerifyCacheUsage: a chain cached for one role does not pass for
// a role its leaf lacks.
func TestTrustVerifyCacheUsage(t *testing.T) {
	tc := newTestChain(t, CertOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	tr := newTrust([]*x509.Certificate{tc.anchor.Cert}, nil)
	chain := []*x509.Certificate{tc.leaf.Cert, tc.issuer.Cert}
	if _, err := tr.verify(chain, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.verify(chain, x509.ExtKeyUsageClientAuth, time.Now()); err == nil {
		t.Fatal("a server-only leaf cached as a server passed as a client")
	}
}

// TestVerifiedCacheRotation: every load of the identity files makes a new
// trust with an empty cache, so rotating the anchors or our own identity
// forgets the chains verified before.
func TestVerifiedCacheRotation(t *testing.T) {
	now := time.Now()
	peer := newTestChain(t, CertOptions{})
	peerChain := []*x509.Certificate{peer.leaf.Cert, peer.issuer.Cert}
	load := func(anchor *KeyPair) *loaded {
		t.Helper()
		issuer, err := NewIssuer(anchor, CertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		name, err := NewName("cluster.local", "linkerd-multicluster", "linkerd-gateway")
		if err != nil {
			t.Fatal(err)
		}
		own, err := NewLeaf(issuer, name, CertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		key, err := own.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		l, err := parseFiles(rawFiles{cert: EncodeCertsPEM(own.Cert, issuer.Cert), key: key, anchors: anchor.CertPEM()}, now)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	before := load(peer.anchor)
	if _, err := before.trust.verify(peerChain, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Fatal(err)
	}
	if before.trust.verified.len() != 1 {
		t.Fatal("the peer's chain was not remembered")
	}
	if n := load(peer.anchor).trust.verified.len(); n != 0 {
		t.Fatalf("our own identity rotated, and %d chains are still remembered", n)
	}
	other, err := NewAnchor(CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := load(other).trust.verify(peerChain, x509.ExtKeyUsageClientAuth, now); err == nil {
		t.Fatal("a chain remembered under the old anchors verified after their rotation")
	}
}
