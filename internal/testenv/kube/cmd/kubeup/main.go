// Command kubeup runs the two development clusters of `make kube-up` in the
// background and stops them for `make kube-down`.
//
//	kubeup up   -dir D   start (or find running) clusters, print how to use them
//	kubeup down -dir D   stop them, delete the namespace; safe to repeat
//
// The clusters (one etcd; per cluster kube-apiserver and
// kube-controller-manager, see internal/testenv/kube) run inside network namespace
// mcgate-kube, so gateways and backends started there with
// `ip netns exec mcgate-kube ...` can use 198.18.0.0/24 addresses, which
// EndpointSlices accept. A veth pair (host 198.18.1.1, namespace 198.18.1.2)
// lets kubectl on the host reach the API servers, which listen on 198.18.1.2.
//
// Internally `up` starts `serve` detached; `serve` creates the namespace and
// runs `run` inside it, then deletes the namespace when `run` ends (SIGTERM
// from `down`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/kube"
	"github.com/mcgate/mcgate/internal/testenv/netns"
)

const nsName = "mcgate-kube"

var link = netns.Link{
	HostDev: "mcgate-kube0",
	Host:    netip.MustParsePrefix("198.18.1.1/30"),
	Inside:  netip.MustParsePrefix("198.18.1.2/30"),
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubeup up|down -dir DIR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("kubeup "+os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".cache/kube", "folder for state, kubeconfigs and logs")
	bins := fs.String("bins", "", "folder of the binaries (default: build or find them with internal/testenv/kube/build.sh)")
	_ = fs.Parse(os.Args[2:])
	abs, err := filepath.Abs(*dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeup:", err)
		os.Exit(1)
	}
	s := state{dir: abs, bins: *bins}
	code := 0
	switch os.Args[1] {
	case "up":
		err = s.up()
	case "down":
		err = s.down()
	case "serve":
		code, err = netns.Run(nsName, &link, []string{s.self(), "run", "-dir", s.dir, "-bins", s.bins})
	case "run":
		err = s.run()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
		code = 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeup:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

type state struct{ dir, bins string }

func (s state) pidFile() string   { return filepath.Join(s.dir, "kubeup.pid") }
func (s state) readyFile() string { return filepath.Join(s.dir, "ready") }
func (s state) logFile() string   { return filepath.Join(s.dir, "kubeup.log") }
func (s state) clusters() string  { return filepath.Join(s.dir, "clusters") }

func (s state) self() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}

// running returns the pid of a live `kubeup serve` recorded in the pid file.
func (s state) running() (int, bool) {
	b, err := os.ReadFile(s.pidFile())
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "kubeup\x00serve") {
		return 0, false // gone, or the pid now belongs to someone else
	}
	return pid, true
}

func (s state) up() error {
	if pid, ok := s.running(); ok {
		if _, err := os.Stat(s.readyFile()); err != nil {
			return fmt.Errorf("clusters are still starting (pid %d, log %s); wait, or run make kube-down", pid, s.logFile())
		}
		s.usage()
		return nil
	}
	if err := s.down(); err != nil { // leftovers of a crashed run
		return err
	}
	if s.bins == "" {
		root, err := kube.Root(".")
		if err != nil {
			return err
		}
		if s.bins, err = kube.Binaries(root); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.self(), "serve", "-dir", s.dir, "-bins", s.bins)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives make and the terminal
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start serve: %w", err)
	}
	if err := os.WriteFile(s.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(os.Stderr, "kubeup: starting clusters (log %s) ...\n", s.logFile())
	deadline := time.After(10 * time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(s.logFile())
			return fmt.Errorf("clusters did not start (%v):\n%s", err, log)
		case <-deadline:
			return errors.Join(errors.New("clusters not ready after 10 minutes; see "+s.logFile()), s.down())
		case <-tick.C:
			if _, err := os.Stat(s.readyFile()); err == nil {
				s.usage()
				return nil
			}
		}
	}
}

func (s state) usage() {
	east := filepath.Join(s.clusters(), "east.kubeconfig")
	west := filepath.Join(s.clusters(), "west.kubeconfig")
	fmt.Printf(`Two clusters are running (etcd; kube-apiserver + kube-controller-manager each) in network namespace %[1]s.
  KUBECONFIG=%[2]s kubectl get ns
  KUBECONFIG=%[3]s kubectl get ns
  KUBECONFIG=%[2]s:%[3]s kubectl --context west get ns
Run gateways and backends inside the namespace, on 198.18.0.1-250 (EndpointSlices refuse loopback):
  ip netns exec %[1]s <command>
Logs: %[4]s/{etcd.log,east/,west/}   Stop: make kube-down
`, nsName, east, west, s.clusters())
}

func (s state) down() error {
	if pid, ok := s.running(); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(2 * time.Minute)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // waiting for a process we do not parent
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// serve deletes the namespace itself; this catches a serve that was killed.
	if err := netns.Delete(nsName); err != nil {
		return err
	}
	for _, p := range []string{s.pidFile(), s.readyFile()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.RemoveAll(s.clusters())
}

// run is the inside of the namespace: start, report ready, wait for a signal.
func (s state) run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := os.RemoveAll(s.clusters()); err != nil {
		return err
	}
	root, _ := kube.Root(".")
	crds := ""
	if root != "" {
		crds = kube.CRDDir(root)
	}
	env, err := kube.Start(ctx, kube.Config{Bins: s.bins, Dir: s.clusters(), Address: link.Inside.Addr(), CRDDir: crds})
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.readyFile(), []byte("ready\n"), 0o644); err != nil {
		return errors.Join(err, env.Stop())
	}
	fmt.Println("kubeup: clusters ready")
	<-ctx.Done()
	fmt.Println("kubeup: stopping")
	return env.Stop()
}
