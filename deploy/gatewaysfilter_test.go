package deploy

import (
	"reflect"
	"testing"
)

// TestFilterGateways: --cluster-name keeps one linked cluster's row; a
// name no Link has is an error, not an empty table.
func TestFilterGateways(t *testing.T) {
	rows := []GatewayStatus{{ClusterName: "east", Alive: true}, {ClusterName: "west"}}
	for _, c := range []struct {
		cluster string
		want    []GatewayStatus
		err     bool
	}{
		{"", rows, false},
		{"west", rows[1:], false},
		{"east", rows[:1], false},
		{"north", nil, true},
	} {
		got, err := FilterGateways(rows, c.cluster)
		if (err != nil) != c.err || !reflect.DeepEqual(got, c.want) {
			t.Errorf("--cluster-name %q: %v, %v", c.cluster, got, err)
		}
	}
}
