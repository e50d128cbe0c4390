package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Name-parsing errors; each maps to a refusal reason.
var (
	errNotServiceName = errors.New("not a service name of this cluster")
	errBadPort        = errors.New("port out of range 1-65535")
)

const maxDNSName = 253

// ParseServiceName parses a service host name of this cluster:
//
//	<svc>.<ns>.svc.<clusterDomain>                      (port 0: the only port)
//	outbound_.<port>_._.<svc>.<ns>.svc.<clusterDomain>  (Linkerd/Envoy SNI form)
//
// Matching is case-insensitive and a single trailing dot (a fully qualified
// name) is accepted. Anything else, including names of other domains, empty
// labels and labels that are not RFC 1123, is refused: a name must never be
// able to reach something nobody exported.
func ParseServiceName(host, clusterDomain string) (Destination, error) {
	if len(host) > maxDNSName+1 {
		return Destination{}, fmt.Errorf("%w: name longer than %d bytes", errNotServiceName, maxDNSName)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	domain := strings.ToLower(strings.TrimSuffix(clusterDomain, "."))
	port := 0
	if rest, ok := strings.CutPrefix(host, "outbound_."); ok {
		p, svcName, ok := strings.Cut(rest, "_._.")
		if !ok {
			return Destination{}, fmt.Errorf("%w: malformed outbound_ name", errNotServiceName)
		}
		n, err := parsePort(p)
		if err != nil {
			return Destination{}, err
		}
		port, host = n, svcName
	}
	base, ok := strings.CutSuffix(host, ".svc."+domain)
	if !ok {
		return Destination{}, fmt.Errorf("%w: want <svc>.<ns>.svc.%s", errNotServiceName, domain)
	}
	svc, ns, ok := strings.Cut(base, ".")
	if !ok || !isDNSLabel(svc) || !isDNSLabel(ns) {
		return Destination{}, fmt.Errorf("%w: want <svc>.<ns>.svc.%s", errNotServiceName, domain)
	}
	return Destination{Service: svc, Namespace: ns, Port: port}, nil
}

// ParseAuthority parses an HTTP authority "<svc>.<ns>.svc.<domain>[:port]".
func ParseAuthority(authority, clusterDomain string) (Destination, error) {
	host, portStr, err := net.SplitHostPort(authority)
	if err != nil {
		// No port: the whole authority is the host.
		host, portStr = authority, ""
	}
	d, err := ParseServiceName(host, clusterDomain)
	if err != nil {
		return Destination{}, err
	}
	if portStr != "" {
		if d.Port, err = parsePort(portStr); err != nil {
			return Destination{}, err
		}
	}
	return d, nil
}

// OutboundServerName is the SNI an egress connection sends for a target
// "<fqdn>:<port>": outbound_.<port>_._.<fqdn>.
func OutboundServerName(target string) (string, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", target, err)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", target, err)
	}
	return "outbound_." + strconv.Itoa(port) + "_._." + strings.TrimSuffix(host, "."), nil
}

func parsePort(s string) (int, error) {
	if len(s) == 0 || len(s) > 5 {
		return 0, errBadPort
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || s[0] == '0' {
		return 0, errBadPort
	}
	return n, nil
}

// isDNSLabel reports whether s is an RFC 1123 label (lower case, as
// Kubernetes names are).
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
