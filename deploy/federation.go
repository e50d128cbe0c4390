package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// The federated Service's metadata, as Linkerd's service mirror writes it
// (reference §federated services) and mcgate keeps it.
const (
	federatedSuffix           = "-federated"
	annotationRemoteDiscovery = "multicluster.linkerd.io/remote-discovery"
	annotationLocalDiscovery  = "multicluster.linkerd.io/local-discovery"
	annotationClusterWeights  = "mcgate.io/cluster-weights"
	annotationEgressPorts     = "mcgate.io/egress-ports"
)

// FederatedStatus is one federated Service of this cluster: who serves it.
type FederatedStatus struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	// Members are the clusters with a member, this cluster's first as
	// "local" when it is one, then the linked clusters by name.
	Members []string `json:"members"`
	// Weights is mcgate.io/cluster-weights, "" when the choice is by
	// locality and latency.
	Weights string `json:"weights,omitempty"`
	// EgressPorts is mcgate.io/egress-ports: where this cluster's gateway
	// listens for it ("" until the mirror has allocated them).
	EgressPorts string `json:"egressPorts"`
}

// isFederated tells a federated Service from a mirror: the mirrored-service
// label without a cluster name, and Linkerd's discovery annotations.
func isFederated(s *corev1.Service) bool {
	if s.Labels[multicluster.LabelMirroredService] != "true" || s.Labels[multicluster.LabelClusterName] != "" {
		return false
	}
	_, remote := s.Annotations[annotationRemoteDiscovery]
	_, local := s.Annotations[annotationLocalDiscovery]
	return strings.HasSuffix(s.Name, federatedSuffix) && (remote || local)
}

// remoteMembers parses "svc@east,svc@north" into its clusters, sorted.
func remoteMembers(v string) []string {
	var out []string
	for _, m := range strings.Split(v, ",") {
		if _, c, ok := strings.Cut(strings.TrimSpace(m), "@"); ok && c != "" {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// FederatedServices lists this cluster's federated Services.
func FederatedServices(ctx context.Context, client kubernetes.Interface) ([]FederatedStatus, error) {
	svcs, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{
		LabelSelector: multicluster.LabelMirroredService + "=true," + "!" + multicluster.LabelClusterName})
	if err != nil {
		return nil, fmt.Errorf("list federated Services: %w", err)
	}
	var out []FederatedStatus
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if !isFederated(s) {
			continue
		}
		st := FederatedStatus{Namespace: s.Namespace, Service: s.Name,
			Weights: s.Annotations[annotationClusterWeights], EgressPorts: s.Annotations[annotationEgressPorts]}
		if s.Annotations[annotationLocalDiscovery] != "" {
			st.Members = append(st.Members, "local")
		}
		st.Members = append(st.Members, remoteMembers(s.Annotations[annotationRemoteDiscovery])...)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b FederatedStatus) int {
		return strings.Compare(a.Namespace+"/"+a.Service, b.Namespace+"/"+b.Service)
	})
	return out, nil
}

// addFederation fills each gateway row's count of federated Services the
// cluster is a member of, and its endpoints the gateway has ejected
// (mcgate_ejected_endpoints{cluster}, from the same scrape).
func addFederation(rows []GatewayStatus, fed []FederatedStatus, fams map[string]*dto.MetricFamily) {
	for i := range rows {
		c := rows[i].ClusterName
		for _, f := range fed {
			if slices.Contains(f.Members, c) {
				rows[i].FederatedServices++
			}
		}
		if v, ok := gauge(fams["mcgate_ejected_endpoints"], "cluster", c); ok {
			rows[i].EjectedEndpoints = int(v)
		}
	}
}

// WriteFederated prints the federated Services under the gateways table;
// nothing when there are none, so a cluster without federation sees
// Linkerd's table alone.
func WriteFederated(w io.Writer, rows []FederatedStatus) error {
	if len(rows) == 0 {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\n%-40s %-24s %-20s %s\n", "FEDERATED SERVICE", "MEMBERS", "WEIGHTS", "EGRESS_PORTS")
	for _, r := range rows {
		weights := r.Weights
		if weights == "" {
			weights = "local,nearest"
		}
		fmt.Fprintf(&b, "%-40s %-24s %-20s %s\n", r.Namespace+"/"+r.Service, strings.Join(r.Members, ","), weights, r.EgressPorts)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// checkFederated: every federated Service has its egress ports and ready
// endpoints (the local gateway's), its members are linked clusters, and its
// weights name members. A cluster without federation passes with nothing
// to check.
func (c *checker) checkFederated(ctx context.Context) {
	fed, err := FederatedServices(ctx, c.cfg.Client)
	if err != nil {
		c.add("federated services are served", err, "check the RBAC of the account running check: it lists Services in every namespace")
		return
	}
	linked := map[string]bool{"local": true}
	for _, l := range c.links {
		linked[l.Spec.TargetClusterName] = true
	}
	var bad []string
	for _, f := range fed {
		name := f.Namespace + "/" + f.Service
		if f.EgressPorts == "" {
			bad = append(bad, name+": no egress ports yet (annotation "+annotationEgressPorts+"): is the gateway leading? kubectl -n "+c.cfg.Namespace+" get lease")
			continue
		}
		if n, err := readyEndpoints(ctx, c.cfg.Client, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: f.Namespace, Name: f.Service}}); err != nil || n == 0 {
			bad = append(bad, fmt.Sprintf("%s: no ready endpoint (the local gateway's addresses): %v", name, err))
		}
		for _, m := range f.Members {
			if !linked[m] {
				bad = append(bad, fmt.Sprintf("%s: member cluster %s has no Link", name, m))
			}
		}
		for _, w := range strings.Split(f.Weights, ",") {
			cl, _, _ := strings.Cut(strings.TrimSpace(w), "=")
			// A name that is no linked cluster can only be this cluster's
			// own (check does not know it): fine when it is a member.
			localName := !linked[cl] && slices.Contains(f.Members, "local")
			if cl != "" && !slices.Contains(f.Members, cl) && !localName {
				bad = append(bad, fmt.Sprintf("%s: %s names cluster %s, which is not a member", name, annotationClusterWeights, cl))
			}
		}
	}
	c.add("federated services are served", many(bad),
		"kubectl get svc,endpointslices -n <ns> <svc>-federated; mcgate gateways shows members and ejected endpoints")
}
