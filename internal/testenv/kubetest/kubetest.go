package kubetest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/internal/testenv/kube"
	"github.com/mcgate/mcgate/internal/testenv/netns"
)

// Cluster is one running cluster: admin clients, kubeconfig path, helpers.
type Cluster = kube.Cluster

// Env is the pair of clusters shared by the tests of a package.
type Env struct {
	East, West *Cluster
	// Dir holds the clusters' files: <Dir>/east.kubeconfig,
	// <Dir>/west.kubeconfig, logs under <Dir>/east and <Dir>/west. It is
	// removed after a passing run and kept (its path printed) after a
	// failing one.
	Dir string
}

// nsPrefix names the namespaces of test runs: mcgate-test-<pid of go test's
// test binary>, so that a later run can tell which are stale.
const nsPrefix = "mcgate-test-"

// apiHost is the API servers' address; HostIP leaves it to them.
const apiHost = 254

var shared struct {
	once sync.Once
	env  *Env
	kube *kube.Env
	err  error
}

// Main is the whole TestMain of a package whose tests use Start:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
// Run outside a network namespace, it creates one (root needed; otherwise
// it fails with a message saying so), re-executes the test binary inside it
// with the same arguments, deletes the namespace with anything left in it, and
// exits with the child's code. Inside, it runs the tests and then stops the
// clusters if any test started them.
func Main(m *testing.M) {
	if netns.Current() == "" {
		os.Exit(outside())
	}
	code := m.Run()
	if err := stop(code); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func outside() int {
	if err := netns.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest: FAIL:", err)
		return 1
	}
	if err := netns.RemoveStale(nsPrefix); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest: removing namespaces of dead runs:", err)
	}
	// Build the binaries (when missing) here: the namespace has no network
	// for the Go module proxy.
	if _, _, err := binaries(); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		return 1
	}
	code, err := netns.Run(netns.OwnedName(nsPrefix), nil, append([]string{self}, os.Args[1:]...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Start returns the package's two clusters, starting them on the first call
// (10-60 s, longer on a busy machine; the binaries are built first if
// missing). Every test of the package gets the same clusters, so tests
// should work in namespaces of their own (see Namespace). A start failure
// fails every test that calls Start.
func Start(t testing.TB) *Env {
	t.Helper()
	if netns.Current() == "" {
		t.Fatal("kubetest: the clusters run in a network namespace: call kubetest.Main(m) from TestMain")
	}
	shared.once.Do(func() { shared.env, shared.kube, shared.err = start() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.env
}

// binaries returns the checkout's root and the binaries' folder.
func binaries() (root, bins string, err error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", "", fmt.Errorf("kubetest: %w", err)
	}
	if root, err = kube.Root(wd); err != nil {
		return "", "", err
	}
	bins, err = kube.Binaries(root)
	return root, bins, err
}

func start() (*Env, *kube.Env, error) {
	root, bins, err := binaries()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "mcgate-kubetest-")
	if err != nil {
		return nil, nil, fmt.Errorf("kubetest: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := kube.Start(ctx, kube.Config{
		Bins:    bins,
		Dir:     dir,
		Address: netns.Addr(apiHost),
		CRDDir:  kube.CRDDir(root),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w (files kept in %s)", err, dir)
	}
	return &Env{East: k.Cluster("east"), West: k.Cluster("west"), Dir: dir}, k, nil
}

func stop(code int) error {
	if shared.kube == nil {
		return nil // never started, or the error was reported by Start
	}
	err := shared.kube.Stop()
	if code != 0 || err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: cluster files and logs kept in %s\n", shared.env.Dir)
		return err
	}
	if err := os.RemoveAll(shared.env.Dir); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return nil
}

// Namespace creates a namespace with a unique name derived from the test's
// in each of clusters, and deletes them when the test ends (without waiting
// for the deletion to finish).
func Namespace(t testing.TB, clusters ...*Cluster) string {
	t.Helper()
	name := nsName(t.Name())
	for _, c := range clusters {
		if err := c.EnsureNamespace(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			err := c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("kubetest: delete namespace %s in %s: %v", name, c.Name, err)
			}
		})
	}
	return name
}

var nsSeq atomic.Int64

// nsName turns a test name into a DNS label: lower case, [a-z0-9-], at most
// 63 bytes, unique within the run.
func nsName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	suffix := fmt.Sprintf("-%d", nsSeq.Add(1))
	base := strings.Trim(b.String(), "-")
	if len(base) > 63-len(suffix) {
		base = strings.TrimRight(base[:63-len(suffix)], "-")
	}
	if base == "" {
		base = "test"
	}
	return base + suffix
}

// HostIP returns 198.18.0.n, an address of the test run's network namespace
// that tests may listen on and put into EndpointSlices (the API server
// rejects loopback there). n must be in 1..250; 251..254 are reserved (the
// API servers listen on 198.18.0.254).
func HostIP(n int) netip.Addr {
	if n > 250 {
		panic(fmt.Sprintf("kubetest: HostIP(%d): 251..254 are reserved", n))
	}
	return netns.Addr(n)
}
