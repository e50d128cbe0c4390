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
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// demo is what the steps of either demo share: the mcgate binary, the
// folder of its files, and the context that Ctrl-C ends.
type demo struct {
	ctx context.Context
	bin string
	dir string
}

func newDemo(ctx context.Context, bin, dirPattern string) (*demo, error) {
	dir, err := os.MkdirTemp("", dirPattern)
	if err != nil {
		return nil, err
	}
	return &demo{ctx: ctx, bin: bin, dir: dir}, nil
}

// path names a file in the demo's folder.
func (d *demo) path(name string) string { return filepath.Join(d.dir, name) }

// createIdentities runs mcgate identity: the shared trust anchor, an issuer
// per cluster, each gateway's leaf, then the extra commands.
func (d *demo) createIdentities(extra ...[]string) error {
	p := d.path
	cmds := append([][]string{
		{"identity", "anchor", "--out-cert", p("ca.crt"), "--out-key", p("ca.key")},
		{"identity", "issuer", "--ca", p("ca.crt"), "--ca-key", p("ca.key"), "--out-cert", p("east-issuer.crt"), "--out-key", p("east-issuer.key")},
		{"identity", "issuer", "--ca", p("ca.crt"), "--ca-key", p("ca.key"), "--out-cert", p("west-issuer.crt"), "--out-key", p("west-issuer.key")},
		{"identity", "leaf", "--ca", p("east-issuer.crt"), "--ca-key", p("east-issuer.key"), "--anchor", p("ca.crt"), "--out-dir", p("east-gateway")},
		{"identity", "leaf", "--ca", p("west-issuer.crt"), "--ca-key", p("west-issuer.key"), "--anchor", p("ca.crt"), "--out-dir", p("west-gateway")},
	}, extra...)
	for _, c := range cmds {
		if err := sh(d.bin, c...); err != nil {
			return err
		}
	}
	return nil
}

// sendRequests sends three requests through addr and prints what came back.
func sendRequests(addr string) error {
	for i := 1; i <= 3; i++ {
		msg := fmt.Sprintf("request %d from west", i)
		got, err := echoOnce(addr, msg)
		if err != nil {
			return err
		}
		fmt.Printf("    sent %q, got back %q\n", msg, got)
	}
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
