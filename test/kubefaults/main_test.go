// Package kubefaults runs the real mcgate gateway (the mirror inside it) on
// the real test clusters and breaks the Kubernetes side under it: the
// remote API server stopped for a minute, the path to it cut, the local API
// server restarted, etcd compacted so that watches must relist, and the
// leading replica killed under churn. Each test asserts what users rely on:
// no mirror deleted or changed on a failing watch, changes caught up after,
// no relist storm, exactly one mirror Service and EndpointSlice per
// exported service at the end, and traffic kept flowing.
//
// The package has clusters of its own (its own TestMain), so stopping an
// API server here disturbs no other package. Its tests run one after the
// other: every west gateway of a test collects the mirrors of clusters it
// has no Link for, so two tests' gateways must not run at once.
package kubefaults

import (
	"testing"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }
