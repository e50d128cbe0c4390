package mirror

import (
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func newSliceIndexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{indexByService: sliceServiceKey})
}

func TestRoutes(t *testing.T) {
	exported := map[string]string{"mirror.linkerd.io/exported": "true"}
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	sl := newSliceIndexer()
	add := func(s cache.Indexer, o any) {
		if err := s.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	add(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "prod", Labels: exported},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 90}}}})
	add(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "prod", Labels: exported},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 7000}}}})
	add(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "idle", Namespace: "prod", Labels: exported},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 7000}}}})
	// In the store but not matching the selector (e.g. label removed).
	add(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "secret", Namespace: "prod"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 7000}}}})
	slice := func(name, svc string, ready []*bool, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "prod", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: ports,
		}
		for i, r := range ready {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{"198.18.0." + string(rune('1'+i))},
				Conditions: discoveryv1.EndpointConditions{Ready: r},
			})
		}
		return s
	}
	tcp := ptr.To(corev1.ProtocolTCP)
	add(sl, slice("api-a", "api", []*bool{ptr.To(true), ptr.To(false), nil},
		discoveryv1.EndpointPort{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: tcp},
		discoveryv1.EndpointPort{Name: ptr.To("grpc"), Port: ptr.To[int32](9090), Protocol: tcp}))
	add(sl, slice("api-b", "api", []*bool{ptr.To(true)},
		discoveryv1.EndpointPort{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: tcp}))
	add(sl, slice("one-a", "one", []*bool{ptr.To(true)}, discoveryv1.EndpointPort{Name: ptr.To(""), Port: ptr.To[int32](7001)}))
	add(sl, slice("idle-a", "idle", []*bool{ptr.To(false)}, discoveryv1.EndpointPort{Name: ptr.To(""), Port: ptr.To[int32](7001)}))
	add(sl, slice("secret-a", "secret", []*bool{ptr.To(true)}, discoveryv1.EndpointPort{Name: ptr.To(""), Port: ptr.To[int32](7001)}))

	r := newRoutes(svcs, sl, labels.SelectorFromSet(exported))
	for _, tc := range []struct {
		svc  string
		port int
		want []string
		err  error
	}{
		{"api", 80, []string{"198.18.0.1:8080", "198.18.0.3:8080"}, nil},
		{"api", 90, []string{"198.18.0.1:9090", "198.18.0.3:9090"}, nil},
		{"api", 0, nil, ErrUnknownPort},
		{"api", 8080, nil, ErrUnknownPort},
		{"one", 0, []string{"198.18.0.1:7001"}, nil},
		{"one", 7000, []string{"198.18.0.1:7001"}, nil},
		{"idle", 0, nil, ErrNoEndpoints},
		{"secret", 7000, nil, ErrNotExported},
		{"nothere", 80, nil, ErrNotExported},
	} {
		got, err := r.Route(tc.svc, "prod", tc.port)
		if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Route(%s, %d) = %v, %v; want %v, %v", tc.svc, tc.port, got, err, tc.want, tc.err)
		}
	}
	// api-b's endpoint 198.18.0.1 duplicates api-a's: listed once.
}
