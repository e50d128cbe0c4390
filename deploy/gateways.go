package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// GatewayStatus is one line of `mcgate gateways`: a linked cluster's
// gateway as this cluster's gateway sees it. Latencies are of successful
// probes since the gateway started, in milliseconds; -1 when unknown.
type GatewayStatus struct {
	ClusterName      string  `json:"clusterName"`
	Alive            bool    `json:"alive"`
	NumberOfServices int     `json:"numberOfServices"`
	LatencyP50       float64 `json:"latencyP50Ms"`
	LatencyP95       float64 `json:"latencyP95Ms"`
	LatencyP99       float64 `json:"latencyP99Ms"`
	// FederatedServices counts this cluster's federated Services the
	// linked cluster is a member of; EjectedEndpoints its gateway addresses
	// that outlier detection has taken out of the choice for now.
	FederatedServices int `json:"numberOfFederatedServices"`
	EjectedEndpoints  int `json:"ejectedEndpoints"`
}

// LabelComponent selects the gateway pods (Linkerd's label, kept so its
// scrape configs work).
const LabelComponent = "linkerd.io/control-plane-component"

// Gateways joins the Links of namespace, the count of their mirror
// Services and a gateway's /metrics text into one status per cluster.
func Gateways(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, namespace string, metrics []byte) ([]GatewayStatus, error) {
	if namespace == "" {
		namespace = Namespace
	}
	fams, err := parseMetrics(metrics)
	if err != nil {
		return nil, err
	}
	links, err := dyn.Resource(multicluster.LinkGVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Links in %s: %w", namespace, err)
	}
	var out []GatewayStatus
	for _, u := range links.Items {
		l, err := multicluster.LinkFromUnstructured(&u)
		if err != nil {
			return nil, err
		}
		c := l.Spec.TargetClusterName
		svcs, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{
			LabelSelector: multicluster.LabelMirroredService + "=true," + multicluster.LabelClusterName + "=" + c})
		if err != nil {
			return nil, fmt.Errorf("list mirror Services of %s: %w", c, err)
		}
		st := GatewayStatus{ClusterName: c, NumberOfServices: len(svcs.Items), LatencyP50: -1, LatencyP95: -1, LatencyP99: -1}
		if v, ok := gauge(fams["gateway_alive"], "target_cluster_name", c); ok {
			st.Alive = v == 1
		}
		if h := histogram(fams["gateway_probe_latency_ms"], "target_cluster_name", c); h != nil && h.GetSampleCount() > 0 {
			st.LatencyP50, st.LatencyP95, st.LatencyP99 = quantile(h, 0.5), quantile(h, 0.95), quantile(h, 0.99)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClusterName < out[j].ClusterName })
	fed, err := FederatedServices(ctx, client)
	if err != nil {
		return nil, err
	}
	addFederation(out, fed, fams)
	return out, nil
}

// FilterGateways keeps the row of cluster (`--cluster-name`); "" keeps all.
// A cluster no Link names is an error, not an empty table.
func FilterGateways(rows []GatewayStatus, cluster string) ([]GatewayStatus, error) {
	if cluster == "" {
		return rows, nil
	}
	for _, r := range rows {
		if r.ClusterName == cluster {
			return []GatewayStatus{r}, nil
		}
	}
	return nil, fmt.Errorf("no Link to a cluster named %q", cluster)
}

// WriteGateways prints the table of the Linkerd CLI.
func WriteGateways(w io.Writer, rows []GatewayStatus) error {
	var b bytes.Buffer
	// Linkerd's columns first, in its order, so scripts reading them keep
	// working; federation's two after them.
	fmt.Fprintf(&b, "%-12s %-6s %-8s %-12s %-12s %-12s %-10s %s\n", "CLUSTER", "ALIVE", "NUM_SVC", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "FEDERATED", "EJECTED")
	ms := func(v float64, alive bool) string {
		if v < 0 || !alive {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', -1, 64) + "ms"
	}
	for _, r := range rows {
		alive := "False"
		if r.Alive {
			alive = "True"
		}
		fmt.Fprintf(&b, "%-12s %-6s %-8d %-12s %-12s %-12s %-10d %d\n", r.ClusterName, alive, r.NumberOfServices,
			ms(r.LatencyP50, r.Alive), ms(r.LatencyP95, r.Alive), ms(r.LatencyP99, r.Alive), r.FederatedServices, r.EjectedEndpoints)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// ScrapeAdmin reads /metrics from a gateway admin address (host:port).
func ScrapeAdmin(ctx context.Context, addr string) ([]byte, error) {
	return httpGet(ctx, "http://"+addr+"/metrics")
}

// AdminReady asks a gateway admin address (host:port) for /ready.
func AdminReady(ctx context.Context, addr string) error {
	_, err := httpGet(ctx, "http://"+addr+"/ready")
	return err
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// ScrapePod reads /metrics of a gateway pod through the API server's pod
// proxy: the holder of the mirror Lease when it is a gateway pod (it
// writes the mirrors), else the first ready gateway pod.
func ScrapePod(ctx context.Context, client kubernetes.Interface, namespace string) ([]byte, string, error) {
	if namespace == "" {
		namespace = Namespace
	}
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelComponent + "=gateway"})
	if err != nil {
		return nil, "", fmt.Errorf("list gateway pods in %s: %w", namespace, err)
	}
	var ready []string
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = append(ready, p.Name)
			}
		}
	}
	if len(ready) == 0 {
		return nil, "", fmt.Errorf("no ready gateway pod (label %s=gateway) in %s: kubectl -n %s get pods; or give --admin-addr", LabelComponent, namespace, namespace)
	}
	pod := ready[0]
	if l, err := client.CoordinationV1().Leases(namespace).Get(ctx, multicluster.LeaseName, metav1.GetOptions{}); err == nil &&
		l.Spec.HolderIdentity != nil && slices.Contains(ready, multicluster.HolderName(*l.Spec.HolderIdentity)) {
		pod = multicluster.HolderName(*l.Spec.HolderIdentity)
	}
	b, err := client.CoreV1().Pods(namespace).ProxyGet("http", pod, "4191", "/metrics", nil).DoRaw(ctx)
	if err != nil {
		return nil, pod, fmt.Errorf("metrics of pod %s/%s through the API server: %w", namespace, pod, err)
	}
	return b, pod, nil
}

func parseMetrics(b []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse gateway metrics: %w", err)
	}
	return fams, nil
}

func find(f *dto.MetricFamily, label, value string) *dto.Metric {
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m
			}
		}
	}
	return nil
}

func gauge(f *dto.MetricFamily, label, value string) (float64, bool) {
	m := find(f, label, value)
	if m == nil || m.GetGauge() == nil {
		return 0, false
	}
	return m.GetGauge().GetValue(), true
}

func histogram(f *dto.MetricFamily, label, value string) *dto.Histogram {
	if m := find(f, label, value); m != nil {
		return m.GetHistogram()
	}
	return nil
}

// quantile interpolates linearly within the bucket holding rank q, as
// Prometheus's histogram_quantile does; above the last finite bound it
// returns that bound.
func quantile(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, count := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if math.IsInf(upper, 1) {
			break
		}
		if count >= rank {
			if count == below {
				return upper
			}
			return math.Round((lower+(upper-lower)*(rank-below)/(count-below))*100) / 100
		}
		lower, below = upper, count
	}
	return lower
}
