// Package kube runs real Kubernetes control planes on this machine for tests,
// the demo and development: one etcd, and per cluster a kube-apiserver (its
// own --etcd-prefix, RBAC, a service-account signing key) and a
// kube-controller-manager (service accounts, namespace deletion, garbage
// collection, EndpointSlices for selector Services). There is no scheduler
// and no kubelet: pods stay Pending unless a test writes their status.
//
// The binaries come from the nested module in ./bins, built by ./build.sh
// into a cache outside git (see [Binaries]). Process management, serving
// certificates, client-certificate users and CRD installation are
// controller-runtime's envtest; this package adds the shared etcd, the second
// cluster and the controller manager. It uses envtest's Etcd, APIServer and
// ControlPlane directly rather than envtest.Environment, because an
// Environment always starts an etcd of its own, and the clusters here share
// one, each API server under its own --etcd-prefix.
//
// Tests use it through internal/testenv/kubetest; `make kube-up` through cmd/kubeup.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Config says where and how to run the clusters.
type Config struct {
	// Bins is the folder holding etcd, kube-apiserver and
	// kube-controller-manager (see Binaries).
	Bins string
	// Dir holds everything the run writes: etcd data, certificates,
	// kubeconfigs (<Dir>/<name>.kubeconfig) and logs (<Dir>/<name>/*.log).
	// It must not hold a previous run's files.
	Dir string
	// Address is where the API servers listen and what they advertise. It
	// must not be loopback: the API server writes it into the EndpointSlice
	// of the `kubernetes` Service, and there it rejects loopback addresses.
	Address netip.Addr
	// Names of the clusters; default "east", "west". Each gets etcd prefix
	// /<name> and a service CIDR of its own.
	Names []string
	// CRDDir, if set and present, holds CRD manifests installed into every
	// cluster. A missing folder is not an error.
	CRDDir string
	// StartTimeout bounds the start of each process; default 3 minutes (the
	// machines are small and often busy compiling).
	StartTimeout time.Duration
}

// Env is a set of running clusters sharing one etcd.
type Env struct {
	Clusters []*Cluster
	cfg      Config
	etcd     *envtest.Etcd
	logs     []*os.File
	stopped  bool
}

// Cluster is one running cluster.
type Cluster struct {
	Name string
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file for Config.
	Kubeconfig string
	// CA is the PEM certificate that signed the API server's serving
	// certificate (also in Config.CAData and the kubeconfig).
	CA []byte

	plane *envtest.ControlPlane
	kcm   *controllerManager
}

// serviceCIDRs are the ClusterIP ranges of the clusters, in order of Names:
// outside the test-host range, not private, and distinct per cluster so a
// mirrored Service's ClusterIP never equals a remote one by accident. Nothing
// routes them; no packet is ever sent to a ClusterIP.
var serviceCIDRs = []string{"198.18.16.0/20", "198.18.32.0/20", "198.18.48.0/20", "198.18.64.0/20"}

