package deploy

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/mcgate/mcgate/identity"
)

const leafCheckName = "the gateway's leaf certificate does not expire soon"

// leafEnd is where a leaf's end was read, and the end.
type leafEnd struct {
	source   string // "gateway pod <name>" or "secret <ns>/<name>"
	notAfter time.Time
}

// checkLeafExpiry fails when the local gateway's leaf ends within
// identity.DefaultLeafExpiryWarning, the window in which the gateway warns
// by default. It reads the end twice: from the running gateway (the gauge on
// the admin /metrics of a gateway pod, through the API server), which is
// the leaf in use, and from the identity Secret's tls.crt, which is what the
// gateways load next. A source that cannot be read is left out; with
// neither, nothing is reported: a missing Secret or gateway fails the
// anchor and readiness checks already.
func (c *checker) checkLeafExpiry(ctx context.Context) {
	var ends []leafEnd
	var bad []string
	if metrics, pod, err := ScrapePod(ctx, c.cfg.Client, c.cfg.Namespace); err == nil {
		end, found, err := leafEndFromMetrics(metrics)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("gateway pod %s: %v", pod, err))
		case found:
			ends = append(ends, leafEnd{"gateway pod " + pod, end})
		}
	}
	s, err := c.localIdentity(ctx)
	secret := "secret " + c.cfg.Namespace + "/" + c.cfg.IdentitySecret
	switch {
	case err == nil && len(s.Data[identity.CertFile]) > 0:
		end, err := leafEndFromPEM(s.Data[identity.CertFile])
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %s: %v", secret, identity.CertFile, err))
		} else {
			ends = append(ends, leafEnd{secret, end})
		}
	case err != nil && !apierrors.IsNotFound(err):
		bad = append(bad, err.Error()) // it names the Secret
	}
	if len(ends) == 0 && len(bad) == 0 {
		return
	}
	c.results = append(c.results, leafExpiryResult(ends, bad, time.Now(), identity.DefaultLeafExpiryWarning, c.cfg.Namespace, c.cfg.IdentitySecret))
}

// leafExpiryResult judges the leaf ends read (and the sources that could
// not be read) at now.
func leafExpiryResult(ends []leafEnd, bad []string, now time.Time, window time.Duration, namespace, secret string) CheckResult {
	for _, e := range ends {
		state, left := identity.LeafExpiry(e.notAfter, now, window)
		end := e.notAfter.UTC().Format(time.RFC3339)
		switch state {
		case identity.LeafExpired:
			bad = append(bad, fmt.Sprintf("%s: the leaf expired at %s: peers refuse the gateway", e.source, end))
		case identity.LeafExpiring:
			bad = append(bad, fmt.Sprintf("%s: the leaf expires at %s, in %s (warned %s ahead)",
				e.source, end, roughly(left), roughly(window)))
		}
	}
	r := CheckResult{Name: leafCheckName, OK: len(bad) == 0}
	if !r.OK {
		r.Detail = many(bad).Error()
		r.Hint = "renew it: " + identity.RenewLeafCommand + "; kubectl -n " + namespace + " create secret generic " + secret +
			" --type kubernetes.io/tls --from-file=<dir> --dry-run=client -o yaml | kubectl apply -f - (the gateways reload it without a restart)"
	}
	return r
}

// roughly prints a duration in days and hours, or hours and minutes.
func roughly(d time.Duration) string {
	if d >= 24*time.Hour {
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// leafEndFromMetrics reads identity.LeafExpiryMetric from a gateway's /metrics
// text; found is false when the gateway does not serve it.
func leafEndFromMetrics(b []byte) (notAfter time.Time, found bool, err error) {
	fams, err := parseMetrics(b)
	if err != nil {
		return time.Time{}, false, err
	}
	f := fams[identity.LeafExpiryMetric]
	if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetGauge() == nil {
		return time.Time{}, false, nil
	}
	v := f.GetMetric()[0].GetGauge().GetValue()
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return time.Time{}, false, fmt.Errorf("%s is %v, not a time", identity.LeafExpiryMetric, v)
	}
	return time.Unix(int64(v), 0), true, nil
}

// leafEndFromPEM reads the end of the first certificate of a tls.crt.
func leafEndFromPEM(b []byte) (time.Time, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, errors.New("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}
