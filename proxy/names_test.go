package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseServiceName(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		in      string
		want    Destination
		wantErr error
	}{
		{"api.production.svc.cluster.local", Destination{"api", "production", 0}, nil},
		{"api.production.svc.cluster.local.", Destination{"api", "production", 0}, nil},
		{"API.Production.SVC.Cluster.Local", Destination{"api", "production", 0}, nil},
		{"outbound_.8080_._.api.production.svc.cluster.local", Destination{"api", "production", 8080}, nil},
		{"outbound_.65535_._.a-b.c-d.svc.cluster.local", Destination{"a-b", "c-d", 65535}, nil},
		{"outbound_.0_._.api.production.svc.cluster.local", Destination{}, errBadPort},
		{"outbound_.70000_._.api.production.svc.cluster.local", Destination{}, errBadPort},
		{"outbound_.080_._.api.production.svc.cluster.local", Destination{}, errBadPort},
		{"outbound_.8080.api.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"api.production.svc.other.domain", Destination{}, errNotServiceName},
		{"api.production.svc.cluster.local.evil", Destination{}, errNotServiceName},
		{"a.b.api.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"..svc.cluster.local", Destination{}, errNotServiceName},
		{"api..svc.cluster.local", Destination{}, errNotServiceName},
		{"api.production..svc.cluster.local", Destination{}, errNotServiceName},
		{"-api.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"api-.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"api%00.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"api\x00.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"api_x.production.svc.cluster.local", Destination{}, errNotServiceName},
		{long + ".production.svc.cluster.local", Destination{}, errNotServiceName},
		{strings.Repeat("a.", 150) + "svc.cluster.local", Destination{}, errNotServiceName},
		{"linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local", Destination{}, errNotServiceName},
		{"", Destination{}, errNotServiceName},
		{"svc.cluster.local", Destination{}, errNotServiceName},
		// U+212A (Kelvin sign) and U+017F (long s) lower-case to ASCII k and s.
		{"\u212Av.production.svc.cluster.local", Destination{}, errNotServiceName},
		{"api.production.\u017Fvc.cluster.local", Destination{}, errNotServiceName},
		{"api.production.svc.cluster.loca\u212A", Destination{}, errNotServiceName},
		{"outbound_.+8080_._.api.production.svc.cluster.local", Destination{}, errBadPort},
		{"outbound_. 8080_._.api.production.svc.cluster.local", Destination{}, errBadPort},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseServiceName(tt.in, "cluster.local")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseAuthority(t *testing.T) {
	tests := []struct {
		in      string
		want    Destination
		wantErr bool
	}{
		{"api.production.svc.cluster.local", Destination{"api", "production", 0}, false},
		{"api.production.svc.cluster.local:8080", Destination{"api", "production", 8080}, false},
		{"api.production.svc.cluster.local.:8080", Destination{"api", "production", 8080}, false},
		{"api.production.svc.cluster.local:0", Destination{}, true},
		{"api.production.svc.cluster.local:99999", Destination{}, true},
		{"api.production.svc.cluster.local:http", Destination{}, true},
		{"[::1]:8080", Destination{}, true},
		{"api.production.svc.cluster.local:+8080", Destination{}, true},
		{"api.production.svc.cluster.local:-1", Destination{}, true},
		{"api.production.svc.cluster.local:", Destination{}, true},
		{"api.production.svc.cluster.local:08080", Destination{}, true},
		{"[api.production.svc.cluster.local]:8080", Destination{}, true},
		{"[api.production.svc.cluster.local]", Destination{}, true},
		{"api.production.svc.cluster.local:8080:8080", Destination{}, true},
		{"\u212Av.production.svc.cluster.local:8080", Destination{}, true},
		{"10.0.0.1:8080", Destination{}, true},
		{"example.com", Destination{}, true},
	}
	for _, tt := range tests {
		got, err := ParseAuthority(tt.in, "cluster.local")
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseAuthority(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Destination
		domain  string
		wantErr bool
	}{
		{"api.production.svc.cluster.local:8080", Destination{"api", "production", 8080}, "cluster.local", false},
		{"api.production.svc.east.example:443", Destination{"api", "production", 443}, "east.example", false},
		{"api.svc.svc.cluster.local:80", Destination{"api", "svc", 80}, "cluster.local", false},
		{"api.production.svc.cluster.local", Destination{}, "", true},
		{"api.production.svc.cluster.local:0", Destination{}, "", true},
		{"api.production.svc.cluster.local:+80", Destination{}, "", true},
		{"api.production.svc:80", Destination{}, "", true},
		{"api.production.cluster.local:80", Destination{}, "", true},
		{"a.b.api.production.svc.cluster.local:80", Destination{}, "", true},
		{"[api.production.svc.cluster.local]:80", Destination{}, "", true},
		{"10.0.0.1:80", Destination{}, "", true},
	}
	for _, tt := range tests {
		got, domain, err := ParseTarget(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want || domain != tt.domain {
			t.Errorf("ParseTarget(%q) = %+v, %q, %v; want %+v, %q, err %v", tt.in, got, domain, err, tt.want, tt.domain, tt.wantErr)
		}
	}
}

func TestOutboundServerName(t *testing.T) {
	got, err := OutboundServerName("api.production.svc.cluster.local:8080")
	if err != nil || got != "outbound_.8080_._.api.production.svc.cluster.local" {
		t.Fatalf("got %q, %v", got, err)
	}
	d, err := ParseServiceName(got, "cluster.local")
	if err != nil || d != (Destination{"api", "production", 8080}) {
		t.Fatalf("round trip: %+v, %v", d, err)
	}
	if _, err := OutboundServerName("api.production.svc.cluster.local"); err == nil {
		t.Fatal("target without port accepted")
	}
}

// FuzzParseServiceName checks that whatever a client puts in its SNI or
// authority, a name that parses is a plain <svc>.<ns> pair that renders
// back to a name the parser accepts with the same meaning.
func FuzzParseServiceName(f *testing.F) {
	for _, s := range []string{
		"api.production.svc.cluster.local", "outbound_.8080_._.api.production.svc.cluster.local",
		"API.prod.svc.cluster.local.", "a..svc.cluster.local", "api.production.svc.cluster.local:8080",
		"outbound_.1_._.x.y.svc.cluster.local", "%00.x.svc.cluster.local",
		"\u212Av.production.svc.cluster.local", "api.production.svc.cluster.local:+8080",
		"[api.production.svc.cluster.local]:8080",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, parse := range []func(string, string) (Destination, error){ParseServiceName, ParseAuthority} {
			d, err := parse(in, "cluster.local")
			if err != nil {
				continue
			}
			if !isDNSLabel(d.Service) || !isDNSLabel(d.Namespace) || d.Port < 0 || d.Port > 65535 {
				t.Fatalf("%q parsed to invalid %+v", in, d)
			}
			again, err := ParseServiceName(d.Service+"."+d.Namespace+".svc.cluster.local", "cluster.local")
			if err != nil || again.Service != d.Service || again.Namespace != d.Namespace {
				t.Fatalf("%q: re-parse of %+v gave %+v, %v", in, d, again, err)
			}
		}
		if d, domain, err := ParseTarget(in); err == nil {
			if !isDNSLabel(d.Service) || !isDNSLabel(d.Namespace) || d.Port < 1 || d.Port > 65535 || !isASCII(domain) {
				t.Fatalf("target %q parsed to invalid %+v in %q", in, d, domain)
			}
		}
	})
}
