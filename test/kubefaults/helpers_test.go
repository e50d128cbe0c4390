package kubefaults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// metricFamilies parses a Prometheus text exposition.
func metricFamilies(b []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// sum adds up the counters and gauges (a histogram: its sample count) of
// name whose labels include want.
func sum(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	mf := mfs[name]
	if mf == nil {
		return 0
	}
next:
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return total
}

// apiCounts are requests an API server counted since it started.
type apiCounts struct {
	// Lists and Watches are the west mirror's LIST and WATCH requests,
	// singled out by its FlowSchemas (see prepare). The WATCHes include its
	// relists: client-go lists through a watch that sends initial events.
	Lists, Watches float64
	// WatchLists are such relisting watches of services and endpointslices
	// by any client (controller manager, gateways); the test's own reads
	// are plain LISTs and not among them.
	WatchLists float64
}

func (a apiCounts) String() string {
	return fmt.Sprintf("mirror LIST %.0f, mirror WATCH %.0f; watch-lists of services and endpointslices (all clients) %.0f",
		a.Lists, a.Watches, a.WatchLists)
}

func (a apiCounts) minus(b apiCounts) apiCounts {
	return apiCounts{a.Lists - b.Lists, a.Watches - b.Watches, a.WatchLists - b.WatchLists}
}

// readAPICounts reads c's /metrics with its admin client.
func readAPICounts(t *testing.T, c *kubetest.Cluster) apiCounts {
	t.Helper()
	b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("%s /metrics: %v", c.Name, err)
	}
	mfs, err := metricFamilies(b)
	if err != nil {
		t.Fatalf("%s /metrics: %v", c.Name, err)
	}
	const dispatched, watchLists = "apiserver_flowcontrol_dispatched_requests_total", "apiserver_watch_list_duration_seconds"
	return apiCounts{
		Lists:   sum(mfs, dispatched, map[string]string{"flow_schema": mirrorListFlow}),
		Watches: sum(mfs, dispatched, map[string]string{"flow_schema": mirrorWatchFlow}),
		WatchLists: sum(mfs, watchLists, map[string]string{"resource": "services"}) +
			sum(mfs, watchLists, map[string]string{"resource": "endpointslices"}),
	}
}

// gatewayMetric reads name{labels} from a gateway's admin /metrics on
// host (kubetest.HostIP); -1 if it cannot be read.
func gatewayMetric(host int, name string, labels map[string]string) float64 {
	mfs := gatewayScrape(host)
	if mfs == nil {
		return -1
	}
	return sum(mfs, name, labels)
}

// gatewayScrape reads a gateway's admin /metrics on host (kubetest.HostIP);
// nil if they cannot be read.
func gatewayScrape(host int) map[string]*dto.MetricFamily {
	resp, err := http.Get("http://" + kubetest.HostIP(host).String() + ":4191/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	mfs, err := metricFamilies(b)
	if err != nil {
		return nil
	}
	return mfs
}

// credentials returns the Link's Credentials condition in west.
func (f *fixture) credentials(ctx context.Context) (*metav1.Condition, error) {
	u, err := f.dyn.Resource(multicluster.LinkGVR).Namespace(deploy.Namespace).Get(ctx, f.cluster, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	l, err := multicluster.LinkFromUnstructured(u)
	if err != nil {
		return nil, err
	}
	for i := range l.Status.Conditions {
		if l.Status.Conditions[i].Type == multicluster.ConditionCredentials {
			return &l.Status.Conditions[i], nil
		}
	}
	return nil, nil
}

// watchReported waits until west's gateway on host and the Link's status
// agree that the watch of east is failing (failing) or working (!failing).
func (f *fixture) watchReported(host int, failing bool, within time.Duration) {
	f.t.Helper()
	want, status := 1.0, metav1.ConditionTrue
	if failing {
		want, status = 0, metav1.ConditionUnknown
	}
	what := fmt.Sprintf("mirror_remote_connected{cluster=%s}=%v and Credentials=%s", f.cluster, want, status)
	var last string
	// A read of the Link that hangs ends with the wait.
	deadlineCtx, cancel := context.WithTimeout(f.t.Context(), within)
	defer cancel()
	wait.Within(f.t, within, what, func() (bool, string) {
		got := gatewayMetric(host, "mirror_remote_connected", map[string]string{"cluster": f.cluster})
		c, err := f.credentials(deadlineCtx)
		last = fmt.Sprintf("metric %v, condition %+v, %v", got, c, err)
		return got == want && c != nil && c.Status == status, last
	})
	f.t.Logf("%s: %s", what, last)
}
