package mirror

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// PortRange is the inclusive range egress listeners are allocated from
// (--egress-ports, default 4200-5199).
type PortRange struct{ Lo, Hi int }

// ParsePortRange parses "lo-hi".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return PortRange{}, fmt.Errorf("egress port range %q: want lo-hi within 1-65535", s)
	}
	return PortRange{a, b}, nil
}

func (r PortRange) contains(p int) bool { return p >= r.Lo && p <= r.Hi }

// FormatEgressPorts renders a service-port → egress-port map as the
// mcgate.io/egress-ports annotation value, "80=4200,443=4201", sorted by
// service port so the value is stable.
func formatEgressPorts(m map[int32]int32) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

// ParseEgressPorts reverses FormatEgressPorts; "" is an empty map.
func ParseEgressPorts(s string) (map[int32]int32, error) {
	m := map[int32]int32{}
	if s == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		a, err1 := strconv.ParseInt(k, 10, 32)
		b, err2 := strconv.ParseInt(v, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("annotation %s: bad entry %q", AnnotationEgressPorts, part)
		}
		m[int32(a)] = int32(b)
	}
	return m, nil
}

// Allocator hands out egress ports, one per (mirror Service, service port);
// the mirror Service's name carries the Link's cluster, so this is one per
// (Link, service, port). It keeps no state of its own across restarts: the
// leader rebuilds it from the annotations on the mirror Services (Claim)
// before it allocates anything, which keeps ports stable across restarts and
// leader changes.
type allocator struct {
	r     PortRange
	mu    sync.Mutex
	owner map[int]string // egress port → key
	ports map[string]int // key → egress port
	next  int            // where the next search starts
}

// NewAllocator returns an empty allocator over r.
func newAllocator(r PortRange) *allocator {
	return &allocator{r: r, owner: map[int]string{}, ports: map[string]int{}, next: r.Lo}
}

// EgressKey names one mirrored service port.
func egressKey(namespace, mirror string, port int32) string {
	return egressPrefix(namespace, mirror) + strconv.Itoa(int(port))
}

// egressPrefix starts the egress keys of every port of one mirror, which
// release takes to free them all.
func egressPrefix(namespace, mirror string) string { return namespace + "/" + mirror + ":" }

// Claim records an existing allocation. It fails, leaving the key without a
// port, when the port is outside the range or already held by another key;
// the caller then asks Assign for a new one.
func (a *allocator) claim(key string, port int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.r.contains(port) {
		return false
	}
	if o, ok := a.owner[port]; ok {
		return o == key
	}
	if old, ok := a.ports[key]; ok {
		delete(a.owner, old)
	}
	a.owner[port] = key
	a.ports[key] = port
	return true
}

// Assign returns the key's port, allocating one when it has none. Ports are
// handed out round-robin from the last allocation rather than lowest-free,
// so a port released by a deleted mirror is not immediately reused by a new
// one while clients may still hold connections to the old listener.
func (a *allocator) assign(key string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.ports[key]; ok {
		return p, nil
	}
	n := a.r.Hi - a.r.Lo + 1
	for i := 0; i < n; i++ {
		p := a.r.Lo + (a.next-a.r.Lo+i)%n
		if _, taken := a.owner[p]; !taken {
			a.owner[p] = key
			a.ports[key] = p
			a.next = p + 1
			if a.next > a.r.Hi {
				a.next = a.r.Lo
			}
			return p, nil
		}
	}
	return 0, fmt.Errorf("egress port range %d-%d exhausted (%d ports in use)", a.r.Lo, a.r.Hi, len(a.owner))
}

// Release frees every port whose key starts with prefix (a mirror's
// "<ns>/<name>:" releases all its ports).
func (a *allocator) release(prefix string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, p := range a.ports {
		if strings.HasPrefix(k, prefix) {
			delete(a.ports, k)
			delete(a.owner, p)
		}
	}
}

// InUse is the number of allocated ports.
func (a *allocator) inUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.owner)
}

// ForMirror returns the egress ports of one mirror's service ports: the
// ones recorded on the existing mirror when still valid, new ones otherwise.
// Ports of service ports that went away are released.
func (a *allocator) forMirror(namespace, mirror string, ports []int32, recorded map[int32]int32) (map[int32]int32, error) {
	out := make(map[int32]int32, len(ports))
	keep := map[string]bool{}
	for _, sp := range ports {
		key := egressKey(namespace, mirror, sp)
		keep[key] = true
		if p, ok := recorded[sp]; ok && a.claim(key, int(p)) {
			out[sp] = p
			continue
		}
		p, err := a.assign(key)
		if err != nil {
			return nil, err
		}
		out[sp] = int32(p)
	}
	a.mu.Lock()
	prefix := namespace + "/" + mirror + ":"
	for k, p := range a.ports {
		if strings.HasPrefix(k, prefix) && !keep[k] {
			delete(a.ports, k)
			delete(a.owner, p)
		}
	}
	a.mu.Unlock()
	return out, nil
}
