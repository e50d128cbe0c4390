// Package mirror_test runs the mirror on the real test clusters: a Link
// from west to east, services exported in east, and what west shows for
// them (mirrors, slices, Link status, events, the Lease), through the
// mirror's exported API only. Package mirror keeps the tests that need no
// cluster.
package mirror_test

import (
	"testing"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }
