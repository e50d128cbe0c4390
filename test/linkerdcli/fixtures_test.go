package linkerdcli

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"text/template"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testbin"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// linkGVR is Linkerd's Link resource, which link-gen prints.
var linkGVR = schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha3", Resource: "links"}

// fixture is one recorded `linkerd multicluster link-gen` output and what
// mcgate in west must make of it.
type fixture struct {
	file    string
	cluster string // --cluster-name: the Link's name and the mirrors' suffix
	// allow is the ServiceAccount `mcgate allow` makes in east first, for
	// link-gen --service-account-name ("": the install's).
	allow string
	// mirrored and skipped are the east Services (of api, web) the Link
	// selects and leaves out.
	mirrored, skipped []string
	// droppedLabels and droppedAnnotations are api's that its mirror must
	// not carry (--excluded-labels, --excluded-annotations).
	droppedLabels, droppedAnnotations []string
}

var fixtures = []fixture{
	// Default flags against a LoadBalancer gateway Service with an ingress
	// address.
	{file: "link-gen-default.yaml", cluster: "east", mirrored: []string{"api", "web"}},
	// -l, --remote-discovery-selector, --federated-service-selector,
	// --excluded-labels, --excluded-annotations.
	{file: "link-gen-selectors.yaml", cluster: "east-sel", mirrored: []string{"api"}, skipped: []string{"web"},
		droppedLabels: []string{"app"}, droppedAnnotations: []string{"example.com/owner"}},
	// --service-account-name of `mcgate allow`, --api-server-address,
	// --gateway-addresses, --gateway-port, -o json.
	{file: "link-gen-allow.json", cluster: "east-sa", allow: "west-mirror", mirrored: []string{"api", "web"}},
	// --gateway=false: a Link for remote discovery through Linkerd's
	// destination controller. mcgate accepts it and connects, and mirrors
	// nothing (checked once it has connected): it has no selector.
	{file: "link-gen-gatewayless.yaml", cluster: "east-nogw", skipped: []string{"api", "web"}},
}

// TestLinkGenFixtures applies each recorded link-gen output to west, with
// east's API server and a real token of the ServiceAccount it names, and
// waits for west's gateway to mirror east's exported Services from it and
// carry bytes through both gateways.
func TestLinkGenFixtures(t *testing.T) {
	f := startFleet(t)
	for i, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) { f.testFixture(t, fx, kubetest.HostIP(20+i).String()) })
	}
}

func (f *fleet) testFixture(t *testing.T, fx fixture, backendIP string) {
	ctx := t.Context()
	east, west := f.env.East, f.env.West
	ns := kubetest.Namespace(t, east, west)
	echo(t, backendIP+":8080")
	exportService(ctx, t, east, ns, "api", backendIP, map[string]string{
		"mirror.linkerd.io/exported": "true", "tier": "backend", "app": "api"},
		map[string]string{"example.com/owner": "team-a", "note": "kept"})
	exportService(ctx, t, east, ns, "web", backendIP, map[string]string{
		"mirror.linkerd.io/exported": "true", "tier": "frontend"}, nil)
	if fx.allow != "" {
		allow := gatewaytest.Run(t, nil, testbin.Mcgate(t), "allow", "--service-account-name", fx.allow)
		gatewaytest.Run(t, allow, "kubectl", "--kubeconfig", east.Kubeconfig, "apply", "-f", "-")
	}

	manifests := f.render(t, fx)
	file := filepath.Join(t.TempDir(), fx.file)
	if err := os.WriteFile(file, manifests, 0o600); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	gatewaytest.Run(t, nil, "kubectl", "--kubeconfig", west.Kubeconfig, "apply", "-f", file)
	t.Cleanup(func() {
		out, err := exec.Command("kubectl", "--kubeconfig", west.Kubeconfig, "delete", "--ignore-not-found", "-f", file).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl delete: %v\n%s", err, out)
		}
	})

	for _, svc := range fx.mirrored {
		name := svc + "-" + fx.cluster
		var addr string
		wait.ForErr(t, 30*time.Second, name+" mirrored with a ready endpoint on west's gateway", func() error {
			a, err := readyEndpoint(ctx, west, ns, name)
			addr = a
			return err
		})
		t.Logf("%s: Service and EndpointSlice %v after kubectl apply", name, time.Since(applied).Round(time.Millisecond))
		if host, _, _ := net.SplitHostPort(addr); host != westIP {
			t.Errorf("%s's endpoint %s is not west's gateway %s", name, addr, westIP)
		}
		wait.ForErr(t, 30*time.Second, "bytes through "+name, func() error {
			return gatewaytest.EchoOnce(addr, "west to east via "+name)
		})
	}
	f.waitConnected(t, fx.cluster)
	f.checkMirroredOnly(t, fx, ns)
	if slices.Contains(fx.mirrored, "api") {
		f.checkAPIMirror(t, fx, ns)
	}
}

