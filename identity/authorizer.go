package identity

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorizer decides which client identities the gateway serves. The zero
// value and an Authorizer without patterns allow every identity; the chain
// was already checked against the trust anchors by ServerTLSConfig.
type Authorizer struct {
	patterns []string
	matchers []spiffeid.Matcher
}

// NewAuthorizer compiles allow patterns. A pattern is one of:
//
//   - any identity
//     <identity>                                            exactly that identity, in either spelling:
//     spiffe://<td>/ns/<ns>/sa/<sa>
//     <sa>.<ns>.serviceaccount.identity.linkerd.<td>
//     spiffe://<td>/ns/<ns>/sa/*                            any service account of namespace ns in td
//     *.<ns>.serviceaccount.identity.linkerd.<td>           the same, in DNS spelling
//     spiffe://<td>/*                                       any identity in trust domain td
//     *.serviceaccount.identity.linkerd.<td>                the same, in DNS spelling
//
// '*' appears only as shown: as the whole last path segment(s) of a SPIFFE
// ID or as the first label(s) of a DNS name, never inside a label ("gw-*") or
// a trust domain. Each spelling of a pattern matches identities presented in
// either spelling. An invalid pattern is an error that names it. No patterns
// means any identity issued under the anchors.
func NewAuthorizer(patterns []string) (*Authorizer, error) {
	a := &Authorizer{patterns: append([]string(nil), patterns...)}
	for _, p := range patterns {
		m, err := compilePattern(p)
		if err != nil {
			return nil, fmt.Errorf("identity: allow pattern %q: %w", p, err)
		}
		a.matchers = append(a.matchers, m)
	}
	return a, nil
}

// compilePattern turns one pattern into a go-spiffe Matcher over the SPIFFE
// spelling of a Name.
func compilePattern(p string) (spiffeid.Matcher, error) {
	switch {
	case p == "*":
		return spiffeid.MatchAny(), nil
	case !strings.Contains(p, "*"):
		n, err := parseName(p)
		if err != nil {
			return nil, err
		}
		return spiffeid.MatchID(n.SPIFFEID()), nil
	case strings.HasPrefix(p, "spiffe://"):
		return compileSPIFFEWildcard(p)
	default:
		return compileDNSWildcard(p)
	}
}

func compileSPIFFEWildcard(p string) (spiffeid.Matcher, error) {
	rest := strings.TrimPrefix(p, "spiffe://")
	td, path, _ := strings.Cut(rest, "/")
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, err
	}
	if path == "*" {
		return spiffeid.MatchMemberOf(trustDomain), nil
	}
	ns, ok := strings.CutSuffix(strings.TrimPrefix(path, "ns/"), "/sa/*")
	if !ok || !strings.HasPrefix(path, "ns/") {
		return nil, errors.New("a SPIFFE pattern ends in /* only as spiffe://<td>/* or spiffe://<td>/ns/<ns>/sa/*")
	}
	return matchNamespace(trustDomain, ns)
}

func compileDNSWildcard(p string) (spiffeid.Matcher, error) {
	lower, err := lowerASCII(p)
	if err != nil {
		return nil, err
	}
	if td, ok := strings.CutPrefix(lower, "*"+linkerdDNSInfix); ok {
		trustDomain, err := spiffeid.TrustDomainFromString(td)
		if err != nil {
			return nil, err
		}
		return spiffeid.MatchMemberOf(trustDomain), nil
	}
	ns, td, ok := strings.Cut(strings.TrimPrefix(lower, "*."), linkerdDNSInfix)
	if !ok || !strings.HasPrefix(lower, "*.") {
		return nil, errors.New("a DNS pattern starts with * only as *.<ns>" + linkerdDNSInfix + "<td> or *" + linkerdDNSInfix + "<td>")
	}
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, err
	}
	return matchNamespace(trustDomain, ns)
}

// matchNamespace matches every service account of namespace ns in td.
func matchNamespace(td spiffeid.TrustDomain, ns string) (spiffeid.Matcher, error) {
	if err := checkLabel("namespace", ns); err != nil {
		return nil, err
	}
	return spiffeid.MatchIDPrefix(spiffeid.RequireFromSegments(td, "ns", ns, "sa")), nil
}

// Authorize returns the client identity of a completed handshake, as the
// string to log, and an error if no pattern allows it. It trusts cs to come
// from a handshake with ServerTLSConfig, which verified the chain; it does
// not verify again. The signature fits the proxy's authorization hook.
func (a *Authorizer) Authorize(cs tls.ConnectionState) (peer string, err error) {
	n, err := PeerName(cs)
	if err != nil {
		return "", err
	}
	if a == nil || len(a.matchers) == 0 {
		return n.String(), nil
	}
	id := n.SPIFFEID()
	for _, m := range a.matchers {
		if m(id) == nil {
			return n.String(), nil
		}
	}
	return n.String(), fmt.Errorf("identity: %s is not allowed (allowed: %s)", n, strings.Join(a.patterns, ", "))
}

// PeerName returns the identity of the peer's leaf certificate in cs: its
// SPIFFE URI SAN, or else its Linkerd DNS SAN. Like Authorize, it does not
// verify the chain.
func PeerName(cs tls.ConnectionState) (Name, error) {
	if len(cs.PeerCertificates) == 0 {
		return Name{}, errors.New("identity: peer presented no certificate")
	}
	return leafName(cs.PeerCertificates[0])
}
