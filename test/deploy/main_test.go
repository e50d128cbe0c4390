// Package deploy_test runs the install manifests, `mcgate link`, `check`,
// `gateways`, `unlink` and `uninstall` against the real test clusters
// (package deploy keeps the tests that need no cluster).
package deploy_test

import (
	"testing"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }
