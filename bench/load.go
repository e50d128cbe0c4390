package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// scenario is one column of the table.
type scenario struct {
	Name   string
	Kind   string // handshake | bulk | rr | rate | idle
	Conc   int    // connections (workers, streams)
	Resume bool   // TLS session resumption on the client
	Tunnel bool   // through the egress→ingress pair, plain TCP on the client side
	Burst  int    // idle: bytes each connection echoes before it idles (else 16)
	What   string // one line for the report
}

func allScenarios() []scenario {
	return []scenario{
		{Name: "idle", Kind: "idle", Conc: 64, What: "N idle mTLS connections: proxy RSS per connection (KiB)"},
		{Name: "idle-busy", Kind: "idle", Conc: 64, Burst: idleBurst, What: "the same, each connection having first echoed 256 KiB: what a once-busy connection keeps (KiB)"},
		{Name: "handshake", Kind: "handshake", Conc: 16, What: "new mTLS connection + 64 B echo + close, 16 clients (conn/s)"},
		{Name: "resume", Kind: "handshake", Conc: 16, Resume: true, What: "same with TLS 1.3 session resumption (conn/s)"},
		{Name: "bulk1", Kind: "bulk", Conc: 1, What: "1 stream of 64 KiB writes to a discarding backend (MB/s)"},
		{Name: "bulk8", Kind: "bulk", Conc: 8, What: "8 streams of 64 KiB writes (MB/s)"},
		{Name: "rr1", Kind: "rr", Conc: 1, What: "1 KiB request/response, 1 connection (ops/s, latency)"},
		{Name: "rr32", Kind: "rr", Conc: 32, What: "1 KiB request/response, 32 connections (ops/s, latency)"},
		{Name: "rate", Kind: "rate", Conc: 16, What: "1 KiB request/response at a fixed rate over 16 connections, open loop, CO-corrected latency"},
		{Name: "t-idle", Kind: "idle", Conc: 64, Tunnel: true, What: "idle connections through egress→ingress: RSS of both per connection (KiB)"},
		{Name: "t-idle-busy", Kind: "idle", Conc: 64, Tunnel: true, Burst: idleBurst, What: "the same, each connection having first echoed 256 KiB (KiB)"},
		{Name: "t-connect", Kind: "handshake", Conc: 16, Tunnel: true, What: "new app connection through egress→ingress + 64 B echo (conn/s)"},
		{Name: "t-bulk1", Kind: "bulk", Conc: 1, Tunnel: true, What: "1 stream through egress→ingress (MB/s)"},
		{Name: "t-rr1", Kind: "rr", Conc: 1, Tunnel: true, What: "1 KiB request/response through egress→ingress (ops/s, latency)"},
	}
}

// runOpts sets a cell's length and load.
type runOpts struct {
	Warmup, Duration time.Duration
	IdleConns        int
	Rate             int // requests/s of the fixed-rate scenario
}

// result is one cell: a scenario on a system.
type result struct {
	Table    string // "1 core" or "2 cores"
	System   string
	Scenario string
	Value    float64 // the headline: conn/s, MB/s, ops/s or KiB/conn
	Unit     string
	Ops      int64
	Errors   int64
	FirstErr string
	Resumed  float64 // fraction of resumed handshakes
	RSS      int64   // proxy RSS at the end of an idle run (bytes)
	// CPU is the user+system time the proxy processes used in the measured
	// window (0 for direct). Unlike the rate, which the load generator's
	// core can cap, it says how much work the proxy spent per unit.
	CPU time.Duration
	// PerUnit is CPU per unit of the headline in µs: per connection, per
	// request or per MB; NaN without a proxy process.
	PerUnit float64
	// Switches are the context switches of the proxy's threads in the
	// measured window: each is a thread put to sleep and woken again, which
	// on a shared core is latency on some request's path.
	Switches int64
	Window   time.Duration // the measured window's length
	// Rounds are every round of a repeated cell, this one among them; the
	// table shows each metric's median over them (report.cell).
	Rounds []*result
	Load   float64 // 1-minute load average when the cell started
	Hist   *hdrhistogram.Histogram
	Note   string
}

func (r *result) pct(q float64) float64 {
	if r.Hist == nil || r.Hist.TotalCount() == 0 {
		return math.NaN()
	}
	return float64(r.Hist.ValueAtQuantile(q))
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) } // µs

// errs counts a cell's errors and keeps the first for the report.
type errs struct {
	n     atomic.Int64
	once  sync.Once
	first string
}

