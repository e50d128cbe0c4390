package mirror

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	leader     prometheus.Gauge
	endpoints  *prometheus.GaugeVec   // service_mirror_endpoints{cluster,service}
	repairs    *prometheus.CounterVec // service_mirror_endpoint_repairs{target_cluster_name}
	writes     *prometheus.CounterVec // mirror_writes_total{resource,op}
	reconciles *prometheus.CounterVec // mirror_reconciles_total{result}
	connected  *prometheus.GaugeVec   // mirror_remote_connected{cluster}
	egressUsed prometheus.Gauge

	domainMismatch *prometheus.GaugeVec // mirror_link_cluster_domain_mismatch{cluster}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_leader",
			Help: "1 while this replica holds the mirror Lease and writes mirrors."}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "service_mirror_endpoints",
			Help: "Ready endpoints written for a mirrored service."}, []string{"cluster", "service"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "service_mirror_endpoint_repairs",
			Help: "Periodic re-resolutions and full re-checks of a Link's mirrors."}, []string{"target_cluster_name"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mirror_writes_total",
			Help: "Writes to the local API server."}, []string{"resource", "op"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mirror_reconciles_total",
			Help: "Reconciles of mirror keys by result."}, []string{"result"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mirror_remote_connected",
			Help: "1 when the Link's cluster watcher runs with working credentials and can list and watch the cluster."}, []string{"cluster"}),
		domainMismatch: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mirror_link_cluster_domain_mismatch",
			Help: "1 while the Link's targetClusterDomain is not the cluster domain its cluster's gateway Service publishes (mcgate.io/cluster-domain): that gateway would refuse every connection, and no new mirrors are written."}, []string{"cluster"}),
		egressUsed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_egress_ports_in_use",
			Help: "Egress ports allocated to mirrored service ports."}),
	}
	for _, c := range []prometheus.Collector{m.leader, m.endpoints, m.repairs, m.writes, m.reconciles, m.connected, m.domainMismatch, m.egressUsed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mirror: register metrics: %w", err)
		}
	}
	return m, nil
}