// Start starts etcd and the clusters, waits until each serves, has its
// controller manager running (the default ServiceAccount exists) and has the
// CRDs established. On error everything started so far is stopped.
func Start(ctx context.Context, cfg Config) (_ *Env, err error) {
	if len(cfg.Names) == 0 {
		cfg.Names = []string{"east", "west"}
	}
	if len(cfg.Names) > len(serviceCIDRs) {
		return nil, fmt.Errorf("kube: at most %d clusters", len(serviceCIDRs))
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 3 * time.Minute
	}
	if !cfg.Address.IsValid() || cfg.Address.IsLoopback() {
		return nil, fmt.Errorf("kube: API server address %v must be a non-loopback address", cfg.Address)
	}
	e := &Env{cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.Stop())
		}
	}()

	etcdLog, err := e.openLog(filepath.Join(cfg.Dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	e.etcd = &envtest.Etcd{
		Path:         filepath.Join(cfg.Bins, "etcd"),
		DataDir:      filepath.Join(cfg.Dir, "etcd"),
		StartTimeout: cfg.StartTimeout,
		StopTimeout:  time.Minute,
		Out:          etcdLog,
		Err:          etcdLog,
	}
	if err := os.MkdirAll(e.etcd.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if err := e.etcd.Start(); err != nil {
		return nil, fmt.Errorf("kube: start etcd (log %s): %w", etcdLog.Name(), err)
	}

	// API servers start one after the other: on two cores starting them
	// together is not faster, and one failing is easier to read.
	for i, name := range cfg.Names {
		c, err := e.startCluster(ctx, name, serviceCIDRs[i])
		if c != nil {
			e.Clusters = append(e.Clusters, c)
		}
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Cluster returns the cluster called name, or nil.
func (e *Env) Cluster(name string) *Cluster {
	for _, c := range e.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Stop stops every process of the environment (controller managers, API
// servers, then etcd). It does not remove Dir.
func (e *Env) Stop() error {
	if e.stopped {
		return nil
	}
	e.stopped = true
	var errs []error
	for _, c := range e.Clusters {
		if c.kcm != nil {
			errs = append(errs, c.kcm.stop())
		}
		if c.plane != nil && c.plane.APIServer != nil {
			errs = append(errs, c.plane.APIServer.Stop())
		}
	}
	if e.etcd != nil {
		errs = append(errs, e.etcd.Stop())
	}
	for _, f := range e.logs {
		errs = append(errs, f.Close())
	}
	e.logs = nil
	return errors.Join(errs...)
}

// startCluster starts one cluster on the shared etcd: its API server, an
// admin client, its controller manager, and its CRDs. The cluster is
// returned even on error once its API server exists, so that Stop stops it.
func (e *Env) startCluster(ctx context.Context, name, serviceCIDR string) (*Cluster, error) {
	dir := filepath.Join(e.cfg.Dir, name)
	c, err := e.startAPIServer(name, dir, serviceCIDR)
	if err != nil {
		return c, err
	}
	caFile := filepath.Join(dir, "pki", "ca.crt")
	if err := e.connectAdmin(c, caFile); err != nil {
		return c, err
	}
	c.kcm, err = startControllerManager(kcmConfig{
		bin:         filepath.Join(e.cfg.Bins, "kube-controller-manager"),
		name:        name,
		kubeconfig:  c.Kubeconfig,
		saKey:       filepath.Join(dir, "pki", "sa-signer.key"), // envtest's file name
		rootCA:      caFile,
		serviceCIDR: serviceCIDR,
		log:         filepath.Join(dir, "kube-controller-manager.log"),
	})
	if err != nil {
		return c, err
	}
	if err := c.waitReady(ctx, e.cfg.StartTimeout); err != nil {
		return c, err
	}
	return c, e.installCRDs(c)
}

// startAPIServer starts the cluster's kube-apiserver, its files in dir.
func (e *Env) startAPIServer(name, dir, serviceCIDR string) (*Cluster, error) {
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	apiLog, err := e.openLog(filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	port, err := freePort(e.cfg.Address)
	if err != nil {
		return nil, err
	}
	addr := e.cfg.Address.String()
	api := &envtest.APIServer{
		Path:    filepath.Join(e.cfg.Bins, "kube-apiserver"),
		CertDir: filepath.Join(dir, "pki"),
		EtcdURL: e.etcd.URL,
		SecureServing: envtest.SecureServing{
			ListenAddr: envtest.ListenAddr{Address: addr, Port: strconv.Itoa(port)},
		},
		StartTimeout: e.cfg.StartTimeout,
		StopTimeout:  time.Minute,
		Out:          apiLog,
		Err:          apiLog,
	}
	api.Configure().
		Set("etcd-prefix", "/"+name).
		Set("advertise-address", addr).
		Set("service-cluster-ip-range", serviceCIDR).
		// envtest disables the ServiceAccount admission plugin because it
		// runs no controller manager; we do, so behave like a real cluster.
		Disable("disable-admission-plugins").
		// An issuer naming the cluster makes tokens of one cluster
		// recognisably foreign to the other.
		Set("service-account-issuer", "https://kubernetes.default.svc/"+name).
		Set("api-audiences", "https://kubernetes.default.svc/"+name).
		// On SIGTERM, end open watches within this grace period: without
		// it the server waits for them up to its request timeout (60s),
		// and StopAPIServer, like Stop, would kill it instead.
		Set("shutdown-watch-termination-grace-period", "5s")
	c := &Cluster{Name: name, plane: &envtest.ControlPlane{APIServer: api, Etcd: e.etcd}}
	if err := api.Start(); err != nil {
		return c, fmt.Errorf("kube: start kube-apiserver %s (log %s): %w", name, apiLog.Name(), err)
	}
	c.CA = api.SecureServing.CA
	return c, nil
}

// connectAdmin gives c an admin user, its kubeconfig and client, and
// writes the API server's CA to caFile for the controller manager.
func (e *Env) connectAdmin(c *Cluster, caFile string) error {
	admin, err := c.plane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}},
		&rest.Config{QPS: 1000, Burst: 2000}) // tests are the only load
	if err != nil {
		return fmt.Errorf("kube: %s admin user: %w", c.Name, err)
	}
	c.Config = admin.Config()
	c.Kubeconfig = filepath.Join(e.cfg.Dir, c.Name+".kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Name, c.Config); err != nil {
		return err
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("kube: %s client: %w", c.Name, err)
	}
	if err := os.WriteFile(caFile, c.CA, 0o600); err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	return nil
}

// installCRDs installs the CRDs of Config.CRDDir, if any, in c.
func (e *Env) installCRDs(c *Cluster) error {
	if e.cfg.CRDDir == "" {
		return nil
	}
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
		Paths:   []string{e.cfg.CRDDir},
		MaxTime: e.cfg.StartTimeout,
	}); err != nil {
		return fmt.Errorf("kube: %s: install CRDs from %s: %w", c.Name, e.cfg.CRDDir, err)
	}
	return nil
}

// waitReady waits for the controller manager's serviceaccount controller to
// create the default ServiceAccount: proof that it runs and reaches the API.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if exited, werr := c.kcm.exited(); exited {
			return false, fmt.Errorf("kube-controller-manager %s exited: %v (log %s)", c.Name, werr, c.kcm.logPath)
		}
		_, last = c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("kube: %s not ready (last: %v): %w", c.Name, last, err)
	}
	return nil
}

