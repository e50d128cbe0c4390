package static

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcgate/mcgate/proxy"
)

const good = `
services:
- name: api
  namespace: production
  ports:
  - port: 8080
    endpoints: ["127.0.0.1:18080", "127.0.0.1:18081"]
- name: multi
  namespace: production
  ports:
  - port: 80
    endpoints: ["127.0.0.1:1"]
  - port: 81
    endpoints: []
egress:
- listen: 127.0.0.3:14200
  gatewayAddress: 127.0.0.2:4143
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  target: api.production.svc.cluster.local:8080
`

func TestParseAndRoute(t *testing.T) {
	c, err := Parse(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.Table()
	tests := []struct {
		d       proxy.Destination
		want    int
		wantErr error
	}{
		{proxy.Destination{Service: "api", Namespace: "production", Port: 8080}, 2, nil},
		{proxy.Destination{Service: "api", Namespace: "production"}, 2, nil},
		{proxy.Destination{Service: "api", Namespace: "production", Port: 9090}, 0, proxy.ErrUnknownPort},
		{proxy.Destination{Service: "multi", Namespace: "production"}, 0, proxy.ErrUnknownPort},
		{proxy.Destination{Service: "multi", Namespace: "production", Port: 81}, 0, proxy.ErrNoEndpoints},
		{proxy.Destination{Service: "api", Namespace: "staging", Port: 8080}, 0, proxy.ErrNotExported},
	}
	for _, tt := range tests {
		eps, err := tbl.Route(tt.d)
		if !errors.Is(err, tt.wantErr) || len(eps) != tt.want {
			t.Errorf("Route(%+v) = %v, %v; want %d endpoints, err %v", tt.d, eps, err, tt.want, tt.wantErr)
		}
	}
	if got := c.Egress[0].Addresses(); len(got) != 1 || got[0] != "127.0.0.2:4143" {
		t.Errorf("egress addresses = %v", got)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, in, wantMsg string
	}{
		{"unknown field", "services:\n- name: a\n  namespace: b\n  portz: []\n", "line 4"},
		{"bad endpoint", "services:\n- name: a\n  namespace: b\n  ports:\n  - port: 80\n    endpoints: [\"localhost:80\"]\n", "line 5"},
		{"bad port", "services:\n- name: a\n  namespace: b\n  ports:\n  - port: 0\n", "line 5: service b/a: port 0"},
		{"bad name", "services:\n- name: A_b\n  namespace: b\n  ports:\n  - port: 1\n", "line 2"},
		{"duplicate", "services:\n- name: a\n  namespace: b\n  ports: [{port: 1}]\n- name: a\n  namespace: b\n  ports: [{port: 1}]\n", "line 5: service b/a repeats the one at line 2"},
		{"egress without identity", "egress:\n- listen: 127.0.0.1:1\n  gatewayAddress: 127.0.0.1:2\n  target: a.b.svc.cluster.local:80\n", "gatewayIdentity is required"},
		{"egress bad target", "egress:\n- listen: 127.0.0.1:1\n  gatewayAddress: 127.0.0.1:2\n  gatewayIdentity: x\n  target: example.com:80\n", "line 2: egress 127.0.0.1:1: target"},
		{"egress no port", "egress:\n- listen: 127.0.0.1:1\n  gatewayAddress: 127.0.0.1:2\n  gatewayIdentity: x\n  target: a.b.svc.cluster.local\n", "target"},
		{"egress bad mode", "egress:\n- listen: 127.0.0.1:1\n  gatewayAddress: 127.0.0.1:2\n  gatewayIdentity: x\n  target: a.b.svc.cluster.local:80\n  mode: udp\n", "mode \"udp\""},
		{"not yaml", "services: [", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("services: []\negress: []\n")
	f.Add("services:\n- {name: a, namespace: b, ports: [{port: 1, endpoints: ['1.2.3.4:5']}]}\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever validated must route without panicking.
		tbl := c.Table()
		for _, s := range c.Services {
			tbl.Route(proxy.Destination{Service: s.Name, Namespace: s.Namespace})
		}
	})
}
