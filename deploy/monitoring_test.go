package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

// identityMetrics returns the names of the metrics an identity source
// serves, as the gateway registers them on its admin /metrics.
func identityMetrics(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	dir := testpki.New(t).IdentityDir(t, "linkerd-gateway", Namespace)
	if _, err := identity.NewFileSource(identity.FileSourceConfig{Dir: dir, Log: zerolog.Nop(), Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	return names
}

var identityMetricName = regexp.MustCompile(`\bidentity_[a-z_]+`)

// checkServed fails t for each identity_* metric in expr that the gateway
// does not serve.
func checkServed(t *testing.T, where, expr string, served []string) {
	t.Helper()
	for _, m := range identityMetricName.FindAllString(expr, -1) {
		if !slices.Contains(served, m) {
			t.Errorf("%s: %s is not served by the gateway (it serves %v)", where, m, served)
		}
	}
}

// TestAlertRules: alerts.yaml is a Prometheus rule file whose rules watch
// the leaf expiry gauge the gateway serves, warning at the gateway's own
// window and critical a week ahead.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type rule struct {
		Alert       string            `yaml:"alert"`
		Expr        string            `yaml:"expr"`
		For         string            `yaml:"for"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error, as in promtool
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	served := identityMetrics(t)
	if !slices.Contains(served, identity.LeafExpiryMetric) {
		t.Fatalf("the gateway does not serve %s: %v", identity.LeafExpiryMetric, served)
	}
	want := map[string]struct {
		severity string
		window   time.Duration
	}{
		"McgateLeafExpiresSoon":     {"warning", identity.DefaultLeafExpiryWarning},
		"McgateLeafExpiresVerySoon": {"critical", 7 * 24 * time.Hour},
	}
	seen := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			w, ok := want[r.Alert]
			if !ok {
				t.Errorf("unexpected rule %q", r.Alert)
				continue
			}
			seen[r.Alert] = true
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			days := int(w.window / (24 * time.Hour))
			if r.Expr != identity.LeafExpiryMetric+" - time() < "+strconv.Itoa(days)+" * 24 * 3600" {
				t.Errorf("%s: expr %q, want the gauge within %d days", r.Alert, r.Expr, days)
			}
			checkServed(t, r.Alert, r.Expr, served)
			if r.Labels["severity"] != w.severity || r.Annotations["summary"] == "" ||
				!strings.Contains(r.Annotations["description"], "Renew") {
				t.Errorf("%s: labels %v, annotations %v", r.Alert, r.Labels, r.Annotations)
			}
		}
	}
	if len(seen) != len(want) {
		t.Errorf("rules %v, want %v", seen, want)
	}
}

// TestDashboardLeafPanel: the dashboard shows each pod's time left on its
// leaf from the gauge the gateway serves.
func TestDashboardLeafPanel(t *testing.T) {
	b, err := os.ReadFile("monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	served := identityMetrics(t)
	found := false
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			checkServed(t, p.Title, tg.Expr, served)
			if p.Title == "Leaf certificate expires in" {
				found = tg.Expr == "min by (pod) ("+identity.LeafExpiryMetric+") - time()"
			}
		}
	}
	if !found {
		t.Error("no panel \"Leaf certificate expires in\" with min by (pod) of the leaf expiry gauge minus time()")
	}
}
