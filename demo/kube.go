package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// Addresses of the kube demo inside network namespace mcgate-kube, where
// 198.18.0.0/24 is local and EndpointSlices accept it.
const (
	kubeEastGW  = "198.18.0.2"
	kubeWestGW  = "198.18.0.3"
	kubeBackend = "198.18.0.20:8080"
)

// cluster is one of the two clusters of make kube-up.
type cluster struct {
	name       string
	kubeconfig string
	client     kubernetes.Interface
	dyn        dynamic.Interface
	mapper     meta.RESTMapper
}

func loadCluster(dir, name string) (*cluster, error) {
	path, err := filepath.Abs(filepath.Join(dir, "clusters", name+".kubeconfig"))
	if err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w (did make kube-up run?)", name, err)
	}
	return newCluster(name, path, rc)
}

func newCluster(name, path string, rc *rest.Config) (*cluster, error) {
	c := &cluster{name: name, kubeconfig: path}
	var err error
	if c.client, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if c.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return nil, err
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.client.Discovery()))
	return c, nil
}

// apply server-side-applies every object of a multi-document YAML stream,
// skipping the kinds in skip.
func (c *cluster) apply(ctx context.Context, manifest []byte, skip ...string) ([]string, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var applied []string
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return applied, nil
			}
			return applied, err
		}
		if obj.Object == nil || containsStr(skip, obj.GetKind()) {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			// A CRD applied earlier in the stream is not in the cached
			// discovery yet: refresh once.
			if r, ok := c.mapper.(meta.ResettableRESTMapper); ok {
				r.Reset()
			}
			if m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				return applied, fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
			}
		}
		var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "mcgate-demo", Force: true}); err != nil {
			return applied, fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		applied = append(applied, strings.ToLower(gvk.Kind)+"/"+obj.GetName())
	}
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// kubeDemo is the demo on the two clusters of make kube-up.
type kubeDemo struct {
	*demo
	east, west *cluster
	gateways   []*exec.Cmd
}

func newKubeDemo(ctx context.Context, bin, kubeDir string) (*kubeDemo, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	east, err := loadCluster(kubeDir, "east")
	if err != nil {
		return nil, err
	}
	west, err := loadCluster(kubeDir, "west")
	if err != nil {
		return nil, err
	}
	d, err := newDemo(ctx, bin, "mcgate-kube-demo-")
	if err != nil {
		return nil, err
	}
	return &kubeDemo{demo: d, east: east, west: west}, nil
}

func runKube(bin, kubeDir string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newKubeDemo(ctx, bin, kubeDir)
	if err != nil {
		return err
	}
	fmt.Printf("mcgate demo on two real clusters (make kube-up): east and west; files in %s\n", d.dir)
	if err := d.install(); err != nil {
		return err
	}
	step("Create the shared trust anchor and each gateway's identity (mcgate identity)")
	if err := d.createIdentities(); err != nil {
		return err
	}
	if err := d.storeIdentities(); err != nil {
		return err
	}
	defer d.stopGateways(keep)
	if err := d.startGateways(); err != nil {
		return err
	}
	backend, err := d.exportAPIFromEast()
	if err != nil {
		return err
	}
	defer backend.Close()
	if err := d.link(); err != nil {
		return err
	}
	addr, err := d.mirroredAddress()
	if err != nil {
		return err
	}
	step("Send traffic: a west client (no sidecar) → api-east → west gateway → mTLS → east gateway → api")
	if err := sendRequests(addr); err != nil {
		return err
	}
	if err := d.showGatewayAlive(); err != nil {
		return err
	}
	if err := d.runCLI(); err != nil {
		return err
	}
	fmt.Println("\nDemo done.")
	return nil
}

func (d *kubeDemo) clusters() []*cluster { return []*cluster{d.east, d.west} }

// install applies mcgate install to both clusters, without the gateway's
// Deployment: the demo's gateways run as host processes.
func (d *kubeDemo) install() error {
	step("Install mcgate in both clusters (mcgate install | apply; the gateways run here as host processes, so the Deployment is left out)")
	out, err := exec.Command(d.bin, "install").Output()
	if err != nil {
		return fmt.Errorf("mcgate install: %w", err)
	}
	for _, c := range d.clusters() {
		applied, err := c.apply(d.ctx, out, "Deployment", "PodDisruptionBudget")
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		fmt.Printf("    %s: %s\n", c.name, strings.Join(applied, " "))
	}
	return nil
}

