package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// Unlink returns what to delete to remove the Link of cluster from the
// source cluster: the Link, its credentials Secret and its mirror Services
// (their EndpointSlices are owned by them). The gateway deletes a Link's
// mirrors itself when the Link goes; listing them too means they go even
// when no gateway runs. Like Linkerd's unlink, it prints for kubectl delete.
func Unlink(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, namespace, cluster string) ([]*unstructured.Unstructured, error) {
	if namespace == "" {
		namespace = Namespace
	}
	secret := CredentialsSecretName(cluster)
	var out []*unstructured.Unstructured
	u, err := dyn.Resource(multicluster.LinkGVR).Namespace(namespace).Get(ctx, cluster, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("read Link %s/%s: %w", namespace, cluster, err)
	default:
		if s, _, _ := unstructured.NestedString(u.Object, "spec", "clusterCredentialsSecret"); s != "" {
			secret = s
		}
		out = append(out, ref(multicluster.LinkGVR.GroupVersion().String(), "Link", namespace, cluster))
	}
	if _, err := client.CoreV1().Secrets(namespace).Get(ctx, secret, metav1.GetOptions{}); err == nil {
		out = append(out, ref("v1", "Secret", namespace, secret))
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read Secret %s/%s: %w", namespace, secret, err)
	}
	svcs, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{
		LabelSelector: multicluster.LabelMirroredService + "=true," + multicluster.LabelClusterName + "=" + cluster})
	if err != nil {
		return nil, fmt.Errorf("list mirror Services of %s: %w", cluster, err)
	}
	for _, s := range svcs.Items {
		out = append(out, ref("v1", "Service", s.Namespace, s.Name))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing to unlink: no Link %s/%s, no Secret %s and no mirrors of cluster %s", namespace, cluster, secret, cluster)
	}
	return out, nil
}

// Uninstall returns what to delete to remove mcgate from a cluster, and
// refuses while Links exist: their mirrors would be left without a gateway.
func Uninstall(ctx context.Context, dyn dynamic.Interface) ([]*unstructured.Unstructured, error) {
	links, err := dyn.Resource(multicluster.LinkGVR).Namespace("").List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err): // no CRD: no Links
	case err != nil:
		return nil, fmt.Errorf("list Links: %w", err)
	case len(links.Items) > 0:
		var names []string
		for _, l := range links.Items {
			names = append(names, l.GetNamespace()+"/"+l.GetName())
		}
		slices.Sort(names)
		return nil, fmt.Errorf("please unlink these clusters before uninstalling (mcgate unlink --cluster-name <name> | kubectl delete -f -): %s",
			strings.Join(names, ", "))
	}
	objs, err := Render(Options{})
	if err != nil {
		return nil, err
	}
	// Reverse apply order: the namespace (and what is in it) last.
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		out = append(out, ref(o.GetAPIVersion(), o.GetKind(), o.GetNamespace(), o.GetName()))
	}
	return out, nil
}

// ref is an object reduced to what kubectl delete -f needs.
func ref(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetName(name)
	if namespace != "" {
		u.SetNamespace(namespace)
	}
	return u
}