// TokenConfig returns a client configuration for this cluster that
// authenticates with a bearer token, e.g. one from TokenRequest.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = token
	return cfg
}

// AddUser provisions a client-certificate user with the given groups and
// returns its client configuration. RBAC applies to it like to any user.
func (c *Cluster) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := c.plane.AddUser(envtest.User{Name: name, Groups: groups}, &rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		return nil, fmt.Errorf("kube: %s user %s: %w", c.Name, name, err)
	}
	return u.Config(), nil
}

// EnsureNamespace creates namespace ns if it does not exist.
func (c *Cluster) EnsureNamespace(ctx context.Context, ns string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube: %s: create namespace %s: %w", c.Name, ns, err)
	}
	return nil
}

// writeKubeconfig writes cfg as a kubeconfig whose cluster, user and
// context are all called name, so that KUBECONFIG=east.kubeconfig:west.kubeconfig
// gives contexts east and west.
func writeKubeconfig(path, name string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("kube: write kubeconfig %s: %w", path, err)
	}
	return nil
}

func (e *Env) openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	e.logs = append(e.logs, f)
	return f, nil
}

// freePort asks the kernel for a free port on addr. Another process may take
// it before the API server binds; envtest accepts the same race.
func freePort(addr netip.Addr) (int, error) {
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return 0, fmt.Errorf("kube: free port on %v: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
