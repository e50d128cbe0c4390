package kube

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

// NodeName is the node that CreateReadyPod binds pods to. The cluster has
// no kubelet; the node object only exists because the EndpointSlice
// controller skips pods whose node it cannot find.
const NodeName = "node-0"

// CreateReadyPod does what scheduler and kubelet would: it creates pod bound
// to NodeName (creating that node when missing) and sets its status to Running
// and Ready with address ip, so the controller manager puts it into the
// EndpointSlices of Services that select it. The ServiceAccount admission
// plugin refuses pods until the namespace's default ServiceAccount exists, so
// creation is retried for a while in a new namespace.
func (c *Cluster) CreateReadyPod(ctx context.Context, pod *corev1.Pod, ip netip.Addr) (*corev1.Pod, error) {
	if err := c.ensureNode(ctx); err != nil {
		return nil, err
	}
	pod = pod.DeepCopy()
	pod.Spec.NodeName = NodeName
	var created *corev1.Pod
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		created, last = c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if apierrors.IsForbidden(last) || apierrors.IsServerTimeout(last) { // default ServiceAccount not there yet
			return false, nil
		}
		return last == nil, last
	})
	if err != nil {
		return nil, fmt.Errorf("kube: %s: create pod %s/%s: %w (last: %v)", c.Name, pod.Namespace, pod.Name, err, last)
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    ip.String(),
		HostIPs:   []corev1.HostIP{{IP: ip.String()}},
		PodIP:     ip.String(),
		PodIPs:    []corev1.PodIP{{IP: ip.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	updated, err := c.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: %s: pod %s/%s status: %w", c.Name, pod.Namespace, pod.Name, err)
	}
	return updated, nil
}

func (c *Cluster) ensureNode(ctx context.Context) error {
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   NodeName,
		Labels: map[string]string{corev1.LabelHostname: NodeName},
	}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kube: %s: create node: %w", c.Name, err)
	}
	// The controller manager updates a new node too (taints, CIDRs): on a
	// conflict, mark the latest version ready.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		now := metav1.Now()
		node.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: now,
			Reason: "KubeletReady", Message: "no kubelet: marked ready by the test harness",
		}}
		_, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if latest, gerr := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{}); gerr == nil {
				node = latest
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("kube: %s: node status: %w", c.Name, err)
	}
	return nil
}