func (e *errs) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err.Error() })
}

// window is the measured part of a cell, after the warm-up.
type window struct{ start, end time.Time }

func (w window) has(t0, t1 time.Time) bool { return !t0.Before(w.start) && !t1.After(w.end) }

// runScenario runs one cell against a started instance; pids are measured
// for memory in idle cells.
func runScenario(ctx context.Context, sc scenario, inst *instance, d *dialer, be *backends, o runOpts) *result {
	res := &result{Scenario: sc.Name, Hist: newHist()}
	now := time.Now()
	w := window{start: now.Add(o.Warmup), end: now.Add(o.Warmup + o.Duration)}
	var e errs
	usage := func() procUsage { return procUsage{} }
	if sc.Kind != "idle" {
		usage = usageDuring(ctx, inst.pids(), w)
	}
	switch sc.Kind {
	case "handshake":
		handshakes(ctx, sc, d, w, res, &e)
		res.Value, res.Unit = float64(res.Ops)/o.Duration.Seconds(), "conn/s"
	case "bulk":
		bulk(ctx, sc, d, be, w, res, &e)
		res.Unit = "MB/s"
	case "rr":
		reqResp(ctx, sc.Conc, d, w, 0, res, &e)
		res.Value, res.Unit = float64(res.Ops)/o.Duration.Seconds(), "ops/s"
	case "rate":
		reqResp(ctx, sc.Conc, d, w, o.Rate, res, &e)
		res.Value, res.Unit = float64(res.Ops)/o.Duration.Seconds(), "ops/s"
	case "idle":
		idle(ctx, sc, inst, d, o.IdleConns, res, &e)
		be.settle(0, 30*time.Second)
		res.Unit = "KiB/conn"
	}
	res.Errors, res.FirstErr = e.n.Load(), e.first
	u := usage()
	res.CPU, res.Switches, res.PerUnit, res.Window = u.cpu, u.switches, math.NaN(), o.Duration
	if units := res.Value * o.Duration.Seconds(); sc.Kind != "idle" && len(inst.pids()) > 0 && units > 0 {
		res.PerUnit = float64(res.CPU.Microseconds()) / units
	}
	return res
}

// usageDuring samples the CPU time and context switches of pids at the
// start and end of the measured window; the returned function waits for the
// second sample.
func usageDuring(ctx context.Context, pids []int, w window) func() procUsage {
	done := make(chan procUsage, 1)
	go func() {
		sleepUntil(ctx, w.start)
		u0 := treeUsage(pids)
		sleepUntil(ctx, w.end)
		u1 := treeUsage(pids)
		done <- procUsage{cpu: u1.cpu - u0.cpu, switches: u1.switches - u0.switches}
	}()
	return func() procUsage { return <-done }
}

// handshakes: closed loop, each op a new connection, a 64 B echo and a close.
// The latency is dial to echo back: the connection usable end to end.
func handshakes(ctx context.Context, sc scenario, d *dialer, w window, res *result, e *errs) {
	var mu sync.Mutex
	var resumed int64
	var wg sync.WaitGroup
	for range sc.Conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := newHist()
			var ops, res1 int64
			msg, got := make([]byte, 64), make([]byte, 64)
			for time.Now().Before(w.end) && ctx.Err() == nil {
				t0 := time.Now()
				c, didResume, err := d.dial(ctx)
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = c.Write(msg); err == nil {
						_, err = io.ReadFull(c, got)
					}
					c.Close()
				}
				t1 := time.Now()
				if err != nil {
					if !isClosed(err) {
						e.add(err)
					}
					continue
				}
				if w.has(t0, t1) {
					_ = h.RecordValue(t1.Sub(t0).Microseconds())
					ops++
					if didResume {
						res1++
					}
				}
			}
			mu.Lock()
			res.Hist.Merge(h)
			res.Ops += ops
			resumed += res1
			mu.Unlock()
		}()
	}
	wg.Wait()
	if res.Ops > 0 {
		res.Resumed = float64(resumed) / float64(res.Ops)
	}
}