func (d *kubeDemo) storeIdentities() error {
	step("Store each gateway's identity in the Secret linkerd-gateway-identity (what the Deployment mounts, and what check reads)")
	for _, c := range d.clusters() {
		if err := identitySecret(d.ctx, c, d.path(c.name+"-gateway")); err != nil {
			return err
		}
		fmt.Printf("    %s: secret/linkerd-gateway-identity\n", c.name)
	}
	return nil
}

// startGateways starts a gateway per cluster and waits until it is ready;
// stopGateways stops those that started.
func (d *kubeDemo) startGateways() error {
	step("Start both gateways (mcgate gateway --kubeconfig …): mTLS ingress, egress listeners and the mirror in one process")
	for _, g := range []struct {
		c  *cluster
		ip string
	}{{d.east, kubeEastGW}, {d.west, kubeWestGW}} {
		cmd, err := startGateway(d.bin, d.path(g.c.name+".log"), "--kubeconfig", g.c.kubeconfig,
			"--identity-dir", d.path(g.c.name+"-gateway"), "--cluster-name", g.c.name,
			"--listen-addr", g.ip+":4143", "--admin-addr", g.ip+":4191",
			"--advertise-address", g.ip, "--egress-host", g.ip, "--log-level", "info")
		if err != nil {
			return err
		}
		d.gateways = append(d.gateways, cmd)
		if err := waitReady(d.ctx, g.ip+":4191"); err != nil {
			return fmt.Errorf("%w\n%s", err, tail(d.path(g.c.name+".log")))
		}
	}
	return nil
}

func (d *kubeDemo) stopGateways(keep bool) {
	if keep {
		fmt.Printf("\nGateways left running. Stop them and the clusters with: make kube-down\n")
		return
	}
	step("Stop both gateways with SIGTERM")
	for _, g := range d.gateways {
		g.Process.Signal(syscall.SIGTERM)
		fmt.Printf("    pid %d: %s\n", g.Process.Pid, exitText(g.Wait()))
	}
	os.RemoveAll(d.dir)
}

// exportAPIFromEast starts api's backend and exports api from east; the
// caller closes the backend.
func (d *kubeDemo) exportAPIFromEast() (net.Listener, error) {
	step("Export api.production in east: a Service labelled mirror.linkerd.io/exported=true, its backend on %s", kubeBackend)
	backend, err := net.Listen("tcp", kubeBackend)
	if err != nil {
		return nil, fmt.Errorf("backend (is this running inside netns mcgate-kube?): %w", err)
	}
	go serveEcho(backend)
	if err := exportAPI(d.ctx, d.east); err != nil {
		backend.Close()
		return nil, err
	}
	for _, c := range d.clusters() {
		if err := ensureNamespace(d.ctx, c, "production"); err != nil {
			backend.Close()
			return nil, err
		}
	}
	return backend, nil
}

// link applies to west what mcgate link writes from east.
func (d *kubeDemo) link() error {
	step("Link west to east: mcgate link runs against east, its output is applied to west")
	linkArgs := []string{"link", "--kubeconfig", d.east.kubeconfig, "--cluster-name", "east",
		"--gateway-addresses", kubeEastGW, "--gateway-port", "4143"}
	fmt.Printf("    $ mcgate %s | kubectl --kubeconfig west apply -f -\n", strings.Join(linkArgs, " "))
	linkOut, err := exec.Command(d.bin, linkArgs...).Output()
	if err != nil {
		return fmt.Errorf("mcgate link: %w", exitStderr(err))
	}
	applied, err := d.west.apply(d.ctx, linkOut)
	if err != nil {
		return err
	}
	fmt.Printf("    west: %s\n", strings.Join(applied, " "))
	return nil
}

// mirroredAddress waits for the mirror's api-east in west and returns the
// address of its ready endpoint.
func (d *kubeDemo) mirroredAddress() (string, error) {
	step("The mirror creates api-east in west, with an EndpointSlice pointing at west's gateway")
	addr, err := waitMirror(d.ctx, d.west)
	if err != nil {
		return "", fmt.Errorf("%w\nwest gateway log:\n%s", err, tail(d.path("west.log")))
	}
	fmt.Printf("    service/api-east.production → EndpointSlice endpoint %s (ready)\n", addr)
	return addr, nil
}

