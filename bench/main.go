// Command bench is mcgate's load generator and peer comparison: it starts
// mcgate and its peers (HAProxy, nginx stream, ghostunnel, caddy-l4, a naive
// Go proxy, and no proxy at all) with configs it writes itself, pins each to
// its own core, runs the same scenarios against each, and writes a markdown
// table, a CSV and PNG charts. `make bench-bin && bin/bench -h`.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// config is one harness run.
type config struct {
	Mode      string
	Systems   []string
	Scenarios []string
	Wide      []string // scenarios of the tables with more than one core (all when empty)
	Tables    []int    // cores given to each proxy, one table each
	Opts      runOpts
	Limits    time.Duration // time spent on each physical limit
	Out       string
	McgateBin string
	// BaselineBin, when set, is run as the system mcgate-base (see baselineSystem).
	BaselineBin string
	Cache       string
	Pin         bool     // load generator on core 0, proxies on the cores after it
	Profile     []string // scenarios during which mcgate is CPU-profiled with perf
	Repeat      int      // rounds of each cell but idle; the median round is reported
	Install     bool
	Keep        bool
	Loopback    string // first three octets of the run's addresses (default 127.0.0)
	Log         func(format string, args ...any)
}

func modeConfig(mode string) (config, error) {
	c := config{Mode: mode, Pin: true, Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	switch mode {
	case "quick":
		c.Opts = runOpts{Warmup: 500 * time.Millisecond, Duration: 2 * time.Second, IdleConns: 1000, Rate: 2000}
		c.Tables, c.Limits, c.Out, c.Repeat = []int{1}, time.Second, "bench/results/tmp", 1
	case "full":
		c.Opts = runOpts{Warmup: time.Second, Duration: 5 * time.Second, IdleConns: 20000, Rate: 5000}
		c.Tables, c.Limits, c.Out, c.Install, c.Repeat = []int{1, 2}, 3*time.Second, "bench/results", true, 3
		// The two-core table answers scaling: does the proxy use a second core.
		c.Wide = []string{"handshake", "resume", "bulk1", "bulk8", "rr32", "rate", "t-bulk1"}
	default:
		return c, fmt.Errorf("unknown mode %q (quick or full)", mode)
	}
	return c, nil
}

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(roleMain(role, os.Args[1:]))
	}
	if err := cliMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// roleMain runs this binary as one of the harness's helper processes.
