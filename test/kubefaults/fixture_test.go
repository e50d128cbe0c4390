package kubefaults

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testbin"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// Addresses (kubetest.HostIP) of this package's processes.
const (
	eastGatewayHost = 2
	westGatewayHost = 3 // replica i listens on westGatewayHost+i
	backendHost     = 20
)

// Names of the FlowSchemas that single out the mirror's requests to east
// (its Link credentials are the remote-access ServiceAccount's token, which
// nothing else here uses), so east's own metrics count them by verb.
const (
	mirrorListFlow  = "kubefaults-mirror-list"
	mirrorWatchFlow = "kubefaults-mirror-watch"
)

var setup struct {
	sync.Once
	dir   string // identities
	ready bool
}

// prepare installs mcgate into both clusters (namespace, CRD, RBAC, the
// remote-access ServiceAccount, the gateway Service `mcgate link` reads),
// makes the trust anchor and both gateways' identities, and creates the
// FlowSchemas. Once per package.
func prepare(t *testing.T, env *kubetest.Env) string {
	t.Helper()
	setup.Do(func() {
		gatewaytest.Install(t, env.East.Kubeconfig, env.West.Kubeconfig)
		dir := filepath.Join(env.Dir, "kubefaults")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		gatewaytest.Identities(t, dir, "east", "west")
		for i, f := range []struct{ name, verb string }{{mirrorListFlow, "list"}, {mirrorWatchFlow, "watch"}} {
			_, err := env.East.Client.FlowcontrolV1().FlowSchemas().Create(t.Context(), &flowcontrolv1.FlowSchema{
				ObjectMeta: metav1.ObjectMeta{Name: f.name},
				Spec: flowcontrolv1.FlowSchemaSpec{
					PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
					MatchingPrecedence:         int32(100 + i), // before the built-in service-accounts schema
					DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
					Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
						Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
							ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Name: deploy.RemoteAccessName, Namespace: deploy.Namespace}}},
						ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{f.verb}, APIGroups: []string{"*"},
							Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}},
					}},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		}
		setup.dir, setup.ready = dir, true
	})
	if !setup.ready {
		t.Fatal("kubefaults: the package setup failed in an earlier test")
	}
	return setup.dir
}

var clusterSeq atomic.Int32

// fixture is one test's two clusters with mcgate linked from west to east.
type fixture struct {
	t       *testing.T
	env     *kubetest.Env
	ids     string // identities (shared by the package)
	logs    string // gateway logs of this test
	ns      string // app namespace, in both clusters
	cluster string // the Link's targetClusterName (and name)
	dyn     dynamic.Interface
	backend string // echo backend ("ip:port") the exported services point at
}

func newFixture(t *testing.T) *fixture {
	env := kubetest.Start(t)
	f := &fixture{t: t, env: env, ids: prepare(t, env), logs: t.TempDir(),
		ns: kubetest.Namespace(t, env.East, env.West), cluster: fmt.Sprintf("east%d", clusterSeq.Add(1))}
	var err error
	if f.dyn, err = dynamic.NewForConfig(env.West.Config); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", kubetest.HostIP(backendHost).String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	f.backend = testproxy.ServeBackend(t, ln, testproxy.Echo).Addr()
	return f
}

// gateway starts `mcgate gateway` for cluster c on host (kubetest.HostIP)
// with POD_NAME id (its Lease identity's name), waits until it is ready,
// and stops it (SIGTERM) when the test ends.
func (f *fixture) gateway(c *kubetest.Cluster, host int, id string) *gatewaytest.Process {
	f.t.Helper()
	return f.gatewayWithEnv(c, host, id, "POD_NAME="+id)
}

