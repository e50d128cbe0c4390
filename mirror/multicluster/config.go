package multicluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Endpoint modes of a Link, chosen with AnnotationEndpointMode on the Link.
// An annotation rather than a spec field keeps the Linkerd schema intact, so
// Links rendered by Linkerd's CLI stay valid.
const (
	AnnotationEndpointMode = "mcgate.io/endpoint-mode"
	// ModeEgress points mirror endpoints at this cluster's gateway on an
	// allocated egress port: clients need no mesh. The default.
	ModeEgress = "egress"
	// ModeDirect points mirror endpoints at the remote gateway, as Linkerd
	// does, for meshed clients that do their own mTLS.
	ModeDirect = "direct"
)

// LinkConfig is a validated Link with its strings parsed.
type LinkConfig struct {
	Name      string // the Link's metadata.name
	Namespace string
	Cluster   string // targetClusterName
	Domain    string // targetClusterDomain
	Secret    string
	// GatewayHosts are the gatewayAddress entries, unresolved (IPs or DNS names).
	GatewayHosts    []string
	GatewayPort     int
	GatewayIdentity string
	Probe           ProbeConfig
	Selector        labels.Selector
	ExcludedAnns    []string
	ExcludedLabels  []string
	Mode            string
}

// ProbeConfig is a parsed ProbeSpec. An empty Path disables probing.
type ProbeConfig struct {
	Path             string
	Port             int
	Period           time.Duration
	Timeout          time.Duration
	FailureThreshold int
}

// Defaults taken from Linkerd's CRD and CLI.
const (
	defaultProbePeriod    = 3 * time.Second
	defaultProbeTimeout   = 30 * time.Second
	defaultProbeThreshold = 3
	defaultProbePort      = 4191
	defaultGatewayPort    = 4143
	defaultClusterDomain  = "cluster.local"
)

// FieldError names the field of a Link that is wrong and why; its text is
// the message of the Link's Valid=False condition.
type FieldError struct {
	Field  string // JSON path, e.g. "spec.probeSpec.period"
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: invalid value %q: %s", e.Field, e.Value, e.Reason)
}

// Config validates the Link and parses it. The first invalid field is
// returned as a *FieldError; fields are checked in a fixed order so the
// reported error is stable.
func (l *Link) Config() (*LinkConfig, error) {
	s := &l.Spec
	c := &LinkConfig{
		Name:            l.Name,
		Namespace:       l.Namespace,
		Cluster:         s.TargetClusterName,
		Domain:          s.TargetClusterDomain,
		Secret:          s.ClusterCredentialsSecret,
		GatewayIdentity: s.GatewayIdentity,
		ExcludedAnns:    s.ExcludedAnnotations,
		ExcludedLabels:  s.ExcludedLabels,
	}
	if c.Domain == "" {
		c.Domain = defaultClusterDomain
	}
	// The cluster name becomes a suffix of Service names and a label value.
	if errs := validation.IsDNS1123Label(c.Cluster); len(errs) > 0 {
		return nil, &FieldError{"spec.targetClusterName", c.Cluster, strings.Join(errs, "; ")}
	}
	if errs := validation.IsDNS1123Subdomain(c.Domain); len(errs) > 0 {
		return nil, &FieldError{"spec.targetClusterDomain", c.Domain, strings.Join(errs, "; ")}
	}
	if errs := validation.IsDNS1123Subdomain(c.Secret); len(errs) > 0 {
		return nil, &FieldError{"spec.clusterCredentialsSecret", c.Secret, strings.Join(errs, "; ")}
	}
	var err error
	if c.GatewayHosts, c.GatewayPort, err = parseGateway(s); err != nil {
		return nil, err
	}
	if len(c.GatewayHosts) > 0 && c.GatewayIdentity == "" {
		return nil, &FieldError{"spec.gatewayIdentity", "", "required when gatewayAddress is set: the remote gateway's certificate is checked against it"}
	}
	if c.Probe, err = parseProbe(&s.ProbeSpec); err != nil {
		return nil, err
	}
	if c.Selector, err = parseSelector(s.Selector); err != nil {
		return nil, err
	}
	c.Mode = ModeEgress
	if m, ok := l.Annotations[AnnotationEndpointMode]; ok {
		if m != ModeEgress && m != ModeDirect {
			return nil, &FieldError{"metadata.annotations[" + AnnotationEndpointMode + "]", m, "must be egress or direct"}
		}
		c.Mode = m
	}
	return c, nil
}

// parseGateway parses gatewayAddress (IPs or DNS names, comma-separated)
// and gatewayPort.
func parseGateway(s *LinkSpec) ([]string, int, error) {
	var hosts []string
	for _, h := range strings.Split(s.GatewayAddress, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if net.ParseIP(h) == nil {
			if errs := validation.IsDNS1123Subdomain(h); len(errs) > 0 {
				return nil, 0, &FieldError{"spec.gatewayAddress", s.GatewayAddress, fmt.Sprintf("%q is neither an IP nor a DNS name", h)}
			}
		}
		hosts = append(hosts, h)
	}
	port, err := parsePort(s.GatewayPort, defaultGatewayPort)
	if err != nil {
		return nil, 0, &FieldError{"spec.gatewayPort", s.GatewayPort, err.Error()}
	}
	return hosts, port, nil
}

// parseProbe parses the probe spec, with Linkerd's defaults for what is
// not set.
func parseProbe(p *ProbeSpec) (ProbeConfig, error) {
	c := ProbeConfig{Path: p.Path, FailureThreshold: defaultProbeThreshold}
	if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
		return c, &FieldError{"spec.probeSpec.path", p.Path, "must start with /"}
	}
	var err error
	if c.Port, err = parsePort(p.Port, defaultProbePort); err != nil {
		return c, &FieldError{"spec.probeSpec.port", p.Port, err.Error()}
	}
	if c.Period, err = parseDuration(p.Period, defaultProbePeriod); err != nil {
		return c, &FieldError{"spec.probeSpec.period", p.Period, err.Error()}
	}
	if c.Timeout, err = parseDuration(p.Timeout, defaultProbeTimeout); err != nil {
		return c, &FieldError{"spec.probeSpec.timeout", p.Timeout, err.Error()}
	}
	if p.FailureThreshold != "" {
		n, err := strconv.Atoi(p.FailureThreshold)
		if err != nil || n < 1 {
			return c, &FieldError{"spec.probeSpec.failureThreshold", p.FailureThreshold, "must be an integer >= 1"}
		}
		c.FailureThreshold = n
	}
	return c, nil
}

// parseSelector: as in Linkerd, a nil or empty selector selects nothing
// (#11309), never everything.
func parseSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		return labels.Nothing(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, &FieldError{"spec.selector", metav1.FormatLabelSelector(ls), err.Error()}
	}
	return sel, nil
}

func parsePort(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("must be a port number 1-65535")
	}
	return n, nil
}

// parseDuration accepts Go durations and, like Linkerd's CLI which turns the
// gateway annotation "3" into "3s", bare integers as seconds.
func parseDuration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		s = strconv.Itoa(n) + "s"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("must be a positive duration such as 3s")
	}
	return d, nil
}
