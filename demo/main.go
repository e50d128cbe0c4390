// Command demo shows mcgate end to end on this machine.
//
//	demo static   two gateways from static files (no Kubernetes): identities
//	              made with `mcgate identity`, an "east" gateway exporting an
//	              echo service, a "west" gateway whose egress listener tunnels
//	              to it, openssl as a foreign client, metrics, a drain
//	demo kube     the same on two real clusters (make kube-up): install, link,
//	              export, the mirrored service in west, traffic through both
//	              gateways, `mcgate gateways` and `mcgate check`
//
// `make demo` runs the kube demo, `make demo-static` the static one.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	mode := "static"
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		mode = os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	bin := flag.String("bin", "bin/mcgate", "mcgate binary")
	keep := flag.Bool("keep", false, "leave the gateways running and print how to stop them")
	kubeDir := flag.String("kube-dir", ".cache/kube", "state folder of make kube-up (kube mode)")
	flag.Parse()
	var err error
	switch mode {
	case "static":
		err = run(*bin, *keep)
	case "kube":
		err = runKube(*bin, *kubeDir, *keep)
	default:
		err = fmt.Errorf("unknown mode %q: want static or kube", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

const (
	eastIngress = "127.0.0.2:4143"
	eastAdmin   = "127.0.0.2:4191"
	westIngress = "127.0.0.3:4143"
	westAdmin   = "127.0.0.3:4191"
	westEgress  = "127.0.0.3:4200"
	gatewayID   = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
)

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func sh(bin string, args ...string) error {
	fmt.Printf("    $ mcgate %s\n", strings.Join(args, " "))
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mcgate %s: %v\n%s", args[0], err, out)
	}
	return nil
}

func run(bin string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "mcgate-demo-")
	if err != nil {
		return err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	fmt.Printf("mcgate demo: two gateways on this machine (east on 127.0.0.2, west on 127.0.0.3); files in %s\n", dir)

	step("Create the shared trust anchor, an issuer per cluster and each gateway's identity (mcgate identity)")
	cmds := [][]string{
		{"identity", "anchor", "--out-cert", p("ca.crt"), "--out-key", p("ca.key")},
		{"identity", "issuer", "--ca", p("ca.crt"), "--ca-key", p("ca.key"), "--out-cert", p("east-issuer.crt"), "--out-key", p("east-issuer.key")},
		{"identity", "issuer", "--ca", p("ca.crt"), "--ca-key", p("ca.key"), "--out-cert", p("west-issuer.crt"), "--out-key", p("west-issuer.key")},
		{"identity", "leaf", "--ca", p("east-issuer.crt"), "--ca-key", p("east-issuer.key"), "--anchor", p("ca.crt"), "--out-dir", p("east-gateway")},
		{"identity", "leaf", "--ca", p("west-issuer.crt"), "--ca-key", p("west-issuer.key"), "--anchor", p("ca.crt"), "--out-dir", p("west-gateway")},
		{"identity", "leaf", "--ca", p("west-issuer.crt"), "--ca-key", p("west-issuer.key"), "--anchor", p("ca.crt"),
			"--service-account", "web", "--namespace", "west", "--out-dir", p("west-client")},
	}
	for _, c := range cmds {
		if err := sh(bin, c...); err != nil {
			return err
		}
	}

	step("Start the backend of east's exported service api.production (an echo server)")
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer backend.Close()
	go serveEcho(backend)
	fmt.Printf("    api.production:8080 → %s\n", backend.Addr())

	step("Start the east gateway: exports api.production, mTLS on %s", eastIngress)
	os.WriteFile(p("east.yaml"), fmt.Appendf(nil, "services:\n- name: api\n  namespace: production\n  ports:\n  - port: 8080\n    endpoints: [%q]\n", backend.Addr().String()), 0o644)
	east, err := startGateway(bin, p("east.log"), "--identity-dir", p("east-gateway"), "--listen-addr", eastIngress,
		"--admin-addr", eastAdmin, "--static-config", p("east.yaml"), "--cluster-name", "east")
	if err != nil {
		return err
	}
	step("Start the west gateway: egress listener %s tunnels to east's api over mTLS", westEgress)
	os.WriteFile(p("west.yaml"), fmt.Appendf(nil, "egress:\n- listen: %s\n  cluster: east\n  gatewayAddress: %s\n  gatewayIdentity: %s\n  target: api.production.svc.cluster.local:8080\n",
		westEgress, eastIngress, gatewayID), 0o644)
	west, err := startGateway(bin, p("west.log"), "--identity-dir", p("west-gateway"), "--listen-addr", westIngress,
		"--admin-addr", westAdmin, "--static-config", p("west.yaml"), "--cluster-name", "west")
	if err != nil {
		east.Process.Kill()
		return err
	}
	gateways := []*exec.Cmd{east, west}
	defer func() {
		if keep {
			return
		}
		step("Stop both gateways with SIGTERM (they drain, then exit 0)")
		for _, g := range gateways {
			g.Process.Signal(syscall.SIGTERM)
			err := g.Wait()
			fmt.Printf("    pid %d exited: %v\n", g.Process.Pid, exitText(err))
		}
		os.RemoveAll(dir)
	}()
	for _, a := range []string{eastAdmin, westAdmin} {
		if err := waitReady(ctx, a); err != nil {
			return err
		}
		fmt.Printf("    curl http://%s/ready → 200 ready\n", a)
	}

	step("Send traffic: a west app (no sidecar, plain TCP) → west egress → mTLS → east gateway → api")
	for i := 1; i <= 3; i++ {
		msg := fmt.Sprintf("request %d from west", i)
		got, err := echoOnce(westEgress, msg)
		if err != nil {
			return err
		}
		fmt.Printf("    sent %q, got back %q\n", msg, got)
	}

	if _, err := exec.LookPath("openssl"); err == nil {
		step("A foreign TLS client: openssl s_client straight to east's gateway, routed by SNI")
		args := []string{"s_client", "-connect", eastIngress, "-servername", "api.production.svc.cluster.local",
			"-cert", p("west-client/tls.crt"), "-cert_chain", p("west-issuer.crt"), "-key", p("west-client/tls.key"),
			"-CAfile", p("ca.crt"), "-verify_return_error", "-quiet"}
		fmt.Printf("    $ echo hello | openssl %s\n", strings.Join(args, " "))
		line, err := opensslOnce(ctx, args, "hello from openssl")
		if err != nil {
			return err
		}
		fmt.Printf("    → %s\n", line)
	}

	step("Refused: a name nobody exported never reaches a backend")
	args := []string{"s_client", "-connect", eastIngress, "-servername", "db.production.svc.cluster.local",
		"-cert", p("west-client/tls.crt"), "-cert_chain", p("west-issuer.crt"), "-key", p("west-client/tls.key"),
		"-CAfile", p("ca.crt"), "-quiet"}
	if _, err := exec.LookPath("openssl"); err == nil {
		if _, err := opensslOnce(ctx, args, "x"); err == nil {
			return errors.New("the unexported name was reachable")
		}
		fmt.Println("    db.production.svc.cluster.local → connection closed (reason not_exported, see below)")
	}

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
	if keep {
		fmt.Printf("\nGateways left running (pids %d, %d). Stop them with: kill %d %d\nLogs: %s %s\n",
			east.Process.Pid, west.Process.Pid, east.Process.Pid, west.Process.Pid, p("east.log"), p("west.log"))
		return nil
	}
	fmt.Println("\nDemo done.")
	return nil
}

func startGateway(bin, logFile string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	fmt.Printf("    $ mcgate gateway %s\n", strings.Join(args, " "))
	cmd := exec.Command(bin, append([]string{"gateway"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func waitReady(ctx context.Context, admin string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := http.Get("http://" + admin + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway %s not ready (is the port in use? see its log)", admin)
		case <-tick.C:
		}
	}
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func echoOnce(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	return string(buf), err
}

// opensslOnce sends one line through s_client and returns the echoed line.
func opensslOnce(ctx context.Context, args []string, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	io.WriteString(stdin, msg+"\n")
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("openssl: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func metricLines(admin, prefix string) ([]string, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	return out, sc.Err()
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