func roleMain(role string, args []string) int {
	var err error
	switch role {
	case "naive":
		err = naiveMain(args)
	case "limits":
		err = limitsMain(args)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

func cliMain(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	mode := fs.String("mode", "quick", "quick (seconds per cell, CI smoke) or full (the published table)")
	systems := fs.String("systems", "", "comma list of systems (default all): "+strings.Join(names(allSystems()), ","))
	scenarios := fs.String("scenarios", "", "comma list of scenarios (default all): "+strings.Join(scenarioNames(), ","))
	tables := fs.String("cores", "", "comma list of core counts per proxy, one table each (quick: 1, full: 1,2)")
	dur := fs.Duration("duration", 0, "measured time per cell (quick 2s, full 5s)")
	warm := fs.Duration("warmup", 0, "warm-up per cell (quick 0.5s, full 1s)")
	idleN := fs.Int("idle", 0, "idle connections (quick 1000, full 20000)")
	rate := fs.Int("rate", 0, "requests/s of the fixed-rate scenario (quick 2000, full 5000)")
	out := fs.String("out", "", "results directory (quick: bench/results/tmp, full: bench/results)")
	bin := fs.String("mcgate", "bin/mcgate", "mcgate binary (make build)")
	base := fs.String("baseline", "", "another mcgate binary, run as the system mcgate-base beside mcgate in the same rounds (an A/B of two builds; e.g. -systems mcgate,mcgate-base -repeat 8)")
	cache := fs.String("cache", defaultCache(), "peer binaries (ghostunnel, caddy)")
	pin := fs.Bool("pin", true, "pin the load generator to core 0 and proxies to the next cores")
	profile := fs.String("profile", "", "comma list of scenarios during which mcgate is profiled with perf (e.g. bulk1,handshake)")
	install := fs.String("install", "", "install missing peers with bench/peers.sh (default: yes in full mode)")
	repeat := fs.Int("repeat", 0, "rounds of each cell but idle, the median reported (quick 1, full 3)")
	keep := fs.Bool("keep", false, "keep the scratch directory (configs, logs, certificates)")
	lo := fs.String("loopback", "127.0.0", "first three octets of the addresses: .1 backends, .2 ingress, .3 egress")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := modeConfig(*mode)
	if err != nil {
		return err
	}
	c.Systems, c.Scenarios, c.Profile = splitList(*systems), splitList(*scenarios), splitList(*profile)
	if len(c.Scenarios) > 0 {
		c.Wide = nil
	}
	if *tables != "" {
		c.Tables = nil
		for _, s := range splitList(*tables) {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("bad -cores %q", s)
			}
			c.Tables = append(c.Tables, n)
		}
	}
	setIf(&c.Opts.Duration, *dur)
	setIf(&c.Opts.Warmup, *warm)
	setIf(&c.Opts.IdleConns, *idleN)
	setIf(&c.Opts.Rate, *rate)
	setIf(&c.Repeat, *repeat)
	setIf(&c.Out, *out)
	c.McgateBin, c.BaselineBin, c.Cache, c.Pin, c.Keep, c.Loopback = *bin, *base, *cache, *pin, *keep, *lo
	if c.BaselineBin != "" && len(c.Systems) > 0 && !slices.Contains(c.Systems, baselineName) {
		c.Systems = append(c.Systems, baselineName)
	}
	if *install != "" {
		c.Install = *install == "yes" || *install == "true"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Profiles belong to the table beside them: a run without -profile must
	// not leave an older run's profiles next to its results.
	old, _ := filepath.Glob(filepath.Join(c.Out, "profile-*.txt"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	rep, err := run(ctx, c)
	if err != nil {
		return err
	}
	files, err := rep.write(c.Out)
	if err != nil {
		return err
	}
	fmt.Println(rep.markdown())
	fmt.Println("results written to:")
	for _, f := range files {
		fmt.Println("  " + f)
	}
	return nil
}

// run measures the limits, then every table, system and scenario.
func run(ctx context.Context, c config) (*report, error) {
	h := prepareHost(&c)
	work, err := os.MkdirTemp("", "mcgate-bench-")
	if err != nil {
		return nil, err
	}
	if c.Keep {
		c.Log("scratch directory: %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	base, serverTLS, err := newBaseEnv(c, h, work)
	if err != nil {
		return nil, err
	}
	be, err := startBackends(serverTLS)
	if err != nil {
		return nil, err
	}
	defer be.close()

	rep := newReport(c, h, base.pki)
	proxyCore := ""
	if h.pinned {
		proxyCore = "1"
	}
	c.Log("physical limits…")
	rep.Limits = measureLimits(ctx, c.Limits, proxyCore, base.self)
	for _, cores := range c.Tables {
		if err := runTable(ctx, c, rep, h, *base, cores, be); err != nil {
			return rep, err
		}
	}
	rep.End, rep.LoadEnd = time.Now(), loadAvg()
	return rep, nil
}

// host is what run learns of this machine before it measures anything.
type host struct {
	nofile   uint64
	cpus     int
	pinned   bool   // the load generator runs on core 0, proxies on the others
	idleNote string // why fewer idle connections than asked, if so
}

// prepareHost raises the descriptor limit and caps c's idle connections to
// it, pins the load generator and installs the peers, as c asks.
func prepareHost(c *config) host {
	if c.Loopback != "" {
		loopback = c.Loopback
	}
	h := host{nofile: raiseNoFile(), cpus: runtime.NumCPU()}
	if m := maxIdleConns(h.nofile); c.Opts.IdleConns > m {
		h.idleNote = fmt.Sprintf("idle capped at %d connections (asked %d): RLIMIT_NOFILE is %d here and a proxy needs 2 descriptors per connection",
			m, c.Opts.IdleConns, h.nofile)
		c.Log("%s", h.idleNote)
		c.Opts.IdleConns = m
	}
	h.pinned = c.Pin && h.cpus >= 2
	if h.pinned {
		if err := pinSelf(0); err != nil {
			c.Log("pinning the load generator failed, running unpinned: %v", err)
			h.pinned = false
		}
	}
	if c.Install {
		if err := installPeers(*c); err != nil {
			c.Log("installing peers: %v (missing peers are reported as such)", err)
		}
	}
	return h
}

// newBaseEnv makes the run's certificates in work and returns what every
// table's systems share, and the backends' TLS configuration.
func newBaseEnv(c config, h host, work string) (*env, *tls.Config, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	p, err := makePKI(work, c.McgateBin)
	if err != nil {
		return nil, nil, fmt.Errorf("certificates: %w", err)
	}
	clientTLS, serverTLS, err := tlsConfigs(p)
	if err != nil {
		return nil, nil, err
	}
	return &env{nofile: h.nofile, work: work, pki: p, cache: c.Cache, mcgateBin: c.McgateBin, baseBin: c.BaselineBin, self: self, clientTLS: clientTLS}, serverTLS, nil
}

func newReport(c config, h host, p *pki) *report {
	rep := &report{Mode: c.Mode, Start: time.Now(), LoadStart: loadAvg(), Opts: c.Opts, Pinned: h.pinned, PKI: p.Source,
		Versions: versions(c), Notes: map[string]string{}, NoFile: h.nofile, Repeat: c.Repeat}
	if h.idleNote != "" {
		rep.Notes["idle"] = h.idleNote
	}
	return rep
}

// runTable runs the table of the given cores: every available system, the
// plain scenarios first, then the tunnelled ones.
func runTable(ctx context.Context, c config, rep *report, h host, e env, cores int, be *backends) error {
	scs := selectScenarios(c.Scenarios)
	if cores > 1 && len(c.Wide) > 0 {
		scs = selectScenarios(c.Wide)
	}
	e.threads = cores
	if h.pinned {
		e.cores = coreList(cores, h.cpus)
	}
	table := fmt.Sprintf("%d core", cores)
	if cores > 1 {
		table += "s"
	}
	rep.Tables = append(rep.Tables, table)
	systems := availableSystems(c, rep, &e)
	for _, tunnel := range []bool{false, true} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var group []scenario
		for _, sc := range scs {
			if sc.Tunnel == tunnel {
				group = append(group, sc)
			}
		}
		if len(group) > 0 {
			rep.Results = append(rep.Results, runPhase(ctx, c, &e, systems, tunnel, group, be, table)...)
		}
	}
	return nil
}

// availableSystems returns the selected systems that can run here, and
// notes in rep why the others cannot.
func availableSystems(c config, rep *report, e *env) []*system {
	var systems []*system
	for _, sys := range selectSystems(c.Systems, c.BaselineBin != "") {
		if err := sys.check(e); err != nil {
			rep.Notes[sys.name] = "not available: " + err.Error()
			c.Log("%s: skipped: %v", sys.name, err)
			continue
		}
		systems = append(systems, sys)
	}
	return systems
}

// runPhase starts every system at once (ingress, or the egress→ingress
// pairs), then runs each scenario on one system after the other, so that
// load from elsewhere on a shared machine falls on all systems alike rather
// than on whichever ran at the time. Idle cells go first, each on freshly
// started processes; each scenario starts the round at a different system.
func runPhase(ctx context.Context, c config, e *env, systems []*system, tunnel bool, group []scenario, be *backends, table string) []*result {
	insts := make([]*instance, len(systems))
	errs := make([]error, len(systems))
	startAll := func() {
		for i, sys := range systems {
			if insts[i] != nil {
				insts[i].stop()
			}
			start := sys.ingress
			if tunnel {
				start = sys.tunnel
			}
			insts[i], errs[i] = start(e)
			if errs[i] != nil {
				c.Log("%s: start: %v", sys.name, errs[i])
			}
		}
	}
	defer func() {
		for _, in := range insts {
			if in != nil {
				in.stop()
			}
		}
	}()
	startAll()
	var out []*result
	for k, sc := range group {
		if sc.Kind == "idle" && k > 0 {
			// Memory is measured as growth from a fresh process: an earlier
			// idle cell leaves pools behind (HAProxy's, nginx's) that the
			// next would reuse and so not count.
			startAll()
		}
		rounds := max(c.Repeat, 1)
		if sc.Kind == "idle" {
			rounds = 1 // minutes per round, and memory is not what a noisy neighbour moves
		}
		cells := make([][]*result, len(systems))
		for r := range rounds {
			for j := range systems {
				if ctx.Err() != nil {
					return append(out, medians(cells)...)
				}
				// Each scenario and round starts at a different system.
				i := (j + k + r) % len(systems)
				if sc.Kind == "idle" {
					i = j // in order: nothing to gain from rotating
				}
				cells[i] = append(cells[i], runOne(ctx, c, e, systems[i], insts[i], errs[i], sc, be, table))
			}
		}
		out = append(out, medians(cells)...)
	}
	return out
}

// medians picks, for each system, its median round by headline value (the
// CSV row and the charts) and keeps every round in it, so the table can take
// each metric's own median; the note lists every round's headline, so the
// spread shows next to the number.
func medians(cells [][]*result) []*result {
	var out []*result
	for _, rs := range cells {
		if len(rs) == 0 {
			continue
		}
		if len(rs) == 1 {
			out = append(out, rs[0])
			continue
		}
		vals := make([]string, len(rs))
		for i, r := range rs {
			vals[i] = fmt.Sprintf("%.0f", r.Value)
		}
		sorted := slices.Clone(rs)
		slices.SortFunc(sorted, func(a, b *result) int { return cmp.Compare(a.Value, b.Value) })
		m := sorted[(len(sorted)-1)/2]
		m.Rounds = rs
		m.Note = strings.TrimSpace(fmt.Sprintf("median of %d rounds (%s). %s", len(rs), strings.Join(vals, ", "), m.Note))
		out = append(out, m)
	}
	return out
}

// runOne runs one round of a cell, or reports why the system could not.
func runOne(ctx context.Context, c config, e *env, sys *system, inst *instance, startErr error, sc scenario, be *backends, table string) *result {
	if startErr != nil {
		return &result{Table: table, System: sys.name, Scenario: sc.Name, Errors: 1, FirstErr: startErr.Error(), Value: 0}
	}
	if sc.Kind == "idle" && len(inst.procs) == 0 {
		return &result{Table: table, System: sys.name, Scenario: sc.Name, Value: math.NaN(), Unit: "KiB/conn", Note: "no proxy process"}
	}
	return runCell(ctx, c, e, sys, inst, sc, be, table)
}

func runCell(ctx context.Context, c config, e *env, sys *system, inst *instance, sc scenario, be *backends, table string) *result {
	t := inst.echo
	if sc.Kind == "bulk" {
		t = inst.discard
	}
	d := newDialer(e.clientTLS, t, sc.Resume)
	be.settle(0, 10*time.Second)
	load := loadAvg()
	var prof *perfRecord
	if sys.name == "mcgate" && slices.Contains(c.Profile, sc.Name) {
		prof = startPerf(e, inst.pids(), table, sc, c.Opts)
	}
	r := runScenario(ctx, sc, inst, d, be, c.Opts)
	if prof != nil {
		r.Note = strings.TrimSpace(r.Note + " " + prof.finish(c.Out))
	}
	r.Table, r.System, r.Load = table, sys.name, load
	if inst.note != "" {
		r.Note = strings.TrimSpace(r.Note + " " + inst.note)
	}
	c.Log("[%s] %-10s %-9s %10.1f %-8s p50 %6.0fµs p99 %6.0fµs err %d load %.1f %s", table, sys.name, sc.Name, r.Value, r.Unit,
		r.pct(50), r.pct(99), r.Errors, load, firstLine(r.FirstErr))
	return r
}

func installPeers(c config) error {
	missing := false
	for _, s := range allSystems() {
		if s.name != "mcgate" && s.check(&env{cache: c.Cache}) != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	c.Log("installing peers (bench/peers.sh)…")
	cmd := exec.Command("bash", "bench/peers.sh")
	cmd.Env = append(os.Environ(), "MCGATE_CACHE="+filepath.Dir(c.Cache))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func defaultCache() string {
	if d := os.Getenv("MCGATE_CACHE"); d != "" {
		return filepath.Join(d, "bench")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "mcgate", "bench")
}

// pinSelf puts every thread of this process on one core: the load generator
// and the backends share it, the proxies get the others.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("sched_setaffinity %d: %w", tid, err)
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// coreList gives a proxy n cores starting after the load generator's, and
// wraps onto core 0 when the machine has no more (2 cores on this machine:
// "0-1", shared with the load generator).
func coreList(n, cpus int) string {
	switch {
	case n >= cpus:
		return fmt.Sprintf("0-%d", cpus-1)
	case n == 1:
		return "1"
	}
	return fmt.Sprintf("1-%d", n)
}

// raiseNoFile lifts RLIMIT_NOFILE for this process and the proxies it starts
// (children inherit a limit set explicitly), for the idle scenario, and
// returns the limit in force: without CAP_SYS_RESOURCE the hard limit stays.
func raiseNoFile() uint64 {
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// maxIdleConns is how many idle connections fit the descriptor limit: a
// proxy holds two descriptors per tunneled connection, and so does this
// process (client side and backend side).
func maxIdleConns(nofile uint64) int { return int(nofile-1000) / 2 }

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func versions(c config) map[string]string {
	v := map[string]string{"go": runtime.Version()}
	cmds := map[string][]string{
		"haproxy": {"haproxy", "-v"}, "nginx": {"nginx", "-v"}, "openssl": {"openssl", "version"},
		"ghostunnel": {filepath.Join(c.Cache, "ghostunnel"), "--version"}, "mcgate": {c.McgateBin, "version"},
	}
	if c.BaselineBin != "" {
		cmds[baselineName] = []string{c.BaselineBin, "version"}
	}
	for name, cmd := range cmds {
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err == nil {
			v[name] = strings.TrimSpace(firstLine(string(out)))
		}
	}
	if _, err := os.Stat(filepath.Join(c.Cache, "caddy")); err == nil {
		v["caddy-l4"] = "v0.1.2"
	}
	return v
}

// selectSystems picks the wanted systems (all when want is empty), with
// mcgate-base among them when a baseline build was given.
func selectSystems(want []string, baseline bool) []*system {
	all := allSystems()
	if baseline {
		all = append(all, baselineSystem())
	}
	var out []*system
	for _, s := range all {
		if len(want) == 0 || slices.Contains(want, s.name) {
			out = append(out, s)
		}
	}
	return out
}

func selectScenarios(want []string) []scenario {
	var out []scenario
	for _, s := range allScenarios() {
		if len(want) == 0 || slices.Contains(want, s.Name) {
			out = append(out, s)
		}
	}
	return out
}

func names(ss []*system) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.name)
	}
	return out
}

func scenarioNames() []string {
	var out []string
	for _, s := range allScenarios() {
		out = append(out, s.Name)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