func (d *kubeDemo) showGatewayAlive() error {
	step("West's gateway probes east's gateway; the Link's status says so")
	if err := waitGatewayAlive(d.ctx, d.west, "east"); err != nil {
		return err
	}
	fmt.Println("    link/east: condition GatewayAlive=True")
	return nil
}

// runCLI runs mcgate gateways and mcgate check against west.
func (d *kubeDemo) runCLI() error {
	// Both kubeconfigs at once, so that check can reach east through the
	// context named after the Link and compare the trust anchors.
	both := "KUBECONFIG=" + d.east.kubeconfig + ":" + d.west.kubeconfig
	for _, args := range [][]string{
		{"gateways", "--context", "west", "--admin-addr", kubeWestGW + ":4191"},
		{"check", "--context", "west", "--admin-addr", kubeWestGW + ":4191"},
	} {
		step("mcgate %s", strings.Join(args, " "))
		cmd := exec.Command(d.bin, args...)
		cmd.Env = append(os.Environ(), both)
		out, err := cmd.CombinedOutput()
		fmt.Print(indent(string(out)))
		if err != nil {
			return fmt.Errorf("mcgate %s: %w", args[0], err)
		}
	}
	return nil
}

func exportAPI(ctx context.Context, c *cluster) error {
	if err := ensureNamespace(ctx, c, "production"); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "production",
			Labels: map[string]string{"mirror.linkerd.io/exported": "true"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstrPort(8080)}}},
	}
	if _, err := c.client.CoreV1().Services("production").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	host, portStr, _ := net.SplitHostPort(kubeBackend)
	port, _ := strconv.Atoi(portStr)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "api-demo", Namespace: "production",
			Labels: map[string]string{discoveryv1.LabelServiceName: "api", discoveryv1.LabelManagedBy: "mcgate-demo"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(port))}},
	}
	if _, err := c.client.DiscoveryV1().EndpointSlices("production").Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	fmt.Printf("    east: service/api (port 8080, exported), endpointslice/api-demo → %s\n", kubeBackend)
	return nil
}

// identitySecret stores an identity dir as the gateway's identity Secret.
func identitySecret(ctx context.Context, c *cluster, dir string) error {
	data := map[string][]byte{}
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		data[f] = b
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "linkerd-gateway-identity", Namespace: "linkerd-multicluster"},
		Type:       corev1.SecretTypeTLS, Data: data,
	}
	_, err := c.client.CoreV1().Secrets("linkerd-multicluster").Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = c.client.CoreV1().Secrets("linkerd-multicluster").Update(ctx, sec, metav1.UpdateOptions{})
	}
	return err
}

func ensureNamespace(ctx context.Context, c *cluster, ns string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// waitMirror waits for api-east in west and a ready endpoint in its slice.
func waitMirror(ctx context.Context, west *cluster) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		slices, err := west.client.DiscoveryV1().EndpointSlices("production").List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=api-east"})
		if err == nil {
			for _, s := range slices.Items {
				for _, ep := range s.Endpoints {
					if len(ep.Addresses) > 0 && ptr.Deref(ep.Conditions.Ready, false) && len(s.Ports) > 0 && s.Ports[0].Port != nil {
						addr := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*s.Ports[0].Port)))
						// The gateway binds its egress listener when it sees
						// the mirror's egress set change, which can trail the
						// slice by a moment.
						if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
							c.Close()
							return addr, nil
						}
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", errors.New("api-east was not mirrored with a ready endpoint within 60s")
		case <-tick.C:
		}
	}
}

// waitGatewayAlive waits for the Link's GatewayAlive condition, which the
// leading gateway writes from its probes.
func waitGatewayAlive(ctx context.Context, c *cluster, link string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	gvr := schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha3", Resource: "links"}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if u, err := c.dyn.Resource(gvr).Namespace("linkerd-multicluster").Get(ctx, link, metav1.GetOptions{}); err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, raw := range conds {
				if m, ok := raw.(map[string]any); ok && m["type"] == "GatewayAlive" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("link %s: gateway not alive within 60s", link)
		case <-tick.C:
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

func exitStderr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

func intstrPort(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }
