package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// env is what every system needs to start: certificates, where to write its
// config and log, and which cores to pin it to.
type env struct {
	work      string // scratch dir of this run: configs, logs, certificates
	pki       *pki
	cache     string // peer binaries
	mcgateBin string
	baseBin   string // -baseline: a second mcgate build, the system mcgate-base
	self      string // this executable, for the naive proxy role
	cores     string // taskset -c list for proxies; "" = unpinned
	threads   int    // worker threads/processes a peer may use (cores given)
	nofile    uint64 // descriptor limit every process inherits
	clientTLS *tls.Config
}

// instance is one started system: where clients go, and its processes.
type instance struct {
	echo, discard target
	procs         []*proc
	note          string
}

func (in *instance) stop() {
	for _, p := range in.procs {
		p.stop()
	}
}

// pids are the root processes whose trees count towards the proxy's memory.
func (in *instance) pids() []int {
	var out []int
	for _, p := range in.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

// system is one contender. ingress serves mTLS clients; tunnel is an
// egress→ingress pair of the same system, with plain-TCP clients.
type system struct {
	name    string
	check   func(e *env) error
	ingress func(e *env) (*instance, error)
	tunnel  func(e *env) (*instance, error)
}

func allSystems() []*system {
	return []*system{directSystem(), naiveSystem(), haproxySystem(), nginxSystem(), ghostunnelSystem(), caddySystem(), mcgateSystem()}
}

func directSystem() *system {
	return &system{
		name:  "direct",
		check: func(*env) error { return nil },
		ingress: func(*env) (*instance, error) {
			return &instance{echo: target{Addr: directEchoAddr(), TLS: true}, discard: target{Addr: directDiscardAddr(), TLS: true},
				note: "mTLS ends in the backend (no hop)"}, nil
		},
		tunnel: func(*env) (*instance, error) {
			return &instance{echo: target{Addr: echoAddr()}, discard: target{Addr: discardAddr()},
				note: "plain TCP to the backend"}, nil
		},
	}
}

// sniInstance is a proxy at one address that routes both backends by SNI.
func sniInstance(in string) func([]*proc, error) (*instance, error) {
	return func(ps []*proc, err error) (*instance, error) {
		return &instance{echo: target{in, echoSNI, true}, discard: target{in, discardSNI, true}, procs: ps}, err
	}
}

// pair starts a system's ingress, then its egress side, whose app-facing
// listeners are echo and discard; the instance owns (and stops) both.
func pair(e *env, ingress, egress func(*env) ([]*proc, error), echo, discard, note string) (*instance, error) {
	ps, err := ingress(e)
	inst := &instance{echo: target{Addr: echo}, discard: target{Addr: discard}, procs: ps, note: note}
	if err == nil {
		var eps []*proc
		eps, err = egress(e)
		inst.procs = append(inst.procs, eps...)
	}
	return inst, err
}

// ready waits until a started process accepts on addrs; the process is
// returned even when it failed, so that its owner stops it.
func ready(p *proc, err error) func(addrs ...string) ([]*proc, error) {
	return func(addrs ...string) ([]*proc, error) {
		if err != nil {
			return procs(p), err
		}
		return procs(p), p.waitTCP(addrs...)
	}
}

func naiveSystem() *system {
	in := ingressAddr(5001)
	routes := echoSNI + "=" + echoAddr() + "," + discardSNI + "=" + discardAddr()
	ingress := func(e *env) ([]*proc, error) {
		return ready(e.start("naive", e.self, []string{roleEnv + "=naive"}, "-listen", in, "-identity-dir", e.pki.Gateway.Dir, "-routes", routes))(in)
	}
	// The naive egress speaks to one target per process: two processes.
	egress := func(e *env) ([]*proc, error) {
		var ps []*proc
		for _, eg := range [][2]string{{egressAddr(5101), echoSNI}, {egressAddr(5102), discardSNI}} {
			p, err := ready(e.start("naive-egress", e.self, []string{roleEnv + "=naive"}, "-listen", eg[0],
				"-identity-dir", e.pki.Client.Dir, "-upstream", in, "-sni", eg[1]))(eg[0])
			if ps = append(ps, p...); err != nil {
				return ps, err
			}
		}
		return ps, nil
	}
	return &system{
		name:    "naive-go",
		check:   func(*env) error { return nil },
		ingress: func(e *env) (*instance, error) { return sniInstance(in)(ingress(e)) },
		tunnel: func(e *env) (*instance, error) {
			return pair(e, ingress, egress, egressAddr(5101), egressAddr(5102), "")
		},
	}
}

func mcgateSystem() *system {
	return mcgateBuild("mcgate", func(e *env) string { return e.mcgateBin }, 0)
}

// baselineSystem is mcgate-base, another build of mcgate (-baseline) run
// beside mcgate in the same rounds, on ports of its own: an A/B of two
// builds under the same load and the same drift of the machine.
func baselineSystem() *system {
	return mcgateBuild(baselineName, func(e *env) string { return e.baseBin }, 2000)
}

const baselineName = "mcgate-base"

// mcgateBuild is the system name running the binary bin gives, its ports
// moved up by offset.
func mcgateBuild(name string, bin func(*env) string, offset int) *system {
	in, admin := ingressAddr(4143+offset), ingressAddr(4191+offset)
	egIn, egAdmin := egressAddr(4143+offset), egressAddr(4191+offset)
	egEcho, egDis := egressAddr(14200+offset), egressAddr(14201+offset)
	services := fmt.Sprintf(`services:
- name: echo
  namespace: bench
  ports:
  - port: 8080
    endpoints: [%q]
- name: discard
  namespace: bench
  ports:
  - port: 8081
    endpoints: [%q]
`, echoAddr(), discardAddr())
	egressCfg := fmt.Sprintf(`egress:
- listen: %s
  gatewayAddress: %s
  gatewayIdentity: %s
  target: %s:8080
- listen: %s
  gatewayAddress: %s
  gatewayIdentity: %s
  target: %s:8081
`, egEcho, in, gwIdentity, echoSNI, egDis, in, gwIdentity, discardSNI)
	gateway := func(e *env, name, listen, adminAddr, config string) ([]*proc, error) {
		file := filepath.Join(e.work, name+".yaml")
		if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
			return nil, err
		}
		p, err := e.start(name, bin(e), nil, "gateway", "--identity-dir", e.pki.Gateway.Dir, "--listen-addr", listen,
			"--admin-addr", adminAddr, "--static-config", file, "--log-level", "warn", "--max-conns", strconv.FormatUint(e.nofile, 10), "--max-handshakes", "10000")
		if err != nil {
			return nil, err
		}
		return procs(p), p.waitHTTP("http://" + adminAddr + "/ready")
	}
	ingress := func(e *env) ([]*proc, error) { return gateway(e, name, in, admin, services) }
	egress := func(e *env) ([]*proc, error) { return gateway(e, name+"-egress", egIn, egAdmin, services+egressCfg) }
	return &system{
		name: name,
		check: func(e *env) error {
			_, err := os.Stat(bin(e))
			return err
		},
		ingress: func(e *env) (*instance, error) { return sniInstance(in)(ingress(e)) },
		tunnel:  func(e *env) (*instance, error) { return pair(e, ingress, egress, egEcho, egDis, "") },
	}
}

