package hostile

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/hostilepki"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// maxChainCostRatio bounds the gateway CPU of a hostile handshake as a
// multiple of a good client's full handshake (issue 25: "at most a few
// times, never x509's worst case").
const maxChainCostRatio = 5

// TestChainCost (issue 25, point 1): a client without any valid
// certificate presents the most expensive chains it can build, and the
// gateway's CPU per handshake is compared with a good client's. The
// gateway runs in this process and the clients in a child process, so the
// process's CPU time (getrusage) is the gateway's. Every hostile handshake
// must be refused, and cost at most maxChainCostRatio good ones.
func TestChainCost(t *testing.T) {
	ca := testpki.New(t)
	gw := startGateway(t, ca, routes{})
	good := ca.Leaf(t, "web", "west", identity.CertOptions{})
	kinds := []struct {
		name   string
		chain  [][]byte
		n      int
		reason string // of gateway_handshake_failures_total; "" for the good client
	}{
		{"good client (leaf, issuer)", [][]byte{good.Cert.Raw, ca.Issuer.Cert.Raw}, 200, ""},
		{"100 RSA-8192 decoy issuers", hostilepki.RSADecoys(t, good.Cert, 100), 20, "handshake_too_large"},
		{"20 RSA-8192 decoy issuers", hostilepki.RSADecoys(t, good.Cert, 20), 20, "bad_chain"},
		{"80 Ed25519 decoy issuers", hostilepki.Ed25519Decoys(t, good.Cert, 80), 20, "bad_chain"},
		{"700 Ed25519 decoy issuers", hostilepki.Ed25519Decoys(t, good.Cert, 700), 20, "handshake_too_large"},
		{"4 certificates, RSA-4096, in order", hostilepki.Bounded(t, good.Cert, ca.Anchor.Cert), 50, "untrusted_cert"},
	}
	var goodCPU time.Duration
	var report []string
	for i, k := range kinds {
		size := 0
		for _, c := range k.chain {
			size += len(c)
		}
		// Refused in the handshake, or (the good client, whose SNI names no
		// exported service) right after it.
		metricName, reason := handshakeFailures, k.reason
		if reason == "" {
			metricName, reason = refused, "not_exported"
		}
		before := metric(t, gw.reg, metricName, map[string]string{"reason": reason})
		cpu := gatewayCPU(t, func() {
			startChild(t, "handshakes", childJob{Addrs: []string{gw.Addr().String()}, N: k.n,
				SNI: "db.production.svc.cluster.local", Chain: k.chain, Key: pkcs8(t, good.Key)}).wait(t)
		}) / time.Duration(k.n)
		// Every handshake counted before the next kind starts, so that none
		// is counted as the next kind's.
		counted := func() float64 { return metric(t, gw.reg, metricName, map[string]string{"reason": reason}) - before }
		wait.Poll(5*time.Second, func() bool { return counted() >= float64(k.n) })
		if got := counted(); got != float64(k.n) {
			t.Errorf("%s: %v of %d handshakes counted as %s{reason=%s}", k.name, got, k.n, metricName, reason)
		}
		if i == 0 {
			goodCPU = cpu
		}
		ratio := float64(cpu) / float64(goodCPU)
		report = append(report, fmt.Sprintf("%-36s %3d certs %7.1f KiB  %8v/handshake  %6.2fx good", k.name, len(k.chain), float64(size)/1024, cpu.Round(time.Microsecond), ratio))
		if ratio > maxChainCostRatio {
			t.Errorf("%s: %v of gateway CPU per handshake, %.1fx a good client's (%v)", k.name, cpu, ratio, goodCPU)
		}
	}
	t.Log("gateway CPU per handshake (getrusage of the gateway's process; clients in a child):\n" + strings.Join(report, "\n"))
}

// gatewayCPU returns the CPU time (user and system) this process spent
// while run ran.
func gatewayCPU(t *testing.T, run func()) time.Duration {
	t.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	run()
	return cpu() - start
}

func pkcs8(t *testing.T, key crypto.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
