package mirror

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// eventComponent is the source of the mirror's Events on Links.
const eventComponent = "mcgate-mirror"

// startEvents starts client-go's event broadcaster for one term as leader:
// it correlates repeated Events (one Event with a count, not thousands of
// objects) and writes them in the background. Its goroutines stop when ctx
// ends or stop is called; an Event being written then is dropped.
func startEvents(ctx context.Context, m *Mirror) (rec record.EventRecorder, stop func()) {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.cfg.Client.CoreV1().Events(m.cfg.Namespace)})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventComponent, Host: m.cfg.Identity}), b.Shutdown
}

// event records a Kubernetes Event on the Link (best effort).
func (c *controller) event(link, typ, reason, msg string) {
	o, ok, _ := c.m.links.GetStore().GetByKey(c.m.cfg.Namespace + "/" + link)
	if !ok {
		return
	}
	c.events.Event(o.(*unstructured.Unstructured), typ, reason, msg)
}
