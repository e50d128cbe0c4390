package mirror

import (
	"errors"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// Errors of Routes.Route. The gateway's wiring maps them onto the proxy's
// own sentinels (mirror must not import proxy).
var (
	ErrNotExported = errors.New("service is not exported")
	ErrUnknownPort = errors.New("service port is not exported")
	ErrNoEndpoints = errors.New("service has no ready endpoints")
)

// indexByService indexes EndpointSlices by "<ns>/<kubernetes.io/service-name>".
const indexByService = "service"

func sliceServiceKey(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// Routes is the ingress route table: this cluster's exported Services and
// the ready endpoints of their EndpointSlices, read from informer caches,
// so Route never waits on the API server.
type Routes struct {
	services cache.Indexer // Services matching the export selector
	slices   cache.Indexer // EndpointSlices, indexed by indexByService
	selector labels.Selector
}

// NewRoutes reads from the given informer stores; slices must carry the
// indexByService index (see Mirror, which builds both).
func newRoutes(services, slices cache.Indexer, exportSelector labels.Selector) *Routes {
	return &Routes{services: services, slices: slices, selector: exportSelector}
}

// Route returns the ready endpoints "ip:port" of port (the service port;
// 0 means the service's only port) of an exported service, with the target
// port taken from the EndpointSlices by port name.
func (r *Routes) Route(service, namespace string, port int) ([]string, error) {
	obj, ok, err := r.services.GetByKey(namespace + "/" + service)
	if err != nil || !ok {
		return nil, ErrNotExported
	}
	svc := obj.(*corev1.Service)
	// The informer is filtered by the selector already; checking again
	// keeps deny-by-default even if it were not.
	if !r.selector.Matches(labels.Set(svc.Labels)) {
		return nil, ErrNotExported
	}
	sp, err := servicePort(svc, port)
	if err != nil {
		return nil, err
	}
	objs, err := r.slices.ByIndex(indexByService, namespace+"/"+service)
	if err != nil {
		return nil, ErrNoEndpoints
	}
	var eps []string
	for _, o := range objs {
		s := o.(*discoveryv1.EndpointSlice)
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		target, ok := slicePort(s, sp)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			// Ready nil means unknown, which consumers treat as ready.
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				eps = append(eps, net.JoinHostPort(a, strconv.Itoa(target)))
			}
		}
	}
	if len(eps) == 0 {
		return nil, ErrNoEndpoints
	}
	slices.Sort(eps)
	return slices.Compact(eps), nil
}

func servicePort(svc *corev1.Service, port int) (corev1.ServicePort, error) {
	if port == 0 {
		if len(svc.Spec.Ports) != 1 {
			return corev1.ServicePort{}, ErrUnknownPort
		}
		return svc.Spec.Ports[0], nil
	}
	for _, p := range svc.Spec.Ports {
		if int(p.Port) == port && protocolOf(p.Protocol) == corev1.ProtocolTCP {
			return p, nil
		}
	}
	return corev1.ServicePort{}, ErrUnknownPort
}

// slicePort finds the slice port serving sp: EndpointSlice ports carry the
// service port's name, and the number is the resolved target port.
func slicePort(s *discoveryv1.EndpointSlice, sp corev1.ServicePort) (int, bool) {
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name == sp.Name && proto == protocolOf(sp.Protocol) && p.Port != nil {
			return int(*p.Port), true
		}
	}
	return 0, false
}
