package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

// run is the static demo: two gateways on loopback addresses, configured
// from files, no Kubernetes.
func run(bin string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDemo(ctx, bin, "mcgate-demo-")
	if err != nil {
		return err
	}
	fmt.Printf("mcgate demo: two gateways on this machine (east on 127.0.0.2, west on 127.0.0.3); files in %s\n", d.dir)

	step("Create the shared trust anchor, an issuer per cluster and each gateway's identity (mcgate identity)")
	if err := d.createIdentities(d.westClientLeaf()); err != nil {
		return err
	}
	backend, err := startBackend()
	if err != nil {
		return err
	}
	defer backend.Close()
	east, west, err := d.startStaticGateways(backend.Addr().String())
	if err != nil {
		return err
	}
	if !keep {
		defer d.stopStaticGateways(east, west)
	}
	if err := d.waitGatewaysReady(); err != nil {
		return err
	}

	step("Send traffic: a west app (no sidecar, plain TCP) → west egress → mTLS → east gateway → api")
	if err := sendRequests(westEgress); err != nil {
		return err
	}
	if err := d.foreignClient(); err != nil {
		return err
	}
	if err := d.refuseUnexported(); err != nil {
		return err
	}
	if err := showMetrics(); err != nil {
		return err
	}
	if keep {
		fmt.Printf("\nGateways left running (pids %d, %d). Stop them with: kill %d %d\nLogs: %s %s\n",
			east.Process.Pid, west.Process.Pid, east.Process.Pid, west.Process.Pid, d.path("east.log"), d.path("west.log"))
		return nil
	}
	fmt.Println("\nDemo done.")
	return nil
}

// westClientLeaf is the mcgate identity command for a west workload's
// certificate, the one openssl presents.
func (d *demo) westClientLeaf() []string {
	p := d.path
	return []string{"identity", "leaf", "--ca", p("west-issuer.crt"), "--ca-key", p("west-issuer.key"), "--anchor", p("ca.crt"),
		"--service-account", "web", "--namespace", "west", "--out-dir", p("west-client")}
}

func startBackend() (net.Listener, error) {
	step("Start the backend of east's exported service api.production (an echo server)")
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go serveEcho(backend)
	fmt.Printf("    api.production:8080 → %s\n", backend.Addr())
	return backend, nil
}

// startStaticGateways starts east, exporting the backend, and west, whose
// egress listener tunnels to it.
func (d *demo) startStaticGateways(backendAddr string) (east, west *exec.Cmd, err error) {
	p := d.path
	step("Start the east gateway: exports api.production, mTLS on %s", eastIngress)
	os.WriteFile(p("east.yaml"), fmt.Appendf(nil, "services:\n- name: api\n  namespace: production\n  ports:\n  - port: 8080\n    endpoints: [%q]\n", backendAddr), 0o644)
	east, err = startGateway(d.bin, p("east.log"), "--identity-dir", p("east-gateway"), "--listen-addr", eastIngress,
		"--admin-addr", eastAdmin, "--static-config", p("east.yaml"), "--cluster-name", "east")
	if err != nil {
		return nil, nil, err
	}
	step("Start the west gateway: egress listener %s tunnels to east's api over mTLS", westEgress)
	os.WriteFile(p("west.yaml"), fmt.Appendf(nil, "egress:\n- listen: %s\n  cluster: east\n  gatewayAddress: %s\n  gatewayIdentity: %s\n  target: api.production.svc.cluster.local:8080\n",
		westEgress, eastIngress, gatewayID), 0o644)
	west, err = startGateway(d.bin, p("west.log"), "--identity-dir", p("west-gateway"), "--listen-addr", westIngress,
		"--admin-addr", westAdmin, "--static-config", p("west.yaml"), "--cluster-name", "west")
	if err != nil {
		east.Process.Kill()
		return nil, nil, err
	}
	return east, west, nil
}

func (d *demo) stopStaticGateways(gateways ...*exec.Cmd) {
	step("Stop both gateways with SIGTERM (they drain, then exit 0)")
	for _, g := range gateways {
		g.Process.Signal(syscall.SIGTERM)
		err := g.Wait()
		fmt.Printf("    pid %d exited: %v\n", g.Process.Pid, exitText(err))
	}
	os.RemoveAll(d.dir)
}

func (d *demo) waitGatewaysReady() error {
	for _, a := range []string{eastAdmin, westAdmin} {
		if err := waitReady(d.ctx, a); err != nil {
			return err
		}
		fmt.Printf("    curl http://%s/ready → 200 ready\n", a)
	}
	return nil
}

// opensslArgs are s_client's arguments for a west client's connection to
// east's gateway, asking for sni.
func (d *demo) opensslArgs(sni string, extra ...string) []string {
	p := d.path
	return append([]string{"s_client", "-connect", eastIngress, "-servername", sni,
		"-cert", p("west-client/tls.crt"), "-cert_chain", p("west-issuer.crt"), "-key", p("west-client/tls.key"),
		"-CAfile", p("ca.crt")}, extra...)
}

// foreignClient shows openssl, which knows nothing of mcgate, reaching the
// exported service through east's gateway.
func (d *demo) foreignClient() error {
	if _, err := exec.LookPath("openssl"); err != nil {
		return nil
	}
	step("A foreign TLS client: openssl s_client straight to east's gateway, routed by SNI")
	args := d.opensslArgs("api.production.svc.cluster.local", "-verify_return_error", "-quiet")
	fmt.Printf("    $ echo hello | openssl %s\n", strings.Join(args, " "))
	line, err := opensslOnce(d.ctx, args, "hello from openssl")
	if err != nil {
		return err
	}
	fmt.Printf("    → %s\n", line)
	return nil
}

// refuseUnexported shows a name nobody exported being refused.
func (d *demo) refuseUnexported() error {
	step("Refused: a name nobody exported never reaches a backend")
	if _, err := exec.LookPath("openssl"); err != nil {
		return nil
	}
	if _, err := opensslOnce(d.ctx, d.opensslArgs("db.production.svc.cluster.local", "-quiet"), "x"); err == nil {
		return errors.New("the unexported name was reachable")
	}
	fmt.Println("    db.production.svc.cluster.local → connection closed (reason not_exported, see below)")
	return nil
}

func showMetrics() error {
	step("Metrics (curl http://<admin>/metrics)")
	for _, m := range []struct{ admin, prefix string }{
		{westAdmin, "gateway_requests_total"}, {eastAdmin, "gateway_requests_total"},
		{eastAdmin, "gateway_refused_connections_total"}, {eastAdmin, "gateway_handshake_duration_seconds_count"},
		{westAdmin, "gateway_handshake_duration_seconds_count"},
	} {
		lines, err := metricLines(m.admin, m.prefix)
		if err != nil {
			return err
		}
		for _, l := range lines {
			fmt.Printf("    %s  %s\n", m.admin, l)
		}
	}
	return nil
}
