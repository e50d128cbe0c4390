package deploy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// PortRange is an inclusive range of ports, like kube-apiserver's
// --service-node-port-range.
type PortRange struct{ Low, High int32 }

// DefaultNodePortRange is kube-apiserver's default --service-node-port-range.
var DefaultNodePortRange = PortRange{Low: 30000, High: 32767}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Low, r.High) }

// Contains reports whether p is in r.
func (r PortRange) Contains(p int32) bool { return p >= r.Low && p <= r.High }

// ParsePortRange reads "low-high" (both 1-65535, low <= high), the syntax of
// kube-apiserver's --service-node-port-range.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return PortRange{}, fmt.Errorf("port range %q: want low-high, e.g. 30000-32767", s)
	}
	var r PortRange
	for _, p := range []struct {
		text string
		to   *int32
	}{{lo, &r.Low}, {hi, &r.High}} {
		n, err := strconv.ParseUint(p.text, 10, 16)
		if err != nil || n == 0 {
			return PortRange{}, fmt.Errorf("port range %q: %q is not a port (1-65535)", s, p.text)
		}
		*p.to = int32(n)
	}
	if err := r.check(); err != nil {
		return PortRange{}, err
	}
	return r, nil
}

func (r PortRange) check() error {
	if r.Low < 1 || r.High > 65535 || r.Low > r.High {
		return fmt.Errorf("port range %s: want low-high with 1 <= low <= high <= 65535", r)
	}
	return nil
}

// managedAnnotations are the Service annotations install writes itself
// (`mcgate link` reads them); ServiceAnnotations may not replace them.
var managedAnnotations = map[string]string{
	AnnotationGatewayIdentity: "set from --trust-domain",
	AnnotationProbePath:       "the gateway's probe port serves /ready only",
	AnnotationProbePeriod:     "set by install",
	AnnotationClusterDomain:   "set from --cluster-domain",
}

// validateService checks and defaults the options of the linkerd-gateway
// Service, with messages that name what to change: the API server's own
// refusals of the same mistakes come only at apply time.
func (o *Options) validateService() error {
	switch o.ServiceType {
	case "":
		o.ServiceType = corev1.ServiceTypeLoadBalancer
	case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort, corev1.ServiceTypeClusterIP:
	default:
		return fmt.Errorf("gateway service type %q: want LoadBalancer, NodePort or ClusterIP", o.ServiceType)
	}
	if err := o.validateNodePorts(); err != nil {
		return err
	}
	switch o.ExternalTrafficPolicy {
	case "", corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal:
	default:
		return fmt.Errorf("gateway external traffic policy %q: want Cluster or Local", o.ExternalTrafficPolicy)
	}
	if o.ExternalTrafficPolicy != "" && o.ServiceType == corev1.ServiceTypeClusterIP {
		return errors.New("gateway external traffic policy needs service type LoadBalancer or NodePort, not ClusterIP")
	}
	if len(o.LoadBalancerSourceRanges) > 0 && o.ServiceType != corev1.ServiceTypeLoadBalancer {
		return fmt.Errorf("gateway load balancer source ranges need service type LoadBalancer, not %s", o.ServiceType)
	}
	for _, r := range o.LoadBalancerSourceRanges {
		if err := validateCIDR(r); err != nil {
			return fmt.Errorf("gateway load balancer source range: %w", err)
		}
	}
	for k := range o.ServiceAnnotations {
		if why, ok := managedAnnotations[k]; ok {
			return fmt.Errorf("gateway service annotation %s: install sets it (%s)", k, why)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("gateway service annotation key %q: %s", k, strings.Join(errs, "; "))
		}
	}
	return nil
}

func (o *Options) validateNodePorts() error {
	if o.ServiceType == corev1.ServiceTypeClusterIP && (o.NodePort != 0 || o.ProbeNodePort != 0) {
		return errors.New("gateway node ports need service type NodePort or LoadBalancer, not ClusterIP")
	}
	if o.NodePortRange == (PortRange{}) {
		o.NodePortRange = DefaultNodePortRange
	}
	if err := o.NodePortRange.check(); err != nil {
		return fmt.Errorf("service node port range: %w", err)
	}
	// The API server refuses ports outside its range too, but only at
	// apply time and without naming the flag.
	for _, p := range []int32{o.NodePort, o.ProbeNodePort} {
		if p != 0 && !o.NodePortRange.Contains(p) {
			return fmt.Errorf("gateway node port %d: outside the service node port range %s (--service-node-port-range)", p, o.NodePortRange)
		}
	}
	return nil
}

// validateCIDR accepts a network address with its prefix length: the API
// server takes 10.0.0.1/8 today but newer releases warn about it, and it is
// usually a typo for 10.0.0.0/8 or 10.0.0.1/32.
func validateCIDR(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR (e.g. 203.0.113.0/24 or 2001:db8::/32)", s)
	}
	if p != p.Masked() {
		return fmt.Errorf("%q has host bits set: did you mean %s or %s/%d?", s, p.Masked(), p.Addr(), p.Addr().BitLen())
	}
	return nil
}
