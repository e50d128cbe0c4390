package proxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBytesSpliced(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	if got := m.BytesSpliced(); got != 0 {
		t.Fatalf("fresh metrics: %d bytes", got)
	}
	m.bytes.WithLabelValues(Ingress, "to_upstream").Add(100)
	m.bytes.WithLabelValues(Ingress, "to_client").Add(20)
	m.bytes.WithLabelValues(Egress, "to_upstream").Add(3)
	if got := m.BytesSpliced(); got != 123 {
		t.Errorf("BytesSpliced = %d, want 123 (every direction and flow)", got)
	}
}
