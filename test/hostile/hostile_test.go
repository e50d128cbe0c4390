package hostile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

// Good-client sampling: probes one after the other, probeGap apart, in
// rounds of roundProbes: for each attack, a quiet round, then an attack
// round (the attack launched, at full strength, then stopped), strictRounds
// times over where the comparison is enforced, looseRounds where it is
// only recorded (`make test`). The attack's p99 over its rounds is compared with the p99 of
// the quiet rounds between them, so that both saw the same background load
// (a 2-core machine shared with builds and tests swings from 2 ms to tens
// of milliseconds in seconds).
const (
	strictRounds = 8
	looseRounds  = 2
	roundProbes  = 50
	probeGap     = 10 * time.Millisecond
)

// TestHostileClients runs each hostile client against one gateway while a
// good client measures success and latency, and compares with quiet rounds
// alternated with the attack's. Every attack must be refused (or bounded)
// with a logged reason and a counted metric, never reach the backend, and
// leave the good client at 100% success with its p99 within 2x of the
// quiet rounds' (enforced with MCGATE_HOSTILE_STRICT=1, see below).
// Attackers connect from 127.0.0.1, the good client from 127.0.0.2.
func TestHostileClients(t *testing.T) {
	f := newAPIFixture(t)
	ca, be, gw, good := f.ca, f.be, f.gw, f.good
	addr := gw.Addr().String()
	strict := os.Getenv("MCGATE_HOSTILE_STRICT") != ""
	rounds := looseRounds
	if strict {
		rounds = strictRounds
	}
	var allQuiet []round
	var report []string
	for _, a := range attacks(t, ca, gw) {
		t.Run(a.name, func(t *testing.T) {
			var quiet, attacked []round
			var reached, dials int64
			for range rounds {
				q := probeRound(addr, good, roundProbes, probeGap)
				if q.failed > 0 {
					t.Fatalf("good client failed %d times with no attack (first: %v)", q.failed, q.firstErr)
				}
				got, n, d := attackRound(t, a, gw, be, good)
				quiet, attacked = append(quiet, q), append(attacked, got)
				reached, dials = reached+n, dials+d
			}
			allQuiet = append(allQuiet, quiet...)
			q, got := pool(quiet...).stats, pool(attacked...).stats
			ratio := float64(got.p99) / float64(q.p99)
			line := fmt.Sprintf("%-28s %s, p99 %.2fx quiet %v (attack: %d connections)", a.name, got, ratio, q.p99.Round(10*time.Microsecond), dials)
			report = append(report, line)
			t.Log(line)
			if got.failed > 0 {
				t.Errorf("good client failed %d times under attack (first: %v)", got.failed, got.firstErr)
			}
			if got.p99 > 2*q.p99 {
				// On a shared 2-core CI machine under -race, the quiet p99
				// itself swings between 30 ms and 300 ms with the
				// neighbours' load, so `make test` records the ratio and
				// `make hostile` (MCGATE_HOSTILE_STRICT=1) enforces it.
				report := t.Logf
				if strict {
					report = t.Errorf
				}
				report("good client p99 %v under attack, more than 2x the quiet %v", got.p99, q.p99)
			}
			if !a.reachesBackend && reached > int64(got.ok+got.failed) {
				t.Errorf("backend saw %d connections, the good client made %d: the attack reached it", reached, got.ok+got.failed)
			}
			logged := func(reason string) bool {
				return reason != "" && strings.Contains(gw.logs.String(), `"reason":"`+reason+`"`)
			}
			if a.metric != "" && !logged(a.reason) && !logged(a.orReason) {
				t.Errorf("no log line with reason %s (or %q)", a.reason, a.orReason)
			}
		})
	}
	if len(allQuiet) > 0 {
		report = append([]string{fmt.Sprintf("%-28s %s", "quiet (all rounds)", pool(allQuiet...).stats)}, report...)
	}
	t.Log("good client (connect + TLS + 64-byte echo):\n" + strings.Join(report, "\n"))
	if path := os.Getenv("MCGATE_HOSTILE_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(strings.Join(report, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// attackRound launches a, waits until it is at full strength, measures a
// round of the good client, and stops it. It returns the round, how many
// connections reached the backend meanwhile, and how many the attack made.
func attackRound(t *testing.T, a attack, gw *gateway, be *backend, good *tls.Config) (got round, reached, dials int64) {
	t.Helper()
	addr := gw.Addr().String()
	counted := func() float64 {
		n := metric(t, gw.reg, a.metric, map[string]string{"reason": a.reason})
		if a.orReason != "" {
			n += metric(t, gw.reg, a.metric, map[string]string{"reason": a.orReason})
		}
		return n
	}
	before := 0.0
	if a.metric != "" {
		before = counted()
	}
	accepted := be.Accepted.Load()
	n, stop := a.launch(addr)
	defer stop()
	// Measure once the attack is at full strength: every worker
	// connected at least once and the gateway counting it.
	wait.Until(t, 30*time.Second, "attack at full strength", func() bool {
		if n.Load() < int64(a.workers) {
			return false
		}
		return a.metric == "" || counted() > before
	})
	var heapBefore resources
	if a.heapBound {
		wait.Until(t, 30*time.Second, "writers held by backpressure", stalled(bytesToUpstream(t, gw.reg), 300*time.Millisecond))
		heapBefore = sample()
	}
	got = probeRound(addr, good, roundProbes, probeGap)
	if a.heapBound {
		// The attackers kept writing all along: with backpressure
		// the gateway holds a bounded amount per connection and the
		// heap stays flat.
		after := sample()
		growth := int64(after.heap) - int64(heapBefore.heap)
		t.Logf("heap while %d clients never read: %v at full strength, %v after %d more probes (growth %+.1f MiB)",
			a.workers, heapBefore, after, roundProbes, float64(growth)/(1<<20))
		if growth > 8<<20 {
			t.Errorf("heap grew by %.1f MiB while clients that never read kept writing", float64(growth)/(1<<20))
		}
	}
	stop()
	reached = be.Accepted.Load() - accepted
	// The next quiet round starts once the gateway has let go of the
	// attack: tearing down 100 connections full of buffered bytes is the
	// attack's cost, not the quiet baseline's.
	wait.Until(t, 30*time.Second, "the attack's connections closed", func() bool {
		return gw.OpenConns() == 0 && gw.HandshakesInProgress() == 0
	})
	return got, reached, n.Load()
}

const (
	handshakeFailures = "gateway_handshake_failures_total"
	refused           = "gateway_refused_connections_total"
)

// hostileScale multiplies the number of concurrent attackers of the mass
// attacks (1,000 slowloris connections, 1,000 half handshakes, 100 clients
// that never read). `go test` runs them at a fifth, which a shared 2-core
// CI machine under -race can carry beside its neighbours; `make hostile`
// sets MCGATE_HOSTILE_SCALE=1 for the full issue 7 figures.
func hostileScale(t *testing.T) float64 {
	v := os.Getenv("MCGATE_HOSTILE_SCALE")
	if v == "" {
		return 0.2
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 10 {
		t.Fatalf("MCGATE_HOSTILE_SCALE=%q: want a number in (0, 10]", v)
	}
	return f
}

// attacks lists the hostile clients of issue 7.
func attacks(t *testing.T, ca *testpki.CA, gw *gateway) []attack {
	scale := hostileScale(t)
	mass := func(n int) int { return max(1, int(float64(n)*scale)) }
	hello := clientHello(t, apiSNI)
	dotHello := helloTrailingDot(t)
	other := testpki.New(t)
	web := testpki.Name(t, "web", "west")
	leaf := func(from *testpki.CA, opts identity.CertOptions) *identity.KeyPair {
		kp, err := identity.NewLeaf(from.Issuer, web, opts)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	// A chain of ten intermediates under our own issuer.
	deep := ca.Issuer
	var deepChain [][]byte
	for range 9 {
		next, err := identity.NewIssuer(deep, identity.CertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deepChain = append([][]byte{next.Cert.Raw}, deepChain...)
		deep = next
	}
	deepChain = append(deepChain, ca.Issuer.Cert.Raw)
	deepLeaf, err := identity.NewLeaf(deep, web, identity.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 16 KiB of SANs.
	var sans []string
	for i := 0; len(strings.Join(sans, "")) < 16<<10; i++ {
		sans = append(sans, fmt.Sprintf("host-%05d.example.com", i))
	}
	var twoNames []string // many Linkerd-form names of other identities
	for i := 0; len(strings.Join(twoNames, "")) < 16<<10; i++ {
		twoNames = append(twoNames, fmt.Sprintf("sa%d.west.serviceaccount.identity.linkerd.cluster.local", i))
	}

	goodCfg := clientConfig(t, ca)
	withSNI := func(sni string, alpn ...string) *tls.Config {
		c := goodCfg.Clone()
		c.ServerName, c.NextProtos = sni, alpn
		return c
	}
	get := func(host string) []byte { return []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n") }
	gwName := testpki.Name(t, gwSA, gwNS).DNS()
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".production.svc.cluster.local"
	header := func(port int32, name string) []byte {
		return proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: port, Name: name})
	}
	const flood = 20 // workers of the paced floods, each one hit per 500 ms
	paced := 500 * time.Millisecond
	certAttack := func(name string, cfg *tls.Config, reason string) attack {
		return attack{name: name, workers: flood, every: paced, hit: tlsThenDrain(cfg, nil), metric: handshakeFailures, reason: reason}
	}
	refusal := func(name string, cfg *tls.Config, preface []byte, reason string) attack {
		return attack{name: name, workers: flood, every: paced, hit: tlsThenDrain(cfg, preface), metric: refused, reason: reason}
	}
	return []attack{
		{name: "plaintext HTTP", workers: flood, every: paced, hit: sendThenDrain(func() []byte { return get(apiSNI) }), metric: handshakeFailures, reason: "not_tls"},
		{name: "random bytes", workers: flood, every: paced, hit: sendThenDrain(randomBytes), metric: handshakeFailures, reason: "not_tls"},
		{name: fmt.Sprintf("slowloris x%d", mass(1000)), workers: mass(1000), every: time.Second, hit: slowHello(hello), metric: handshakeFailures, reason: "timeout", orReason: "evicted"},
		{name: fmt.Sprintf("half handshakes x%d", mass(1000)), workers: mass(1000), every: time.Second, hit: sendThenDrain(func() []byte { return hello }), metric: handshakeFailures, reason: "timeout", orReason: "evicted"},
		certAttack("cert: another anchor", hostileConfig(leaf(other, identity.CertOptions{}), other.Issuer.Cert.Raw), "untrusted_cert"),
		certAttack("cert: expired", hostileConfig(leaf(ca, identity.CertOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), ca.Issuer.Cert.Raw), "cert_not_valid_now"),
		certAttack("cert: not yet valid", hostileConfig(leaf(ca, identity.CertOptions{NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}), ca.Issuer.Cert.Raw), "cert_not_valid_now"),
		certAttack("cert: CA key usage", hostileConfig(leaf(ca, identity.CertOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}), ca.Issuer.Cert.Raw), "bad_cert"),
		certAttack("cert: server-only extended key usage", hostileConfig(leaf(ca, identity.CertOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), ca.Issuer.Cert.Raw), "bad_cert"),
		certAttack("cert: 10-deep chain", hostileConfig(deepLeaf, deepChain...), "bad_chain"),
		certAttack("cert: 16KiB SANs, foreign", hostileConfig(leaf(other, identity.CertOptions{DNSNames: sans}), other.Issuer.Cert.Raw), "untrusted_cert"),
		certAttack("cert: 16KiB SANs, 2 names", hostileConfig(leaf(ca, identity.CertOptions{DNSNames: twoNames}), ca.Issuer.Cert.Raw), "bad_cert"),
		refusal("sni: empty label ..", withSNI("api..production.svc.cluster.local"), get("api..production.svc.cluster.local"), "bad_target_name"),
		{name: "sni: trailing dot", workers: flood, every: paced, hit: sendThenDrain(func() []byte { return dotHello }), metric: handshakeFailures, reason: "bad_handshake_message"},
		refusal("sni: upper case unexported", withSNI("DB.PRODUCTION.SVC.CLUSTER.LOCAL"), nil, "not_exported"),
		refusal("sni: 300-byte name", withSNI(long), get(long), "bad_target_name"),
		refusal("sni: %00", withSNI(apiSNI+"%00.evil.example"), get(apiSNI+"%00.evil.example"), "bad_target_name"),
		refusal("host: NUL byte", withSNI(gwName), get(apiSNI+"\x00.evil"), "no_target"),
		refusal("host differs from sni", withSNI("db.production.svc.cluster.local"), get(apiSNI), "not_exported"),
		refusal("header: 4 GiB", withSNI(gwName, proxy.TransportHeaderALPN), []byte("transport.l5d.io/v1\r\n\r\n\xff\xff\xff\xff"), "bad_transport_header"),
		refusal("header: port 0", withSNI(gwName, proxy.TransportHeaderALPN), header(0, apiSNI), "bad_transport_header"),
		refusal("header: port 70000", withSNI(gwName, proxy.TransportHeaderALPN), header(70000, apiSNI), "bad_transport_header"),
		refusal("header: outside svc domain", withSNI(gwName, proxy.TransportHeaderALPN), header(apiPort, "kubernetes.default"), "bad_target_name"),
		{name: fmt.Sprintf("never reads x%d", mass(100)), workers: mass(100), hit: neverReads(goodCfg), reachesBackend: true, heapBound: true},
	}
}