// gatewayWithEnv is gateway with env added to the process's environment;
// id names its log.
func (f *fixture) gatewayWithEnv(c *kubetest.Cluster, host int, id string, env ...string) *gatewaytest.Process {
	f.t.Helper()
	ip := kubetest.HostIP(host).String()
	g := &gatewaytest.Process{T: f.t, Log: filepath.Join(f.logs, id+".log"), Env: env,
		Args: []string{"gateway", "--kubeconfig", c.Kubeconfig,
			"--identity-dir", filepath.Join(f.ids, c.Name+"-gw"), "--cluster-name", c.Name,
			"--listen-addr", ip + ":4143", "--admin-addr", ip + ":4191",
			"--advertise-address", ip, "--egress-host", ip}}
	g.Start()
	g.StopAtCleanup(id)
	wait.Until(f.t, 90*time.Second, id+" ready", func() bool {
		resp, err := http.Get("http://" + ip + ":4191/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return g
}

// eastGateway starts east's gateway, which the exported services are
// reached through and west's probes ask.
func (f *fixture) eastGateway() *gatewaytest.Process {
	return f.gateway(f.env.East, eastGatewayHost, "east")
}

// westGateway starts west replica i (0, 1, …), which writes the mirrors
// while it holds the Lease.
func (f *fixture) westGateway(i int) *gatewaytest.Process {
	return f.gateway(f.env.West, westGatewayHost+i, westID(i))
}

func westID(i int) string { return fmt.Sprintf("west-%d", i) }

// link links west to east with `mcgate link`, its output applied to west.
// apiServer, if set, is the URL west's mirror reaches east's API server at.
// The Link and its Secret are deleted when the test ends.
func (f *fixture) link(apiServer string) {
	f.t.Helper()
	args := []string{"link", "--kubeconfig", f.env.East.Kubeconfig, "--cluster-name", f.cluster,
		"--gateway-addresses", kubetest.HostIP(eastGatewayHost).String(), "--gateway-port", "4143"}
	if apiServer != "" {
		args = append(args, "--api-server-address", apiServer)
	}
	out := gatewaytest.Run(f.t, nil, testbin.Mcgate(f.t), args...)
	gatewaytest.Run(f.t, out, "kubectl", "--kubeconfig", f.env.West.Kubeconfig, "apply", "-f", "-")
	f.t.Cleanup(func() {
		ctx := context.Background()
		if err := f.dyn.Resource(multicluster.LinkGVR).Namespace(deploy.Namespace).Delete(ctx, f.cluster, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			f.t.Errorf("delete Link %s: %v", f.cluster, err)
		}
		err := f.env.West.Client.CoreV1().Secrets(deploy.Namespace).Delete(ctx, "cluster-credentials-"+f.cluster, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			f.t.Errorf("delete Secret of Link %s: %v", f.cluster, err)
		}
	})
}

// export creates Service name in east, exported, with one port and a ready
// endpoint at the echo backend.
func (f *fixture) export(ctx context.Context, name string) error {
	_, port, _ := net.SplitHostPort(f.backend)
	p, _ := strconv.Atoi(port)
	_, err := f.env.East.Client.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: map[string]string{"mirror.linkerd.io/exported": "true"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080,
			TargetPort: intstr.FromInt(p)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s: %w", name, err)
	}
	_, err = f.env.East.Client.DiscoveryV1().EndpointSlices(f.ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: f.ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "kubefaults"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{kubetest.HostIP(backendHost).String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(p))}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create endpointslice of %s: %w", name, err)
	}
	return nil
}

// addPort adds a port to east's Service name: its mirror must follow.
func (f *fixture) addPort(ctx context.Context, name string, port int32) error {
	s, err := f.env.East.Client.CoreV1().Services(f.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", port), Port: port})
	_, err = f.env.East.Client.CoreV1().Services(f.ns).Update(ctx, s, metav1.UpdateOptions{})
	return err
}

// unexport removes the export label from east's Service name: its mirror
// must go.
func (f *fixture) unexport(ctx context.Context, name string) error {
	s, err := f.env.East.Client.CoreV1().Services(f.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	delete(s.Labels, "mirror.linkerd.io/exported")
	_, err = f.env.East.Client.CoreV1().Services(f.ns).Update(ctx, s, metav1.UpdateOptions{})
	return err
}

// remove deletes east's Service name (and its slice).
func (f *fixture) remove(ctx context.Context, name string) error {
	if err := f.env.East.Client.CoreV1().Services(f.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	err := f.env.East.Client.DiscoveryV1().EndpointSlices(f.ns).Delete(ctx, name+"-1", metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	return err
}

// must fails the test on err.
func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// mirrorName is the mirror of east's service name.
func (f *fixture) mirrorName(name string) string { return name + "-" + f.cluster }

// desired reads what west must mirror: east's exported services in the
// test namespace, by mirror name, with their ports.
func (f *fixture) desired(ctx context.Context) (map[string][]int32, error) {
	l, err := f.env.East.Client.CoreV1().Services(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "mirror.linkerd.io/exported=true"})
	if err != nil {
		return nil, err
	}
	out := map[string][]int32{}
	for _, s := range l.Items {
		for _, p := range s.Spec.Ports {
			out[f.mirrorName(s.Name)] = append(out[f.mirrorName(s.Name)], p.Port)
		}
		slices.Sort(out[f.mirrorName(s.Name)])
	}
	return out, nil
}

// mirrors is west's mirror state of this test's Link.
type mirrors struct {
	services map[string]corev1.Service              // by name
	slices   map[string][]discoveryv1.EndpointSlice // by kubernetes.io/service-name
	stray    []string                               // mirrors of the Link outside the test namespace
}

// uids returns the mirror Services' UIDs by name.
func (m mirrors) uids() map[string]string {
	out := map[string]string{}
	for n, s := range m.services {
		out[n] = string(s.UID)
	}
	return out
}

// versions returns "<uid>/<resourceVersion>" of every mirror Service and
// slice: equal versions mean nothing was written.
func (m mirrors) versions() map[string]string {
	out := map[string]string{}
	for n, s := range m.services {
		out["svc/"+n] = string(s.UID) + "/" + s.ResourceVersion
	}
	for n, ss := range m.slices {
		for _, s := range ss {
			out["slice/"+n+"/"+s.Name] = string(s.UID) + "/" + s.ResourceVersion
		}
	}
	return out
}

func (f *fixture) mirrors(ctx context.Context) (mirrors, error) {
	m := mirrors{services: map[string]corev1.Service{}, slices: map[string][]discoveryv1.EndpointSlice{}}
	svcs, err := f.env.West.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: multicluster.LabelClusterName + "=" + f.cluster})
	if err != nil {
		return m, err
	}
	for _, s := range svcs.Items {
		if s.Namespace != f.ns {
			m.stray = append(m.stray, s.Namespace+"/"+s.Name)
			continue
		}
		m.services[s.Name] = s
	}
	sl, err := f.env.West.Client.DiscoveryV1().EndpointSlices(f.ns).List(ctx, metav1.ListOptions{LabelSelector: mirror.LabelManagedBy + "=" + mirror.ManagedByValue})
	if err != nil {
		return m, err
	}
	for _, s := range sl.Items {
		n := s.Labels[discoveryv1.LabelServiceName]
		m.slices[n] = append(m.slices[n], s)
	}
	return m, nil
}

// diff says how m differs from want (mirror name → ports): missing,
// extra or stale mirrors, a mirror without exactly one slice owned by it,
// orphan slices, two mirrors on one egress port. "" when they agree.
func (m mirrors) diff(want map[string][]int32) string {
	var out []string
	egress := map[int32]string{}
	for name, ports := range want {
		s, ok := m.services[name]
		if !ok {
			out = append(out, "missing "+name)
			continue
		}
		var got []int32
		for _, p := range s.Spec.Ports {
			got = append(got, p.Port)
		}
		slices.Sort(got)
		if !slices.Equal(got, ports) {
			out = append(out, fmt.Sprintf("%s has ports %v, want %v", name, got, ports))
		}
		ss := m.slices[name]
		if len(ss) != 1 {
			out = append(out, fmt.Sprintf("%s has %d slices", name, len(ss)))
		} else if o := ss[0].OwnerReferences; len(o) != 1 || o[0].UID != s.UID {
			out = append(out, fmt.Sprintf("%s's slice is not owned by it: %+v", name, o))
		}
		e, err := mirror.ParseEgressPorts(s.Annotations[mirror.AnnotationEgressPorts])
		if err != nil {
			out = append(out, fmt.Sprintf("%s egress ports: %v", name, err))
		}
		for _, p := range e {
			if other, dup := egress[p]; dup {
				out = append(out, fmt.Sprintf("%s and %s share egress port %d", name, other, p))
			}
			egress[p] = name
		}
	}
	for name := range m.services {
		if _, ok := want[name]; !ok {
			out = append(out, "extra "+name)
		}
	}
	for name := range m.slices {
		if _, ok := m.services[name]; !ok {
			out = append(out, "orphan slice of "+name)
		}
	}
	for _, s := range m.stray {
		out = append(out, "stray "+s)
	}
	slices.Sort(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("… %d more", len(out)-10))
	}
	return strings.Join(out, "; ")
}

// converged waits until west's mirrors are exactly what east exports and
// returns them.
func (f *fixture) converged(within time.Duration) mirrors {
	f.t.Helper()
	var m mirrors
	wait.Within(f.t, within, "mirrors of "+f.cluster+" converged", func() (bool, string) {
		want, err := f.desired(f.t.Context())
		if err == nil {
			m, err = f.mirrors(f.t.Context())
		}
		if err != nil {
			return false, err.Error()
		}
		diff := m.diff(want)
		return diff == "", diff
	})
	return m
}

// keptUIDs fails the test unless every mirror of before that is still
// wanted in after has the same UID (it was not deleted and recreated).
func keptUIDs(t *testing.T, before, after mirrors) {
	t.Helper()
	for n, uid := range before.uids() {
		if s, ok := after.services[n]; ok && string(s.UID) != uid {
			t.Errorf("mirror %s was recreated: UID %s → %s", n, uid, s.UID)
		}
	}
}

// linked starts both gateways, exports svc0 to svc<n-1> in east, links west
// to east through server ("": east's own URL) and returns the mirrors once
// they have converged.
func (f *fixture) linked(n int, server string) mirrors {
	f.t.Helper()
	f.eastGateway()
	f.westGateway(0)
	for i := range n {
		f.must(f.export(f.t.Context(), fmt.Sprintf("svc%d", i)))
	}
	f.link(server)
	return f.converged(90 * time.Second)
}

// eastForwarder puts a forwarder in front of east's API server, for a Link
// whose path to east the test can cut.
func (f *fixture) eastForwarder() *kubetest.Forwarder {
	f.t.Helper()
	u, err := url.Parse(f.env.East.Config.Host)
	f.must(err)
	return kubetest.NewForwarder(f.t, u.Host)
}