// bulk writes 64 KiB chunks on each stream; throughput is what the discard
// backend received inside the window.
func bulk(ctx context.Context, sc scenario, d *dialer, be *backends, w window, res *result, e *errs) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	buf := make([]byte, 64<<10)
	_, _ = rand.Read(buf)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for range sc.Conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := d.dial(ctx)
			if err != nil {
				e.add(err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			for ctx.Err() == nil {
				if err := writeBatched(c, buf); err != nil {
					if ctx.Err() == nil && !isClosed(err) {
						e.add(err)
					}
					return
				}
			}
		}()
	}
	sleepUntil(ctx, w.start)
	b0 := be.discarded.Load()
	sleepUntil(ctx, w.end)
	got := be.discarded.Load() - b0
	res.Value = float64(got) / 1e6 / w.end.Sub(w.start).Seconds()
	res.Ops = got
	cancel()
	mu.Lock()
	for _, c := range conns {
		_ = c.SetDeadline(time.Now()) // unblock writers stuck on a full window
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
}

// reqResp sends 1 KiB and reads it back over conc persistent connections.
// With rate 0 it is a closed loop. Otherwise each connection follows its own
// schedule and a request's latency starts at its intended send time when the
// previous answer made it late (coordinated omission corrected), or at the
// actual send time when only the client's own timer was late.
func reqResp(ctx context.Context, conc int, d *dialer, w window, rate int, res *result, e *errs) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(conc) / float64(rate))
	}
	base := time.Now()
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := d.dial(ctx)
			if err != nil {
				e.add(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(w.end.Add(10 * time.Second))
			h := newHist()
			var ops int64
			msg, got := make([]byte, 1024), make([]byte, 1024)
			next := base.Add(time.Duration(i) * interval / time.Duration(conc))
			for ctx.Err() == nil {
				var t0 time.Time
				if rate > 0 {
					if next.After(w.end) {
						break
					}
					if now := time.Now(); now.Before(next) {
						sleepUntil(ctx, next)
						t0 = time.Now()
					} else {
						t0 = next
					}
					next = next.Add(interval)
				} else {
					t0 = time.Now()
					if t0.After(w.end) {
						break
					}
				}
				if _, err := c.Write(msg); err != nil {
					e.add(err)
					break
				}
				if _, err := io.ReadFull(c, got); err != nil {
					e.add(err)
					break
				}
				t1 := time.Now()
				if w.has(t0, t1) {
					_ = h.RecordValue(t1.Sub(t0).Microseconds())
					ops++
				}
			}
			mu.Lock()
			res.Hist.Merge(h)
			res.Ops += ops
			mu.Unlock()
		}()
	}
	wg.Wait()
}

// idleBurst is what each connection of an idle-busy cell echoes before it
// idles: enough for full-size TLS records each way (Go's crypto/tls, the
// load generator's, sends small records for the first 128 KiB), so that
// every TLS library grows its buffers to their bulk size. A gateway's
// connections are rarely idle from birth; what one keeps after a burst is
// what thousands of pooled connections cost between requests.
const idleBurst = 256 << 10

// idleSettle is how long idle connections are held before memory is read.
const idleSettle = 10 * time.Second

// idle opens n connections, each proven end to end by an echo (16 B, or the
// scenario's burst), holds them and reports the growth of the proxy's RSS
// per connection.
func idle(ctx context.Context, sc scenario, inst *instance, d *dialer, n int, res *result, e *errs) {
	// Without a proxy process (direct) the connections are still opened and
	// held, but there is no memory to read.
	pids := inst.pids()
	rss0 := treeRSS(pids)
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range sc.Conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, max(sc.Burst, 16))
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				c, _, err := d.dial(ctx)
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = c.Write(msg); err == nil {
						_, err = io.ReadFull(c, msg)
					}
					_ = c.SetDeadline(time.Time{})
				}
				if err != nil {
					e.add(err)
					if c != nil {
						c.Close()
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	opened := 0
	for _, c := range conns {
		if c != nil {
			opened++
		}
	}
	res.Ops = int64(opened)
	elapsed := time.Since(t0)
	// Memory is read once the connections have been held for a while, the
	// state a gateway spends its life in: after each proxy's per-connection
	// work and its own housekeeping (mcgate parks idle directions after 1 s
	// and returns freed heap to the OS after 3 quiet seconds). The wait is
	// the same for every system.
	sleepUntil(ctx, time.Now().Add(idleSettle))
	res.RSS = treeRSS(pids)
	res.Value = math.NaN()
	if opened > 0 && len(pids) > 0 {
		res.Value = float64(res.RSS-rss0) / 1024 / float64(opened)
	}
	res.Note = fmt.Sprintf("%d conns opened in %.1fs, RSS %.0f→%.0f MiB", opened, elapsed.Seconds(),
		float64(rss0)/(1<<20), float64(res.RSS)/(1<<20))
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}
