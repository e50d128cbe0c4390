package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

const (
	exportLabel = "mirror.linkerd.io/exported"
	linkName    = "east" // the Link's cluster name: mirrors are <svc>-east
)

// What the churner does to a service.
type churnOp int

const (
	opNone churnOp = iota
	opCreate
	opPorts    // new port numbers and count
	opLabels   // new values of labels that the mirror copies
	opUnexport // drop the export label: the mirror must go
	opExport   // put it back: the mirror must come back
	opDelete
	numOps
)

var opNames = [numOps]string{"none", "create", "ports", "labels", "unexport", "export", "delete"}

// churner creates, updates, unexports and deletes n services in east, in
// rounds. Its choices come from one seeded generator, so a failing run can
// be replayed; a write that fails (not the gateway's doing, but the API
// server's under load) resyncs that service from the server.
type churner struct {
	client    kubernetes.Interface
	ns        string
	rng       *rand.Rand
	svcs      []*corev1.Service // by index; nil while absent
	rounds    int
	ops       [numOps]int
	mu        sync.Mutex // guards writeErrs, firstErr
	writeErrs int
	firstErr  error
}

func newChurner(client kubernetes.Interface, ns string, n int, seed uint64) *churner {
	return &churner{client: client, ns: ns, rng: rand.New(rand.NewPCG(seed, seed)), svcs: make([]*corev1.Service, n)}
}

func churnName(i int) string { return fmt.Sprintf("churn-%03d", i) }

// next picks what to do to a service in its current state.
func (c *churner) next(s *corev1.Service) churnOp {
	p := c.rng.IntN(100)
	switch {
	case s == nil:
		return opCreate
	case s.Labels[exportLabel] != "true":
		return []churnOp{opExport, opExport, opExport, opPorts, opDelete}[p%5]
	case p < 35:
		return opPorts
	case p < 60:
		return opLabels
	case p < 75:
		return opUnexport
	case p < 90:
		return opDelete
	}
	return opNone
}

// ports are one to three ports picked from a small range, so that updates
// both move and reuse numbers.
func (c *churner) ports() []corev1.ServicePort {
	nums := c.rng.Perm(40)[:1+c.rng.IntN(3)]
	slices.Sort(nums)
	var out []corev1.ServicePort
	for i, n := range nums {
		port := int32(9000 + n)
		out = append(out, corev1.ServicePort{Name: "p" + strconv.Itoa(i), Port: port, TargetPort: intstr.FromInt32(port)})
	}
	return out
}

// round applies one operation to every service, eight writes at a time.
func (c *churner) round(ctx context.Context) {
	c.rounds++
	type job struct {
		i  int
		op churnOp
		s  *corev1.Service // the object to write, prepared here: the generator is not shared
	}
	var jobs []job
	for i, cur := range c.svcs {
		op := c.next(cur)
		c.ops[op]++
		var s *corev1.Service
		if cur != nil {
			s = cur.DeepCopy()
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
		}
		switch op {
		case opCreate:
			s = &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: churnName(i), Namespace: c.ns,
					Labels: map[string]string{exportLabel: "true", "soak.mcgate.io/born": strconv.Itoa(c.rounds)}},
				Spec: corev1.ServiceSpec{Ports: c.ports()},
			}
		case opPorts:
			s.Spec.Ports = c.ports()
		case opLabels:
			s.Labels["soak.mcgate.io/round"] = strconv.Itoa(c.rounds)
			s.Labels["tier"] = []string{"web", "db", "cache"}[c.rng.IntN(3)]
		case opUnexport:
			delete(s.Labels, exportLabel)
		case opExport:
			s.Labels[exportLabel] = "true"
		case opNone:
			continue
		}
		jobs = append(jobs, job{i, op, s})
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.svcs[j.i] = c.write(ctx, j.i, j.op, j.s)
		})
	}
	wg.Wait()
}

// write applies op and returns the service as it now is in east.
func (c *churner) write(ctx context.Context, i int, op churnOp, s *corev1.Service) *corev1.Service {
	api := c.client.CoreV1().Services(c.ns)
	var (
		out *corev1.Service
		err error
	)
	switch op {
	case opCreate:
		out, err = api.Create(ctx, s, metav1.CreateOptions{})
	case opDelete:
		if err = api.Delete(ctx, s.Name, metav1.DeleteOptions{}); err == nil || apierrors.IsNotFound(err) {
			return nil
		}
	default:
		out, err = api.Update(ctx, s, metav1.UpdateOptions{})
	}
	if err == nil {
		return out
	}
	c.mu.Lock()
	c.writeErrs++
	if c.firstErr == nil {
		c.firstErr = fmt.Errorf("%s %s: %w", opNames[op], churnName(i), err)
	}
	c.mu.Unlock()
	out, err = api.Get(ctx, churnName(i), metav1.GetOptions{})
	if err != nil {
		return nil // absent, or unknown: the next round creates, or fails and resyncs again
	}
	return out
}

