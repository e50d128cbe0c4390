package soak

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/kubetest"
	"github.com/mcgate/mcgate/internal/testbin"
)

// gateway is one `mcgate gateway` process with the mirror, on ip: ingress
// on :4143, egress listeners on ip, admin (with pprof, to force a GC
// before measuring the heap) on :4191.
type gateway struct {
	name, ip, log string
	cmd           *exec.Cmd
	done          chan error
	// admin has no keep-alive: an idle scrape connection would be an open
	// fd of the gateway's in one sample and not in the next.
	admin *http.Client
}

func startGateway(t *testing.T, c *kubetest.Cluster, ip, identityDir string) *gateway {
	t.Helper()
	g := &gateway{name: c.Name, ip: ip, log: filepath.Join(t.TempDir(), c.Name+".log"), done: make(chan error, 1),
		admin: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	f, err := os.Create(g.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g.cmd = exec.Command(testbin.Mcgate(t), "gateway", "--kubeconfig", c.Kubeconfig,
		"--identity-dir", identityDir, "--cluster-name", c.Name,
		"--listen-addr", ip+":4143", "--admin-addr", ip+":4191", "--pprof",
		"--advertise-address", ip, "--egress-host", ip, "--drain-timeout", "5s")
	g.cmd.Stdout, g.cmd.Stderr = f, f
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.done <- g.cmd.Wait() }()
	t.Cleanup(func() { g.stop(t) })
	waitFor(t, 60*time.Second, c.Name+" gateway ready", func() error {
		select {
		case err := <-g.done:
			g.done <- err
			t.Fatalf("%s gateway exited (%v):\n%s", c.Name, err, g.logTail())
		default:
		}
		return g.get("/ready", io.Discard)
	})
	return g
}

// stop sends SIGTERM and waits: a clean exit is part of the test (a race
// detected in a -race build shows as exit status 66).
func (g *gateway) stop(t *testing.T) {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("%s gateway exited with %v:\n%s", g.name, err, g.logTail())
			return
		}
	case <-time.After(30 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
		t.Errorf("%s gateway did not stop within 30 s of SIGTERM:\n%s", g.name, g.logTail())
		return
	}
	if t.Failed() {
		t.Logf("%s gateway log (tail):\n%s", g.name, g.logTail())
	}
}

// logTail is the end of the gateway's log: a long soak's whole log would
// drown the failure.
func (g *gateway) logTail() string {
	b, _ := os.ReadFile(g.log)
	const keep = 32 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
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
// format and the heap's meaning (in use after a GC) are internal/hostile's,
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

// Leak tolerances once the load has stopped, internal/hostile's: back to
// the baseline but for runtime noise (timers, a GC worker, pools).
const (
	goroutineSlack = 10
	fdSlack        = 10
	heapSlack      = 16 << 20
)

func (r resources) within(base resources) bool {
	return r.goroutines <= base.goroutines+goroutineSlack && r.fds <= base.fds+fdSlack && r.heap <= base.heap+heapSlack
}

// waitFor polls cond every 200 ms until it returns nil, failing t after
// within with cond's last answer, which says what is still wrong.
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(within, cond); err != nil {
		t.Fatalf("timed out after %v waiting for %s: %v", within, what, err)
	}
}

// poll is waitFor's loop, for callers that report the failure themselves.
func poll(within time.Duration, cond func() error) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-deadline.C:
			return err
		case <-tick.C:
		}
	}
}
