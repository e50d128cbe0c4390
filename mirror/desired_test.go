package mirror

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

func testLink(mode string) *multicluster.LinkConfig {
	return &multicluster.LinkConfig{
		Name: "east", Namespace: "linkerd-multicluster", Cluster: "east", Domain: "east.local",
		GatewayHosts: []string{"198.18.0.2"}, GatewayPort: 4143, GatewayIdentity: "gw.east",
		Selector:       labels.SelectorFromSet(labels.Set{"mirror.linkerd.io/exported": "true"}),
		ExcludedLabels: []string{"argocd.argoproj.io/*", "team"},
		ExcludedAnns:   []string{"prometheus.io/scrape", "config.linkerd.io/opaque-ports"},
		Mode:           mode,
	}
}

func remoteService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "api", Namespace: "production", ResourceVersion: "42",
			Labels: map[string]string{
				"app": "api", "mirror.linkerd.io/exported": "true", "team": "a",
				"argocd.argoproj.io/instance": "x", "argocd.argoproj.io": "kept",
			},
			Annotations: map[string]string{
				"note": "n", "prometheus.io/scrape": "true", "config.linkerd.io/opaque-ports": "5432",
				"service.kubernetes.io/topology-mode": "Auto", "mcgate.io/egress-ports": "1=2",
			},
		},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 8080, TargetPort: intstr.FromString("web"), NodePort: 30080, AppProtocol: ptr.To("http")},
				{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9091)},
			},
		},
	}
}

func TestMirrorName(t *testing.T) {
	s := remoteService()
	if got := mirrorName(s, "east"); got != "api-east" {
		t.Fatalf("MirrorName = %q", got)
	}
	s.Annotations[multicluster.AnnotationRemoteSvcName] = "api-eu"
	if got := mirrorName(s, "east"); got != "api-eu" {
		t.Fatalf("MirrorName with annotation = %q", got)
	}
	for fq, want := range map[string][2]string{
		"api.production.svc.east.local": {"api", "production"},
		"api.production.svc":            {"", ""},
		"api.production.pod.x":          {"", ""},
	} {
		n, ns, _ := parseFQName(fq)
		if n != want[0] || ns != want[1] {
			t.Errorf("ParseFQName(%q) = %q %q", fq, n, ns)
		}
	}
}

func TestDesiredService(t *testing.T) {
	remote := remoteService()
	got := desiredService(testLink(multicluster.ModeEgress), remote, map[int32]int32{8080: 4200, 9090: 4201})
	if *got.Name != "api-east" || *got.Namespace != "production" {
		t.Fatalf("name %s/%s", *got.Namespace, *got.Name)
	}
	wantLabels := map[string]string{
		"app": "api", "argocd.argoproj.io": "kept",
		multicluster.LabelMirroredService: "true", multicluster.LabelClusterName: "east",
	}
	if !reflect.DeepEqual(got.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", got.Labels, wantLabels)
	}
	ann := got.Annotations
	delete(ann, annotationDesiredHash)
	wantAnn := map[string]string{
		"note": "n", "config.linkerd.io/opaque-ports": "5432",
		multicluster.AnnotationRemoteFQName:  "api.production.svc.east.local",
		multicluster.AnnotationRemoteVersion: "42",
		AnnotationEgressPorts:                "8080=4200,9090=4201",
	}
	if !reflect.DeepEqual(ann, wantAnn) {
		t.Errorf("annotations = %v, want %v", ann, wantAnn)
	}
	if *got.Spec.Type != corev1.ServiceTypeClusterIP || got.Spec.Selector != nil {
		t.Errorf("spec type %v selector %v", *got.Spec.Type, got.Spec.Selector)
	}
	b, _ := json.Marshal(got.Spec.Ports)
	want := `[{"name":"http","protocol":"TCP","appProtocol":"http","port":8080,"targetPort":"web"},{"name":"grpc","protocol":"TCP","port":9090,"targetPort":9091}]`
	if string(b) != want {
		t.Errorf("ports = %s\nwant    %s", b, want)
	}

	// Direct mode records no egress ports.
	d := desiredService(testLink(multicluster.ModeDirect), remote, nil)
	if _, ok := d.Annotations[AnnotationEgressPorts]; ok {
		t.Error("direct mode mirror has egress ports")
	}
}

func TestDesiredServiceHashTracksChanges(t *testing.T) {
	l := testLink(multicluster.ModeEgress)
	r := remoteService()
	e := map[int32]int32{8080: 4200, 9090: 4201}
	base := desiredService(l, r, e).Annotations[annotationDesiredHash]
	if again := desiredService(l, remoteService(), e).Annotations[annotationDesiredHash]; again != base {
		t.Fatal("hash is not deterministic")
	}
	for name, edit := range map[string]func(){
		"label removed": func() { delete(r.Labels, "app") },
		"port changed":  func() { r.Spec.Ports[1].Port = 9999 },
		"excluded":      func() { l.ExcludedLabels = append(l.ExcludedLabels, "app") },
		"egress port":   func() { e[8080] = 4300 },
	} {
		l, r, e = testLink(multicluster.ModeEgress), remoteService(), map[int32]int32{8080: 4200, 9090: 4201}
		edit()
		if h := desiredService(l, r, e).Annotations[annotationDesiredHash]; h == base {
			t.Errorf("%s: hash unchanged", name)
		}
	}
}