// deleteAll removes every churned service; the mirror must drop them all.
func (c *churner) deleteAll(ctx context.Context) error {
	for i, s := range c.svcs {
		if s == nil {
			continue
		}
		if err := c.client.CoreV1().Services(c.ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.svcs[i] = nil
	}
	return nil
}

func (c *churner) summary() string {
	var parts []string
	for op := opCreate; op < numOps; op++ {
		parts = append(parts, fmt.Sprintf("%d %s", c.ops[op], opNames[op]))
	}
	return fmt.Sprintf("%d services churned in %d rounds (%s; %d write errors)",
		len(c.svcs), c.rounds, strings.Join(parts, ", "), c.writeErrs)
}

// mirrorsMatch compares west's mirrors of ns with east's exported services
// of ns, as they are now in east: one mirror Service per exported service,
// with its ports and copied labels, one EndpointSlice per mirror with an
// egress port per service port, no egress port used twice, and nothing
// else (no orphan Service or EndpointSlice). It returns how many mirrors
// and egress ports there are, or what differs.
func mirrorsMatch(ctx context.Context, east, west kubernetes.Interface, ns string) (mirrors, egressPorts int, err error) {
	exported, err := east.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: exportLabel + "=true"})
	if err != nil {
		return 0, 0, err
	}
	want := map[string]*corev1.Service{}
	for i := range exported.Items {
		s := &exported.Items[i]
		want[s.Name+"-"+linkName] = s
	}
	present, err := west.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: multicluster.LabelMirroredService + "=true"})
	if err != nil {
		return 0, 0, err
	}
	got := map[string]*corev1.Service{}
	for i := range present.Items {
		got[present.Items[i].Name] = &present.Items[i]
	}
	var diffs []string
	for name, remote := range want {
		m, ok := got[name]
		if !ok {
			diffs = append(diffs, "missing mirror "+name)
			continue
		}
		if a, b := portSet(remote.Spec.Ports), portSet(m.Spec.Ports); a != b {
			diffs = append(diffs, fmt.Sprintf("mirror %s has ports %s, east %s", name, b, a))
		}
		for k, v := range remote.Labels {
			if !strings.HasPrefix(k, "mirror.linkerd.io/") && m.Labels[k] != v {
				diffs = append(diffs, fmt.Sprintf("mirror %s label %s=%q, east %q", name, k, m.Labels[k], v))
			}
		}
	}
	for name := range got {
		if want[name] == nil {
			diffs = append(diffs, "orphan mirror "+name)
		}
	}
	eps, err := west.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	perMirror := map[string]int{}
	egressOwner := map[int32]string{}
	for _, s := range eps.Items {
		owner := s.Labels[discoveryv1.LabelServiceName]
		if s.Labels[discoveryv1.LabelManagedBy] != mirror.ManagedByValue {
			continue
		}
		perMirror[owner]++
		m := want[owner]
		if m == nil {
			diffs = append(diffs, "orphan EndpointSlice "+s.Name+" of "+owner)
			continue
		}
		if len(s.Ports) != len(m.Spec.Ports) {
			diffs = append(diffs, fmt.Sprintf("EndpointSlice %s has %d ports, %s has %d", s.Name, len(s.Ports), owner, len(m.Spec.Ports)))
		}
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			if prev, dup := egressOwner[*p.Port]; dup {
				diffs = append(diffs, fmt.Sprintf("egress port %d used by both %s and %s", *p.Port, prev, owner))
			}
			egressOwner[*p.Port] = owner
		}
	}
	for name := range want {
		if n := perMirror[name]; n != 1 {
			diffs = append(diffs, fmt.Sprintf("%d EndpointSlices for %s, want 1", n, name))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("and %d more", len(diffs)-10))
		}
		return 0, 0, fmt.Errorf("%d mirrors wanted, %d present: %s", len(want), len(got), strings.Join(diffs, "; "))
	}
	return len(want), len(egressOwner), nil
}

// portSet is a comparable rendering of a Service's ports.
func portSet(ps []corev1.ServicePort) string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s:%d", p.Name, p.Port))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
