package main

import (
	"testing"

	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/mirror"
)

// TestEgressTLSStable: the mirror republishes its egress set at every
// change; the same remote gateway must get the same TLS config each time,
// or the egress set would rebind its listener and lose its sessions.
func TestEgressTLSStable(t *testing.T) {
	ca := testpki.New(t)
	tlsFor := newEgressTLS(testpki.Source(t, ca.IdentityDir(t, "linkerd-gateway", "linkerd-multicluster")))
	id := "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
	entries := []mirror.EgressEntry{
		{Port: 4200, Cluster: "east", GatewayAddresses: []string{"198.18.0.2:4143"}, GatewayIdentity: id, Target: "api.p.svc.cluster.local:80"},
		{Port: 4201, Cluster: "north", GatewayAddresses: []string{"198.18.0.4:4143"}, GatewayIdentity: id, Target: "api.p.svc.cluster.local:80"},
	}
	first, err := mirrorEgressRoutes(tlsFor, entries, "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := mirrorEgressRoutes(tlsFor, entries, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if first[i].TLS != again[i].TLS {
			t.Errorf("route %d: a new TLS config for the same gateway", i)
		}
	}
	if first[0].TLS == first[1].TLS {
		t.Error("two remote gateways share one TLS config (and its session cache)")
	}
	bad := append(entries, mirror.EgressEntry{Port: 4202, GatewayIdentity: "not an identity", GatewayAddresses: []string{"x:1"}})
	routes, err := mirrorEgressRoutes(tlsFor, bad, "")
	if err == nil || len(routes) != 2 {
		t.Fatalf("bad identity: %d routes, err %v; want the 2 good ones and an error", len(routes), err)
	}
}
