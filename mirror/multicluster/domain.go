package multicluster

import "strings"

// AnnotationClusterDomain on a gateway Service publishes the cluster
// domain its gateway serves (`mcgate gateway --cluster-domain`, which
// `mcgate install --cluster-domain` sets in both places). A gateway refuses
// every name outside its domain (reason bad_target_name), so a Link's
// targetClusterDomain must be this value: `mcgate link` takes it from
// here, and the mirror checks it while the Link lives.
const AnnotationClusterDomain = "mcgate.io/cluster-domain"

// GatewayServiceName is the gateway Service `mcgate install` creates, in
// the namespace that holds the Links.
const GatewayServiceName = "linkerd-gateway"

// GatewayClusterDomain is the cluster domain a gateway Service's
// annotations publish, in the form SameClusterDomain compares, and whether
// they publish one: Linkerd's own gateway, and mcgate's before the
// annotation existed, do not.
func GatewayClusterDomain(annotations map[string]string) (string, bool) {
	d, ok := annotations[AnnotationClusterDomain]
	d = canonicalDomain(d)
	return d, ok && d != ""
}

// SameClusterDomain compares two cluster domains as the gateway compares
// names: ASCII case and a trailing dot do not matter.
func SameClusterDomain(a, b string) bool { return canonicalDomain(a) == canonicalDomain(b) }

func canonicalDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}