// mirrorAsRead is the mirror Service as the API server returns it.
func mirrorAsRead(t *testing.T, l *multicluster.LinkConfig) *corev1.Service {
	t.Helper()
	ac := desiredService(l, remoteService(), map[int32]int32{8080: 4200, 9090: 4201})
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Service
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	s.UID = "uid-1"
	return &s
}

func TestDesiredSlice(t *testing.T) {
	type want struct {
		addrs  []string
		ports  []int32
		ready  bool
		family discoveryv1.AddressType
	}
	for _, tc := range []struct {
		name string
		mode string
		st   sliceState
		want want
	}{
		{"egress alive", multicluster.ModeEgress, sliceState{Addresses: []string{"198.18.0.11", "198.18.0.10"}, Alive: true},
			want{[]string{"198.18.0.10", "198.18.0.11"}, []int32{4200, 4201}, true, discoveryv1.AddressTypeIPv4}},
		{"egress dead", multicluster.ModeEgress, sliceState{Addresses: []string{"198.18.0.10"}, Alive: false},
			want{[]string{"198.18.0.10"}, []int32{4200, 4201}, false, discoveryv1.AddressTypeIPv4}},
		{"egress empty remote", multicluster.ModeEgress, sliceState{Addresses: []string{"198.18.0.10"}, Alive: true, Empty: true},
			want{nil, []int32{4200, 4201}, false, discoveryv1.AddressTypeIPv4}},
		{"direct", multicluster.ModeDirect, sliceState{Addresses: []string{"198.18.0.2", "fd00::2", "bogus"}, Alive: true},
			want{[]string{"198.18.0.2"}, []int32{4143, 4143}, true, discoveryv1.AddressTypeIPv4}},
		{"direct v6 only", multicluster.ModeDirect, sliceState{Addresses: []string{"fd00::2"}, Alive: true},
			want{[]string{"fd00::2"}, []int32{4143, 4143}, true, discoveryv1.AddressTypeIPv6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testLink(tc.mode)
			m := mirrorAsRead(t, testLink(multicluster.ModeEgress))
			s, err := desiredSlice(l, m, tc.st)
			if err != nil {
				t.Fatal(err)
			}
			if *s.Name != "api-east" || s.Labels[discoveryv1.LabelServiceName] != "api-east" || s.Labels[LabelManagedBy] != "mcgate" || s.Labels[multicluster.LabelClusterName] != "east" {
				t.Errorf("meta %s %v", *s.Name, s.Labels)
			}
			if s.Annotations[multicluster.AnnotationGatewayID] != "gw.east" || s.Annotations[multicluster.AnnotationRemoteFQName] != "api.production.svc.east.local" {
				t.Errorf("annotations %v", s.Annotations)
			}
			if len(s.OwnerReferences) != 1 || *s.OwnerReferences[0].UID != "uid-1" || !*s.OwnerReferences[0].Controller {
				t.Errorf("owner %+v", s.OwnerReferences)
			}
			if *s.AddressType != tc.want.family {
				t.Errorf("family %v", *s.AddressType)
			}
			var addrs []string
			for _, e := range s.Endpoints {
				addrs = append(addrs, e.Addresses...)
				if *e.Conditions.Ready != tc.want.ready || *e.Conditions.Serving != tc.want.ready {
					t.Errorf("conditions %+v", e.Conditions)
				}
			}
			if !reflect.DeepEqual(addrs, tc.want.addrs) {
				t.Errorf("addresses %v, want %v", addrs, tc.want.addrs)
			}
			if s.Endpoints == nil {
				t.Error("endpoints nil: apply would not clear old endpoints")
			}
			var ports []int32
			for _, p := range s.Ports {
				ports = append(ports, *p.Port)
			}
			if !reflect.DeepEqual(ports, tc.want.ports) || *s.Ports[0].Name != "http" || *s.Ports[0].AppProtocol != "http" {
				t.Errorf("ports %v", ports)
			}
		})
	}
}

func TestDesiredSliceMissingEgressPort(t *testing.T) {
	m := mirrorAsRead(t, testLink(multicluster.ModeEgress))
	m.Annotations[AnnotationEgressPorts] = "8080=4200"
	if _, err := desiredSlice(testLink(multicluster.ModeEgress), m, sliceState{Addresses: []string{"198.18.0.10"}, Alive: true}); err == nil {
		t.Fatal("want error for a service port without an egress port")
	}
}

func TestExcluded(t *testing.T) {
	for _, tc := range []struct {
		key  string
		list []string
		want bool
	}{
		{"argocd.argoproj.io/instance", []string{"argocd.argoproj.io/*"}, true},
		{"argocd.argoproj.io", []string{"argocd.argoproj.io/*"}, false},
		{"team", []string{"team"}, true},
		{"teams", []string{"team"}, false},
		{"x", nil, false},
	} {
		if got := excluded(tc.key, tc.list); got != tc.want {
			t.Errorf("excluded(%q, %v) = %v", tc.key, tc.list, got)
		}
	}
}
