package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"
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
	// Lower-case ASCII only: strings.ToLower folds some other letters into
	// ASCII ones (the Kelvin sign U+212A becomes 'k'), which would make a
	// name nobody exported read as one that is.
	if !isASCII(host) {
		return Destination{}, fmt.Errorf("%w: not ASCII", errNotServiceName)
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

// ParseAuthority parses an HTTP authority "<svc>.<ns>.svc.<domain>[:port]":
// a port, when there is a colon, is 1 to 65535 in plain digits (no sign, no
// leading zero), and a bracketed host (an IPv6 literal's form) is no service
// name.
func ParseAuthority(authority, clusterDomain string) (Destination, error) {
	if strings.ContainsAny(authority, "[]") {
		return Destination{}, fmt.Errorf("%w: bracketed host", errNotServiceName)
	}
	host, portStr, hasPort := cutPort(authority)
	d, err := ParseServiceName(host, clusterDomain)
	if err != nil {
		return Destination{}, err
	}
	if hasPort {
		if d.Port, err = parsePort(portStr); err != nil {
			return Destination{}, err
		}
	}
	return d, nil
}

// ParseTarget parses an egress target "<svc>.<ns>.svc.<domain>:<port>" of
// any cluster domain (the remote cluster's, which this one does not know)
// and returns it with its domain.
func ParseTarget(target string) (Destination, string, error) {
	host, _, hasPort := cutPort(target)
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	if !hasPort || len(labels) < 4 || !strings.EqualFold(labels[2], "svc") {
		return Destination{}, "", fmt.Errorf("target %q: %w: want <svc>.<ns>.svc.<domain>:<port>", target, errNotServiceName)
	}
	domain := strings.Join(labels[3:], ".")
	d, err := ParseAuthority(target, domain)
	if err != nil {
		return Destination{}, "", fmt.Errorf("target %q: %w", target, err)
	}
	return d, domain, nil
}

// cutPort splits "host:port" at its last colon.
func cutPort(authority string) (host, port string, hasPort bool) {
	i := strings.LastIndexByte(authority, ':')
	if i < 0 {
		return authority, "", false
	}
	return authority[:i], authority[i+1:], true
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
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadPort // strconv.Atoi would take "+8080"
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || s[0] == '0' {
		return 0, errBadPort
	}
	return n, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
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
