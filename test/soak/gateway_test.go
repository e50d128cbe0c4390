package soak

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// gateway is one `mcgate gateway` process with the mirror, on ip: ingress
// on :4143, egress listeners on ip, admin (with pprof, to force a GC
// before measuring the heap) on :4191.
type gateway struct {
	*gatewaytest.Process
	name, ip string
	// admin has no keep-alive: an idle scrape connection would be an open
	// fd of the gateway's in one sample and not in the next.
	admin *http.Client
}

// shownLog is how much of a gateway's log a failure shows, as much as
// StopCleanlyAtCleanup shows: a long soak's whole log would drown it.
const shownLog = 32 << 10

// startGateway starts the gateway of c and waits until it is ready. When
// the test ends it must stop cleanly within 30 s of SIGTERM: a race
// detected in a -race build shows as exit status 66.
func startGateway(t *testing.T, c *kubetest.Cluster, ip, identityDir string) *gateway {
	t.Helper()
	g := &gateway{name: c.Name, ip: ip,
		admin: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		Process: &gatewaytest.Process{T: t, Log: filepath.Join(t.TempDir(), c.Name+".log"),
			Args: []string{"gateway", "--kubeconfig", c.Kubeconfig,
				"--identity-dir", identityDir, "--cluster-name", c.Name,
				"--listen-addr", ip + ":4143", "--admin-addr", ip + ":4191", "--pprof",
				"--advertise-address", ip, "--egress-host", ip, "--drain-timeout", "5s"}}}
	g.Start()
	g.StopCleanlyAtCleanup(c.Name+" gateway", 30*time.Second)
	wait.ForErr(t, 60*time.Second, c.Name+" gateway ready", func() error {
		if exited, err := g.Exited(); exited {
			t.Fatalf("%s gateway exited (%v):\n%s", c.Name, err, g.LogTail(shownLog))
		}
		return g.get("/ready", io.Discard)
	})
	return g
}

func (g *gateway) get(path string, w io.Writer) error {
	resp, err := g.admin.Get("http://" + g.ip + ":4191" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// metrics scrapes /metrics into series → value, the series written as in
// the exposition (name, or name{labels}).
func (g *gateway) metrics() (map[string]float64, error) {
	var buf bytes.Buffer
	if err := g.get("/metrics", &buf); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// resources is what a leak shows in: goroutines, open fds, live heap. The
// format and the heap's meaning (in use after a GC) are test/hostile's,
// so both soaks' reports read alike.
type resources struct {
	goroutines, fds int
	heap            uint64
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, heap %.1f MiB", r.goroutines, r.fds, float64(r.heap)/(1<<20))
}

// sample forces a GC in the gateway (pprof's heap profile with gc=1) and
// reads its Go and process collectors.
func (g *gateway) sample() (resources, error) {
	if err := g.get("/debug/pprof/heap?gc=1", io.Discard); err != nil {
		return resources{}, err
	}
	m, err := g.metrics()
	if err != nil {
		return resources{}, err
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "go_memstats_heap_inuse_bytes"} {
		if _, ok := m[name]; !ok {
			return resources{}, fmt.Errorf("%s gateway's /metrics has no %s", g.name, name)
		}
	}
	return resources{goroutines: int(m["go_goroutines"]), fds: int(m["process_open_fds"]),
		heap: uint64(m["go_memstats_heap_inuse_bytes"])}, nil
}

func (g *gateway) mustSample(t *testing.T) resources {
	t.Helper()
	r, err := g.sample()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Leak tolerances once the load has stopped, test/hostile's: back to
// the baseline but for runtime noise (timers, a GC worker, pools).
const (
	goroutineSlack = 10
	fdSlack        = 10
	heapSlack      = 16 << 20
)

func (r resources) within(base resources) bool {
	return r.goroutines <= base.goroutines+goroutineSlack && r.fds <= base.fds+fdSlack && r.heap <= base.heap+heapSlack
}
