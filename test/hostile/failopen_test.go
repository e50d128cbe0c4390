package hostile

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/proxy"
)

// TestFailOpenRoutes (issue 25, point 3): connections whose SNI names
// something other than an exported service, or an egress listener whose
// target is in a cluster domain the remote gateway does not use, try to
// let the HTTP Host of their bytes pick an exported service instead. The
// exported service's backend must accept none of them.
func TestFailOpenRoutes(t *testing.T) {
	f := newAPIFixture(t)
	ca, be, gw, goodCfg := f.ca, f.be, f.gw, f.good
	addr := gw.Addr().String()
	hostAPI := []byte("GET / HTTP/1.1\r\nHost: " + apiSNI + "\r\n\r\n")
	header := proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: apiPort, Name: apiSNI})
	attempts := []struct {
		name, sni string
		alpn      []string
		preface   []byte
	}{
		{"sni port 0", "outbound_.0_._.db.production.svc.cluster.local", nil, hostAPI},
		{"sni port 99999", "outbound_.99999_._.db.production.svc.cluster.local", nil, hostAPI},
		{"sni in another cluster domain", "outbound_.8080_._.db.production.svc.east.local", nil, hostAPI},
		{"sni plain name in another domain", "db.production.svc.east.local", nil, hostAPI},
		{"sni host name", "www.example.com", nil, hostAPI},
		{"sni with Kelvin sign", "\u212Av.production.svc.cluster.local", nil, hostAPI},
		{"sni names a service, header another", "db.production.svc.cluster.local", []string{proxy.TransportHeaderALPN}, header},
	}
	before := be.Accepted.Load()
	var report []string
	for _, a := range attempts {
		cfg := goodCfg.Clone()
		cfg.ServerName, cfg.NextProtos = a.sni, a.alpn
		n0 := be.Accepted.Load()
		reached := tryThrough(t, func() (net.Conn, error) { return dialGood(addr, cfg) }, a.preface)
		report = append(report, fmt.Sprintf("%-40s backend accepts %d, echo %v", a.name, be.Accepted.Load()-n0, reached))
	}
	// An egress listener whose target is in a domain the remote gateway
	// (cluster.local) does not use; the app names an exported service of
	// the remote cluster in its Host header.
	for _, mode := range []string{"sni", "transport-header"} {
		listen := startTunnel(t, ca, addr, func(r *proxy.EgressRoute) {
			r.Target = "db.production.svc.east.local:8080"
			if mode == "transport-header" {
				r.TransportHeader, r.ServerName = true, testpki.Name(t, gwSA, gwNS).DNS()
			}
		}).listen
		n0 := be.Accepted.Load()
		reached := tryThrough(t, func() (net.Conn, error) { return net.Dial("tcp", listen) }, hostAPI)
		report = append(report, fmt.Sprintf("%-40s backend accepts %d, echo %v", "egress to another domain, "+mode, be.Accepted.Load()-n0, reached))
	}
	t.Log("connections that try to let the Host header choose:\n" + strings.Join(report, "\n"))
	if n := be.Accepted.Load() - before; n != 0 {
		t.Errorf("the exported service's backend accepted %d connections through fail-open routes, want 0", n)
	}
	// The SNIs legitimate clients send still work: a service name, and the
	// gateway's own identity followed by an HTTP authority or a header.
	gwName := testpki.Name(t, gwSA, gwNS).DNS()
	for _, ok := range []struct {
		sni     string
		alpn    []string
		preface []byte
	}{{apiSNI, nil, nil}, {gwName, nil, hostAPI}, {strings.ToUpper(gwName), nil, hostAPI}, {gwName, []string{proxy.TransportHeaderALPN}, header}} {
		cfg := goodCfg.Clone()
		cfg.ServerName, cfg.NextProtos = ok.sni, ok.alpn
		if !tryThrough(t, func() (net.Conn, error) { return dialGood(addr, cfg) }, ok.preface) {
			t.Errorf("SNI %q (ALPN %v) no longer reaches the service", ok.sni, ok.alpn)
		}
	}
}

// tryThrough connects with dial, sends preface (if any) and a line, and
// reports whether they came back from the echo backend (all but a
// transport header, which the gateway consumes).
func tryThrough(t *testing.T, dial func() (net.Conn, error), preface []byte) bool {
	t.Helper()
	c, err := dial()
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := append(append([]byte{}, preface...), "ping\n"...)
	if _, err := c.Write(msg); err != nil {
		return false
	}
	want := msg
	if bytes.HasPrefix(preface, []byte(proxy.TransportHeaderALPN)) {
		want = msg[len(preface):]
	}
	got := make([]byte, len(want))
	_, err = io.ReadFull(c, got)
	return err == nil && bytes.Equal(got, want)
}

// dialGood connects with cfg from the good clients' address.
func dialGood(addr string, cfg *tls.Config) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second, LocalAddr: goodSource}, "tcp", addr, cfg)
}
