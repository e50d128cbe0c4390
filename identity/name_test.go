package identity_test

import (
	"strings"
	"testing"

	"github.com/mcgate/mcgate/identity"
)

func TestParseName(t *testing.T) {
	const (
		spiffe = "spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway"
		dns    = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
	)
	tests := []struct {
		in      string
		td      string
		ns, sa  string
		wantErr string
	}{
		{in: spiffe, td: "cluster.local", ns: "linkerd-multicluster", sa: "linkerd-gateway"},
		{in: dns, td: "cluster.local", ns: "linkerd-multicluster", sa: "linkerd-gateway"},
		{in: strings.ToUpper(dns[:15]) + dns[15:], td: "cluster.local", ns: "linkerd-multicluster", sa: "linkerd-gateway"},
		{in: "spiffe://example.org/ns/prod/sa/web", td: "example.org", ns: "prod", sa: "web"},
		{in: "web.prod.serviceaccount.identity.linkerd.example_org.local", td: "example_org.local", ns: "prod", sa: "web"},
		{in: "spiffe://cluster.local/ns/prod/sa/web/extra", wantErr: "path must be"},
		{in: "spiffe://cluster.local/ns/prod", wantErr: "path must be"},
		{in: "spiffe://cluster.local/sa/web/ns/prod", wantErr: "path must be"},
		{in: "spiffe://cluster.local/ns/Prod/sa/web", wantErr: "namespace"},
		{in: "spiffe://cluster.local/ns/prod/sa/-web", wantErr: "service account"},
		{in: "spiffe://Cluster.local/ns/prod/sa/web", wantErr: "trust domain"},
		{in: "spiffe://", wantErr: "trust domain"},
		{in: "web.prod.svc.cluster.local", wantErr: "want spiffe://"},
		{in: "web.serviceaccount.identity.linkerd.cluster.local", wantErr: "before serviceaccount"},
		{in: "a.b.c.serviceaccount.identity.linkerd.cluster.local", wantErr: "namespace"},
		{in: "web.prod.serviceaccount.identity.linkerd.", wantErr: "trust domain"},
		{in: "", wantErr: "want spiffe://"},
		{in: "web.prod.serviceaccount.identity.linkerd.cluster local", wantErr: "trust domain"},
		{in: "w_b.prod.serviceaccount.identity.linkerd.cluster.local", wantErr: "service account"},
		// U+212A, the Kelvin sign, lower-cases to an ASCII 'k': kube-system
		// must not be reachable by a name nobody wrote.
		{in: "web.\u212Aube-system.serviceaccount.identity.linkerd.cluster.local", wantErr: "ASCII"},
		{in: "web.prod.serviceaccount.identity.lin\u212Aerd.cluster.local", wantErr: "ASCII"},
		{in: strings.Repeat("a", 64) + ".prod.serviceaccount.identity.linkerd.cluster.local", wantErr: "1 to 63"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, err := identity.ParseName(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseName(%q) = %v, %v; want error containing %q", tt.in, n, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.in) {
					t.Errorf("error %q does not name the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseName(%q): %v", tt.in, err)
			}
			if got := n.TrustDomain().Name(); got != tt.td {
				t.Errorf("trust domain = %q, want %q", got, tt.td)
			}
			if n.Namespace() != tt.ns || n.ServiceAccount() != tt.sa {
				t.Errorf("ns, sa = %q, %q; want %q, %q", n.Namespace(), n.ServiceAccount(), tt.ns, tt.sa)
			}
			wantSPIFFE := "spiffe://" + tt.td + "/ns/" + tt.ns + "/sa/" + tt.sa
			if got := n.SPIFFEID().String(); got != wantSPIFFE {
				t.Errorf("SPIFFEID() = %q, want %q", got, wantSPIFFE)
			}
			if got := n.String(); got != wantSPIFFE {
				t.Errorf("String() = %q, want %q", got, wantSPIFFE)
			}
			wantDNS := tt.sa + "." + tt.ns + ".serviceaccount.identity.linkerd." + tt.td
			if got := n.DNS(); got != wantDNS {
				t.Errorf("DNS() = %q, want %q", got, wantDNS)
			}
			// Both spellings parse back to the same, == comparable Name.
			for _, s := range []string{n.String(), n.DNS()} {
				back, err := identity.ParseName(s)
				if err != nil || back != n {
					t.Errorf("ParseName(%q) = %v, %v; want %v", s, back, err, n)
				}
			}
		})
	}
}

func TestNameEquality(t *testing.T) {
	a, _ := identity.ParseName("spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway")
	b, _ := identity.ParseName("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local")
	c, _ := identity.NewName("cluster.local", "linkerd-multicluster", "linkerd-gateway")
	if a != b || b != c {
		t.Fatalf("spellings differ: %v %v %v", a, b, c)
	}
	other, _ := identity.ParseName("spiffe://cluster.local/ns/linkerd-multicluster/sa/other")
	otherTD, _ := identity.ParseName("spiffe://east.local/ns/linkerd-multicluster/sa/linkerd-gateway")
	if a == other || a == otherTD {
		t.Fatal("different identities compare equal")
	}
	var zero identity.Name
	if !zero.IsZero() || a.IsZero() || zero.String() != "" || zero.DNS() != "" || !zero.SPIFFEID().IsZero() {
		t.Fatal("zero Name misbehaves")
	}
}

func TestNameFromSPIFFEID(t *testing.T) {
	n, _ := identity.ParseName("spiffe://cluster.local/ns/prod/sa/web")
	back, err := identity.NameFromSPIFFEID(n.SPIFFEID())
	if err != nil || back != n {
		t.Fatalf("NameFromSPIFFEID = %v, %v; want %v", back, err, n)
	}
	if _, err := identity.NameFromSPIFFEID(n.TrustDomain().ID()); err == nil {
		t.Fatal("NameFromSPIFFEID accepted a trust domain ID")
	}
}