func procs(p *proc) []*proc {
	if p == nil {
		return nil
	}
	return []*proc{p}
}

// proc is a started peer process, in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// start runs bin pinned with taskset (when cores are set), its output in a
// log file of the run.
func (e *env) start(name, bin string, extraEnv []string, args ...string) (*proc, error) {
	if e.cores != "" {
		args = append([]string{"-c", e.cores, bin}, args...)
		bin = "taskset"
	}
	logPath := filepath.Join(e.work, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "HOME="+e.work, "XDG_DATA_HOME="+e.work, "XDG_CONFIG_HOME="+e.work), extraEnv...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM to the group, then SIGKILL after a grace period.
func (p *proc) stop() {
	pg := -p.cmd.Process.Pid
	_ = syscall.Kill(pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(pg, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) wait(ready func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, tail(p.log))
		default:
		}
		if ready() {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling a child process, not a test
	}
	return fmt.Errorf("%s not ready after 30s: %s", p.name, tail(p.log))
}

func (p *proc) waitTCP(addrs ...string) error {
	return p.wait(func() bool {
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})
}

func (p *proc) waitHTTP(url string) error {
	cl := &http.Client{Timeout: time.Second}
	return p.wait(func() bool {
		r, err := cl.Get(url)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return strings.TrimSpace(string(b))
}

// tree returns the given processes and all their descendants: nginx and
// HAProxy keep their connections in workers.
func tree(roots []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], pid)
		}
	}
	var out []int
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// statFields are the fields of /proc/pid/stat after the command name, so
// f[0] is the state (field 3 of proc(5)), f[1] the parent, f[11] utime.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// treeRSS sums VmRSS (bytes) of the processes and their descendants.
func treeRSS(roots []int) int64 {
	var total int64
	for _, pid := range tree(roots) {
		total += vmRSS(pid)
	}
	return total
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/pid/stat: 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procUsage is what processes have used so far.
type procUsage struct {
	cpu      time.Duration // user and system time
	switches int64         // voluntary and involuntary context switches of all threads
}

// treeUsage sums the usage of the processes and their descendants. Threads
// that exited are not counted: the proxies keep theirs.
func treeUsage(roots []int) procUsage {
	var u procUsage
	var ticks int64
	for _, pid := range tree(roots) {
		if f := statFields(pid); len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += ut + st
		}
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			u.switches += threadSwitches(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		}
	}
	u.cpu = time.Duration(ticks) * clockTick
	return u
}

// threadSwitches reads voluntary_ctxt_switches + nonvoluntary_ctxt_switches
// from a thread's status file (0 if it is gone).
func threadSwitches(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
			c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += c
		}
	}
	return n
}

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
