// Package kubetest gives a package's tests two real Kubernetes clusters,
// "east" and "west", running inside a network namespace the test run creates.
// Import it from _test.go files only.
//
// # Setup
//
// One TestMain line per package:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
// Main re-executes the test binary inside a fresh network namespace
// (mcgate-test-<pid>; needs root, fails with a message saying so otherwise)
// and deletes it afterwards together with every process left in it. So the
// tests, the clusters and anything the tests start (gateways, backends, other
// binaries via os/exec) share that namespace: its lo holds 127.0.0.1/8 and
// 198.18.0.0/24, and there is no route anywhere else.
//
// # Clusters
//
//	env := kubetest.Start(t)         // started on first use, shared by the package
//	env.East.Client                  // kubernetes.Interface, admin (system:masters)
//	env.East.Config                  // *rest.Config of the same admin
//	env.East.Kubeconfig              // path of an admin kubeconfig file (context "east")
//	env.East.TokenConfig(token)      // *rest.Config authenticating with a bearer token
//	env.East.AddUser("alice", "grp") // *rest.Config of a client-certificate user, RBAC applies
//	env.East.CreateReadyPod(ctx, pod, ip) // pod Running+Ready at ip, as scheduler+kubelet would
//	ns := kubetest.Namespace(t, env.East, env.West) // unique namespace in both, deleted after the test
//	env.East.RestartAPIServer(ctx)   // or StopAPIServer, StartAPIServer: same address, certificates, users
//	env.East.CompactEtcd(ctx)        // compact the shared etcd at its current revision
//
// Each cluster is one kube-apiserver (its own etcd prefix on a shared etcd,
// RBAC, service-account signing so TokenRequest works, issuer
// https://kubernetes.default.svc/<name>) and one kube-controller-manager (service
// accounts, namespace deletion, garbage collection, EndpointSlices for selector
// Services). There is no scheduler and no kubelet. The CRDs in
// <repo>/deploy/crds are installed when that folder exists. The binaries are
// built from internal/testenv/kube/bins into ${MCGATE_CACHE:-~/.cache/mcgate}/kube by
// Main when missing (~15 minutes once per machine, more than go test's default
// -timeout: `make test` runs `make kube-bins` first; do so before a bare
// `go test`).
//
// Because the clusters are shared, tests work in namespaces of their own and
// must not assume an empty cluster. A test that stops an API server or
// compacts etcd disturbs every test of its package: such tests live in a
// package of their own (test/kubefaults).
//
// # Addresses
//
// HostIP(n) is 198.18.0.n (n in 1..250): listen on it and put it into
// EndpointSlices, which reject loopback. The API servers listen on
// 198.18.0.254 (in their kubeconfigs); 251..254 are reserved.
//
// # Logs
//
// Cluster files live in Env.Dir; after a failing run they are kept and the
// path is printed, with etcd.log, <cluster>/kube-apiserver.log and
// <cluster>/kube-controller-manager.log inside.
//
// Outside tests, `make kube-up` runs the same two clusters in the background
// (internal/testenv/kube/cmd/kubeup) and `make kube-down` stops them.
package kubetest
