// Package netns runs a process tree inside a Linux network namespace of its
// own, so that tests and the demo can give servers addresses that Kubernetes
// accepts in EndpointSlices (it rejects loopback) while no packet ever leaves
// the machine.
//
// A namespace made here has only `lo`, holding 127.0.0.1/8 and 198.18.0.1/24.
// Because an address on a loopback device makes its whole prefix local, every
// address of 198.18.0.0/24 (see [Addr]) can be bound and dialled inside the
// namespace without adding it first. There is no default route: nothing inside
// can reach any other network. An optional [Link] adds a veth pair so that
// processes on the host (kubectl, a developer's browser) reach one address
// inside.
//
// The usual pattern is [Run]: a process that is not yet inside a namespace
// ([Current] is empty) creates one, re-executes itself inside it with
// `ip netns exec`, and after the child exits kills whatever the child left
// behind in the namespace and deletes it. Creating a namespace needs root;
// without it [Create] fails with an error saying so.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvName is set, in the environment of a process that [Run] started inside a
// namespace, to the namespace's name.
const EnvName = "MCGATE_NETNS"

// hostPrefix is the test-host range on the namespace's lo (RFC 2544
// benchmarking space, never routed on the Internet).
var hostPrefix = netip.MustParsePrefix("198.18.0.1/24")

// Addr returns 198.18.0.n, an address local to every namespace made by this
// package. n must be in 1..254.
func Addr(n int) netip.Addr {
	if n < 1 || n > 254 {
		panic(fmt.Sprintf("netns: host number %d out of 1..254", n))
	}
	b := hostPrefix.Addr().As4()
	b[3] = byte(n)
	return netip.AddrFrom4(b)
}

// Current returns the name of the namespace this process was started in by
// [Run], or "" outside one.
func Current() string { return os.Getenv(EnvName) }

// Link is a veth pair between the host and a namespace, each end with one
// address of a shared /30 (or wider) prefix.
type Link struct {
	HostDev string       // device name on the host side, at most 15 bytes
	Host    netip.Prefix // address of the host end, e.g. 198.18.1.1/30
	Inside  netip.Prefix // address of the namespace end, e.g. 198.18.1.2/30
}

// Available reports why this process cannot create network namespaces, or
// nil if it can.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netns: creating a network namespace needs root (CAP_SYS_ADMIN): " +
			"servers whose addresses go into EndpointSlices run on 198.18.0.x inside a namespace " +
			"the run creates, because the API server rejects loopback there; run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netns: the ip command (iproute2) is needed to create network namespaces: %w", err)
	}
	return nil
}

// Create makes the namespace name with lo up and the test-host range on it,
// and the veth pair link when it is not nil. It fails if the namespace exists.
func Create(name string, link *Link) error {
	if err := Available(); err != nil {
		return err
	}
	steps := [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "add", hostPrefix.String(), "dev", "lo"},
	}
	if link != nil {
		inside := "veth0"
		steps = append(steps,
			[]string{"link", "add", link.HostDev, "type", "veth", "peer", "name", inside, "netns", name},
			[]string{"addr", "add", link.Host.String(), "dev", link.HostDev},
			[]string{"link", "set", link.HostDev, "up"},
			[]string{"-n", name, "addr", "add", link.Inside.String(), "dev", inside},
			[]string{"-n", name, "link", "set", inside, "up"},
		)
	}
	for i, args := range steps {
		if err := ip(args...); err != nil {
			if i > 0 {
				_ = Delete(name) // best effort: leave nothing half-made
			}
			return err
		}
	}
	return nil
}

// Delete kills every process still inside the namespace, waits for them to
// go, and deletes it (which also removes a veth pair made by Create). Deleting
// a namespace that does not exist is not an error.
func Delete(name string) error {
	if !Exists(name) {
		return nil
	}
	// Everything inside was started by the run that owns the namespace, so
	// nothing else is hit; SIGKILL because the owner already had its chance to
	// stop them gracefully.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids, err := Pids(name)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: processes %v in namespace %q survive SIGKILL", pids, name)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // let the kernel reap; bounded by deadline
	}
	return ip("netns", "del", name)
}

// Exists reports whether the namespace name exists.
func Exists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// List returns the names of all namespaces on the machine.
func List() ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: list: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// Pids returns the processes inside the namespace name.
func Pids(name string) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil, fmt.Errorf("netns: ip netns pids %s: %w", name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("netns: ip netns pids %s: bad pid %q", name, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Exec runs argv inside the existing namespace name with env (plus
// EnvName=name), stdio inherited, and returns its exit code. SIGINT, SIGTERM,
// SIGQUIT and SIGHUP sent to this process are passed on; if this process dies, the kernel kills
// the child (Pdeathsig), and Delete sweeps up the rest.
func Exec(name string, argv, env []string) (int, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", name}, argv...)...)
	cmd.Env = append(append([]string(nil), env...), EnvName+"="+name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	sigs := make(chan os.Signal, 4)
	// SIGQUIT too: go test sends it on timeout, and passing it on gets the
	// child's goroutine dump and leaves this process alive to clean up.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("netns: exec in %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return exit.ExitCode(), nil
			}
			if err != nil {
				return -1, fmt.Errorf("netns: exec in %s: %w", name, err)
			}
			return 0, nil
		}
	}
}

// Run creates the namespace name (see Create), runs argv inside it (see Exec)
// with this process's environment, deletes the namespace and returns the
// child's exit code.
func Run(name string, link *Link, argv []string) (int, error) {
	if err := Create(name, link); err != nil {
		return -1, err
	}
	code, err := Exec(name, argv, os.Environ())
	if derr := Delete(name); derr != nil && err == nil {
		err = derr
	}
	return code, err
}

// OwnedName returns prefix + this process's pid: a namespace name that
// RemoveStale can tell belongs to a dead run.
func OwnedName(prefix string) string { return prefix + strconv.Itoa(os.Getpid()) }

// RemoveStale deletes namespaces named by OwnedName(prefix) whose owning
// process no longer exists: the remains of a run that was killed before it
// could clean up.
func RemoveStale(prefix string) error {
	names, err := List()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		pid, err := strconv.Atoi(strings.TrimPrefix(n, prefix))
		if !strings.HasPrefix(n, prefix) || err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == nil || pid == os.Getpid() {
			continue // owner alive (EPERM cannot happen as root)
		}
		errs = append(errs, Delete(n))
	}
	return errors.Join(errs...)
}

func ip(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
