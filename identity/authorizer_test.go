package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

func TestNewAuthorizerRefusesBadPatterns(t *testing.T) {
	for _, p := range []string{
		"",
		"spiffe://cluster.local/ns/*/sa/web",
		"spiffe://cluster.local/ns/prod/*",
		"spiffe://cluster.local/ns/*",
		"spiffe://cluster.local/ns/prod/sa/web*",
		"spiffe://*/ns/prod/sa/web",
		"spiffe://cluster.local*",
		"spiffe://Cluster.local/*",
		"spiffe://cluster.local/ns/Prod/sa/*",
		"spiffe://cluster.local/other/path",
		"*.cluster.local",
		"web-*.prod.serviceaccount.identity.linkerd.cluster.local",
		"*.*.serviceaccount.identity.linkerd.cluster.local",
		"web.*.serviceaccount.identity.linkerd.cluster.local",
		"*.prod.serviceaccount.identity.linkerd.*",
		"*.prod.serviceaccount.identity.linkerd.",
		"**",
		"web.prod.svc.cluster.local",
		"*.\u212Aube-system.serviceaccount.identity.linkerd.cluster.local", // Kelvin sign, not k
		"*.serviceaccount.identity.lin\u212Aerd.cluster.local",
	} {
		_, err := identity.NewAuthorizer([]string{"spiffe://cluster.local/ns/prod/sa/ok", p})
		if err == nil {
			t.Errorf("NewAuthorizer accepted %q", p)
			continue
		}
		if !strings.Contains(err.Error(), `"`+p+`"`) {
			t.Errorf("error %q does not name the pattern %q", err, p)
		}
	}
}

func TestAuthorize(t *testing.T) {
	ca := testpki.New(t)
	state := func(sa, ns string, opts identity.CertOptions) tls.ConnectionState {
		leaf := ca.Leaf(t, sa, ns, opts)
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Cert, ca.Issuer.Cert}}
	}
	gw := state(gatewaySA, gatewayNS, identity.CertOptions{})
	gwLinkerd := state(gatewaySA, gatewayNS, identity.CertOptions{NoSPIFFEURI: true})
	web := state("web", "prod", identity.CertOptions{})
	const gwID = "spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway"

	tests := []struct {
		name     string
		patterns []string
		cs       tls.ConnectionState
		allow    bool
	}{
		{"no patterns allow any", nil, web, true},
		{"star allows any", []string{"*"}, web, true},
		{"exact SPIFFE", []string{gwID}, gw, true},
		{"exact SPIFFE, DNS-only leaf", []string{gwID}, gwLinkerd, true},
		{"exact DNS", []string{"linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}, gw, true},
		{"exact DNS, upper case", []string{"Linkerd-Gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}, gwLinkerd, true},
		{"exact, other identity", []string{gwID}, web, false},
		{"namespace SPIFFE", []string{"spiffe://cluster.local/ns/linkerd-multicluster/sa/*"}, gwLinkerd, true},
		{"namespace SPIFFE, other namespace", []string{"spiffe://cluster.local/ns/linkerd-multicluster/sa/*"}, web, false},
		{"namespace SPIFFE, prefix of namespace", []string{"spiffe://cluster.local/ns/linkerd/sa/*"}, gw, false},
		{"namespace DNS", []string{"*.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}, gw, true},
		{"namespace DNS, other namespace", []string{"*.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}, web, false},
		{"trust domain SPIFFE", []string{"spiffe://cluster.local/*"}, web, true},
		{"trust domain DNS", []string{"*.serviceaccount.identity.linkerd.cluster.local"}, web, true},
		{"other trust domain", []string{"spiffe://east.local/*", "*.serviceaccount.identity.linkerd.cluster"}, web, false},
		{"one of several", []string{gwID, "spiffe://cluster.local/ns/prod/sa/web"}, web, true},
		{"no certificate", nil, tls.ConnectionState{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := identity.NewAuthorizer(tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			peer, err := a.Authorize(tt.cs)
			if (err == nil) != tt.allow {
				t.Fatalf("Authorize = %q, %v; want allowed=%v", peer, err, tt.allow)
			}
			if len(tt.cs.PeerCertificates) == 0 {
				return
			}
			want, _ := identity.PeerName(tt.cs)
			if peer != want.String() {
				t.Errorf("peer = %q, want %q (also when refused)", peer, want)
			}
		})
	}
	var zero *identity.Authorizer
	if _, err := zero.Authorize(web); err != nil {
		t.Errorf("nil Authorizer refused: %v", err)
	}
}