// checkAPIMirror checks the labels and annotations api's mirror carries:
// the fixture's exclusions are dropped, the rest kept.
func (f *fleet) checkAPIMirror(t *testing.T, fx fixture, ns string) {
	t.Helper()
	api, err := f.env.West.Client.CoreV1().Services(ns).Get(t.Context(), "api-"+fx.cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range fx.droppedLabels {
		if _, ok := api.Labels[k]; ok {
			t.Errorf("mirror carries excluded label %s", k)
		}
	}
	for _, k := range fx.droppedAnnotations {
		if _, ok := api.Annotations[k]; ok {
			t.Errorf("mirror carries excluded annotation %s", k)
		}
	}
	if api.Annotations["note"] != "kept" || api.Labels["tier"] != "backend" {
		t.Errorf("mirror lost a label or annotation it should keep: labels %v annotations %v", api.Labels, api.Annotations)
	}
}

// waitConnected waits until west's gateway reports the Link valid and
// connected to east with its credentials.
func (f *fleet) waitConnected(t *testing.T, cluster string) {
	t.Helper()
	wait.ForErr(t, 30*time.Second, "Link "+cluster+" Valid and Credentials True", func() error {
		u, err := f.dynamic(t).Resource(linkGVR).Namespace(deploy.Namespace).Get(t.Context(), cluster, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		status := map[string]string{}
		for _, c := range conds {
			m := c.(map[string]any)
			status[fmt.Sprint(m["type"])] = fmt.Sprint(m["status"])
		}
		if status["Valid"] != "True" || status["Credentials"] != "True" {
			return fmt.Errorf("conditions %v", status)
		}
		return nil
	})
}

func (f *fleet) dynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(f.env.West.Config)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// checkMirroredOnly reads the Link's status, which lists every Service the
// Link mirrors once its first sync with east is done: it must hold this
// namespace's mirrored Services and none of the skipped ones.
func (f *fleet) checkMirroredOnly(t *testing.T, fx fixture, ns string) {
	t.Helper()
	dyn := f.dynamic(t)
	want := slices.Clone(fx.mirrored)
	slices.Sort(want)
	wait.ForErr(t, 30*time.Second, "Link "+fx.cluster+" status listing "+fmt.Sprint(want), func() error {
		u, err := dyn.Resource(linkGVR).Namespace(deploy.Namespace).Get(t.Context(), fx.cluster, metav1.GetOptions{})
		if err != nil {
			return err
		}
		list, _, _ := unstructured.NestedSlice(u.Object, "status", "mirrorServices")
		var got []string
		for _, m := range list {
			if n, _, _ := unstructured.NestedString(m.(map[string]any), "remoteRef", "namespace"); n != ns {
				continue
			}
			name, _, _ := unstructured.NestedString(m.(map[string]any), "remoteRef", "name")
			got = append(got, name)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("status lists %v", got)
		}
		return nil
	})
	for _, svc := range fx.skipped {
		if _, err := f.env.West.Client.CoreV1().Services(ns).Get(t.Context(), svc+"-"+fx.cluster, metav1.GetOptions{}); err == nil {
			t.Errorf("%s-%s mirrored, but the Link's selector leaves %s out", svc, fx.cluster, svc)
		}
	}
}

// render fills the kubeconfig templates of the fixture's credential
// Secrets with east's API server, its CA and a token of the ServiceAccount
// the kubeconfig names, read from that account's token Secret as link-gen
// does, and returns the manifests as YAML for kubectl.
func (f *fleet) render(t *testing.T, fx fixture) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", fx.file))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := deploy.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	east := f.env.East
	for _, u := range objs {
		if u.GetKind() != "Secret" {
			continue
		}
		enc, _, _ := unstructured.NestedString(u.Object, "data", "kubeconfig")
		tmpl, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			t.Fatalf("%s: kubeconfig: %v", deploy.Key(u), err)
		}
		sa := kubeconfigUser(t, tmpl)
		kc := fill(t, tmpl, map[string]string{
			"Server": east.Config.Host,
			"CAData": base64.StdEncoding.EncodeToString(east.Config.CAData),
			"Token":  saToken(t, east, sa),
		})
		if err := unstructured.SetNestedField(u.Object, base64.StdEncoding.EncodeToString(kc), "data", "kubeconfig"); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := deploy.Write(&b, objs, "yaml"); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// kubeconfigUser is the one user of a kubeconfig template: link-gen names
// it after the ServiceAccount whose token it holds.
func kubeconfigUser(t *testing.T, tmpl []byte) string {
	t.Helper()
	cfg, err := clientcmd.Load(fill(t, tmpl, map[string]string{"Server": "https://placeholder", "CAData": "", "Token": "x"}))
	if err != nil {
		t.Fatalf("kubeconfig template: %v", err)
	}
	if len(cfg.AuthInfos) != 1 {
		t.Fatalf("kubeconfig template has %d users, want 1", len(cfg.AuthInfos))
	}
	for name := range cfg.AuthInfos {
		return name
	}
	return ""
}

func fill(t *testing.T, tmpl []byte, values map[string]string) []byte {
	t.Helper()
	tp, err := template.New("kubeconfig").Option("missingkey=error").Parse(string(tmpl))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, values); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readyEndpoint returns the address of the first ready endpoint of the
// mirror Service name's EndpointSlices.
func readyEndpoint(ctx context.Context, c *kubetest.Cluster, ns, name string) (string, error) {
	if _, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return "", err
	}
	slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return "", err
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) > 0 && len(s.Ports) > 0 && s.Ports[0].Port != nil && ptr.Deref(ep.Conditions.Ready, false) {
				return net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*s.Ports[0].Port))), nil
			}
		}
	}
	return "", fmt.Errorf("no ready endpoint in %d EndpointSlices", len(slices.Items))
}

// echo serves a TCP echo on addr until the test ends.
func echo(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(c, c)
			})
		}
	})
}
