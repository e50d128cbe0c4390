package deploy

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// Where Linkerd's control plane lives when it is installed (the namespace
// is CheckConfig.LinkerdNamespace).
const (
	linkerdNamespace   = "linkerd"
	linkerdConfig      = "linkerd-config"
	linkerdDestination = "linkerd-destination"
)

// CheckMeshedClients is the name of the check that warns when Linkerd-meshed
// clients would be given mirror endpoints they cannot speak to.
const CheckMeshedClients = "Links suit Linkerd-meshed clients"

// checkMeshedClients warns about Links in egress mode where Linkerd runs.
// An egress-mode mirror's EndpointSlice points at this cluster's gateway on
// a plain-TCP egress port, yet carries mirror.linkerd.io/remote-gateway-
// identity; Linkerd's destination controller turns that annotation into
// "open mTLS to this address with this identity" for every meshed client,
// whose proxy then speaks TLS to a plain-TCP port (README: Meshed clients).
func (c *checker) checkMeshedClients(ctx context.Context) {
	present, err := c.linkerdPresent(ctx)
	if err != nil {
		c.warn(CheckMeshedClients, "cannot tell whether Linkerd runs in this cluster: "+err.Error(),
			"kubectl -n "+c.cfg.LinkerdNamespace+" get configmap "+linkerdConfig)
		return
	}
	var egress []string
	for _, l := range c.links {
		if present && l.Annotations[multicluster.AnnotationEndpointMode] != multicluster.ModeDirect && l.Spec.GatewayAddress != "" {
			egress = append(egress, l.Name)
		}
	}
	if len(egress) == 0 {
		c.add(CheckMeshedClients, nil, "")
		return
	}
	c.warn(CheckMeshedClients,
		fmt.Sprintf("Linkerd runs in this cluster and Link %s is in egress mode: meshed clients of its mirrors get "+
			"the remote gateway's identity for a plain-TCP egress port and their connections fail; unmeshed clients work",
			strings.Join(egress, ", ")),
		meshedClientsFix(c.cfg.Namespace, egress))
}

// meshedClientsFix is the one-line fix for meshed clients: direct mode,
// where mirror endpoints are the remote gateway itself, as with Linkerd
// (unmeshed clients of those mirrors then fail instead).
func meshedClientsFix(namespace string, links []string) string {
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = "link/" + l
	}
	return fmt.Sprintf("if meshed pods call these mirrors: kubectl -n %s annotate --overwrite %s %s=%s",
		namespace, strings.Join(names, " "), multicluster.AnnotationEndpointMode, multicluster.ModeDirect)
}

// linkerdPresent reports whether Linkerd's control plane is installed:
// its config ConfigMap or its destination Deployment exists.
func (c *checker) linkerdPresent(ctx context.Context) (bool, error) {
	_, err := c.cfg.Client.CoreV1().ConfigMaps(c.cfg.LinkerdNamespace).Get(ctx, linkerdConfig, metav1.GetOptions{})
	if err == nil {
		return true, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, err
	}
	_, err = c.cfg.Client.AppsV1().Deployments(c.cfg.LinkerdNamespace).Get(ctx, linkerdDestination, metav1.GetOptions{})
	if err == nil {
		return true, nil
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return false, err
}
