package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// report is one harness run: limits, every cell, and how it was run.
type report struct {
	Mode               string
	Start, End         time.Time
	LoadStart, LoadEnd float64
	Opts               runOpts
	Pinned             bool
	PKI                string
	Versions           map[string]string
	Notes              map[string]string // per system: why it is missing
	NoFile             uint64            // RLIMIT_NOFILE of the run
	Repeat             int               // rounds per cell (but idle)
	Tables             []string
	Limits             []limit
	Results            []*result
}

// metric is one row of the table, read off a scenario's result.
type metric struct {
	Label    string
	Scenario string
	Higher   bool // higher is better
	Get      func(*result) float64
	Fmt      string
}

func value(r *result) float64   { return r.Value }
func perUnit(r *result) float64 { return r.PerUnit }

// switchesPerOp is the proxy's context switches per request or connection.
func switchesPerOp(r *result) float64 {
	if math.IsNaN(r.PerUnit) || r.Ops == 0 {
		return math.NaN()
	}
	return float64(r.Switches) / float64(r.Ops)
}

// busy is the share of one core the proxy used in the measured window: near
// 100 on the one-core table means the proxy was the bound, below it the load
// generator was.
func busy(r *result) float64 {
	if math.IsNaN(r.PerUnit) {
		return math.NaN()
	}
	return 100 * r.CPU.Seconds() / r.Window.Seconds()
}
func pctOf(q float64) func(*result) float64 {
	return func(r *result) float64 { return r.pct(q) }
}
func msOf(q float64) func(*result) float64 {
	return func(r *result) float64 { return r.pct(q) / 1000 }
}

func metrics() []metric {
	return []metric{
		{"idle: RSS per connection (KiB)", "idle", false, value, "%.1f"},
		{"idle-busy: RSS per connection after a 256 KiB echo (KiB)", "idle-busy", false, value, "%.1f"},
		{"handshake: conn/s", "handshake", true, value, "%.0f"},
		{"handshake: p50 (ms)", "handshake", false, msOf(50), "%.2f"},
		{"handshake: p99 (ms)", "handshake", false, msOf(99), "%.2f"},
		{"handshake: proxy CPU per conn (µs)", "handshake", false, perUnit, "%.0f"},
		{"handshake: proxy core busy (%)", "handshake", false, busy, "%.0f"},
		{"resume: conn/s", "resume", true, value, "%.0f"},
		{"resume: resumed (%)", "resume", true, func(r *result) float64 { return 100 * r.Resumed }, "%.0f"},
		{"resume: proxy CPU per conn (µs)", "resume", false, perUnit, "%.0f"},
		{"bulk1: MB/s", "bulk1", true, value, "%.0f"},
		{"bulk1: proxy CPU per MB (µs)", "bulk1", false, perUnit, "%.0f"},
		{"bulk1: proxy core busy (%)", "bulk1", false, busy, "%.0f"},
		{"bulk8: MB/s", "bulk8", true, value, "%.0f"},
		{"rr1: ops/s", "rr1", true, value, "%.0f"},
		{"rr1: p50 (µs)", "rr1", false, pctOf(50), "%.0f"},
		{"rr1: p99 (µs)", "rr1", false, pctOf(99), "%.0f"},
		{"rr1: p99.9 (µs)", "rr1", false, pctOf(99.9), "%.0f"},
		{"rr1: proxy CPU per request (µs)", "rr1", false, perUnit, "%.1f"},
		{"rr1: proxy context switches per request", "rr1", false, switchesPerOp, "%.2f"},
		{"rr32: ops/s", "rr32", true, value, "%.0f"},
		{"rr32: p99 (µs)", "rr32", false, pctOf(99), "%.0f"},
		{"rate: achieved ops/s", "rate", true, value, "%.0f"},
		{"rate: p50 (µs)", "rate", false, pctOf(50), "%.0f"},
		{"rate: p99 (µs)", "rate", false, pctOf(99), "%.0f"},
		{"rate: p99.9 (µs)", "rate", false, pctOf(99.9), "%.0f"},
		{"rate: proxy context switches per request", "rate", false, switchesPerOp, "%.2f"},
		{"t-idle: RSS per connection, both sides (KiB)", "t-idle", false, value, "%.1f"},
		{"t-idle-busy: RSS per connection after a 256 KiB echo, both sides (KiB)", "t-idle-busy", false, value, "%.1f"},
		{"t-connect: conn/s", "t-connect", true, value, "%.0f"},
		{"t-connect: p99 (ms)", "t-connect", false, msOf(99), "%.2f"},
		{"t-bulk1: MB/s", "t-bulk1", true, value, "%.0f"},
		{"t-bulk1: proxy CPU per MB, both sides (µs)", "t-bulk1", false, perUnit, "%.0f"},
		{"t-rr1: ops/s", "t-rr1", true, value, "%.0f"},
		{"t-rr1: p99 (µs)", "t-rr1", false, pctOf(99), "%.0f"},
	}
}

// peers are what mcgate is compared with: everything but itself and the floor.
func isPeer(system string) bool { return system != "mcgate" && system != "direct" }

func (rep *report) find(table, system, scenario string) *result {
	for _, r := range rep.Results {
		if r.Table == table && r.System == system && r.Scenario == scenario {
			return r
		}
	}
	return nil
}

func (rep *report) systems() []string {
	var out []string
	for _, name := range append(names(allSystems()), baselineName) {
		for _, r := range rep.Results {
			if r.System == name {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// cell is a metric's value on a system, NaN when missing or failed: the
// median over the cell's rounds of that metric itself, so a latency row is
// not the latency of whichever round had the median rate.
func (rep *report) cell(table, system string, m metric) float64 {
	r := rep.find(table, system, m.Scenario)
	if r == nil || (r.Errors > 0 && r.Ops == 0) {
		return math.NaN()
	}
	rounds := r.Rounds
	if len(rounds) == 0 {
		rounds = []*result{r}
	}
	var vs []float64
	for _, x := range rounds {
		if v := m.Get(x); !math.IsNaN(v) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	return vs[(len(vs)-1)/2]
}

// bestPeer is the best value among peers and which peer holds it.
func (rep *report) bestPeer(table string, m metric) (float64, string) {
	best, who := math.NaN(), ""
	for _, s := range rep.systems() {
		v := rep.cell(table, s, m)
		if !isPeer(s) || math.IsNaN(v) {
			continue
		}
		if math.IsNaN(best) || (m.Higher && v > best) || (!m.Higher && v < best) {
			best, who = v, s
		}
	}
	return best, who
}

func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# mcgate bench (%s mode)\n\n", rep.Mode)
	fmt.Fprintf(&b, "%s → %s, load average %.2f at start, %.2f at end (2-core machine whose speed drifts between minutes: read ratios, not absolutes). ",
		rep.Start.UTC().Format(time.RFC3339), rep.End.UTC().Format("15:04:05Z"), rep.LoadStart, rep.LoadEnd)
	fmt.Fprintf(&b, "All systems of a table run at once and take turns per scenario, so outside load falls on all alike. Each cell: %s warm-up, %s measured, the median of %d rounds (each round starts at another system; the rounds are in the CSV's note); idle: %d connections, one round; rate: %d req/s. ",
		rep.Opts.Warmup, rep.Opts.Duration, max(rep.Repeat, 1), rep.Opts.IdleConns, rep.Opts.Rate)
	if rep.Pinned {
		b.WriteString("Load generator and backends pinned to core 0; each proxy (both processes of a tunnel pair) to core 1 (\"1 core\") or cores 0-1 (\"2 cores\", shared with the load generator). ")
	} else {
		b.WriteString("Unpinned. ")
	}
	fmt.Fprintf(&b, "Clients: Go crypto/tls, TLS 1.3, X25519 only; the load generator verifies each distinct server chain once (every handshake still checks the server's signature) and sends the records of one 64 KiB bulk write in one syscall, so that its core is not the bound. Certificates: %s. ", rep.PKI)
	b.WriteString("\"proxy CPU\" rows are the user+system time of the proxy's processes in the measured window, per unit of the headline: unlike a rate, a noisy neighbour or a saturated load generator moves them little.\n\n")
	for _, table := range rep.Tables {
		rep.writeTable(&b, table)
	}
	b.WriteString("## Physical limits (same run, one core: the proxies' core when pinned)\n\n| limit | value | how |\n|---|---:|---|\n")
	for _, l := range rep.Limits {
		fmt.Fprintf(&b, "| %s | %.0f %s | %s |\n", l.Name, l.Value, l.Unit, l.How)
	}
	b.WriteString("\n## Targets (issue 6)\n\n")
	for _, line := range rep.targets() {
		b.WriteString("- " + line + "\n")
	}
	b.WriteString("\n## Scenarios\n\n")
	for _, sc := range allScenarios() {
		fmt.Fprintf(&b, "- `%s`: %s\n", sc.Name, sc.What)
	}
	b.WriteString("\nLatencies are HDR histograms in µs; `handshake`/`t-connect` latency is dial to echo received. ")
	b.WriteString("`rate` latency is measured from the intended send time whenever the previous answer was late (coordinated omission corrected).\n\n")
	b.WriteString("## Systems\n\n")
	keys := make([]string, 0, len(rep.Versions))
	for k := range rep.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "- %s: %s\n", k, rep.Versions[k])
	}
	for _, s := range rep.systems() {
		for _, r := range rep.Results {
			if r.System == s && r.Note != "" && !strings.Contains(r.Note, "conns opened") {
				fmt.Fprintf(&b, "- %s %s: %s\n", s, r.Scenario, r.Note)
				break
			}
		}
	}
	for s, n := range rep.Notes {
		fmt.Fprintf(&b, "- %s: %s\n", s, n)
	}
	var errLines []string
	for _, r := range rep.Results {
		if r.Errors > 0 {
			errLines = append(errLines, fmt.Sprintf("- [%s] %s %s: %d errors, first: %s", r.Table, r.System, r.Scenario, r.Errors, firstLine(r.FirstErr)))
		}
		if r.Note != "" && strings.Contains(r.Note, "conns opened") {
			errLines = append(errLines, fmt.Sprintf("- [%s] %s %s: %s", r.Table, r.System, r.Scenario, r.Note))
		}
	}
	if len(errLines) > 0 {
		b.WriteString("\n## Cell notes and errors\n\n" + strings.Join(errLines, "\n") + "\n")
	}
	return b.String()
}

func (rep *report) writeTable(b *strings.Builder, table string) {
	systems := rep.systems()
	fmt.Fprintf(b, "## %s per proxy\n\n| metric | %s | best peer | mcgate / best peer |\n|---|", table, strings.Join(systems, " | "))
	b.WriteString(strings.Repeat("---:|", len(systems)+2) + "\n")
	for _, m := range metrics() {
		row := []string{}
		seen := false
		for _, s := range systems {
			v := rep.cell(table, s, m)
			if !math.IsNaN(v) {
				seen = true
			}
			row = append(row, fmtVal(m.Fmt, v))
		}
		if !seen {
			continue
		}
		best, who := rep.bestPeer(table, m)
		mc := rep.cell(table, "mcgate", m)
		ratio := "–"
		if !math.IsNaN(best) && !math.IsNaN(mc) && best != 0 {
			arrow := "↑"
			if !m.Higher {
				arrow = "↓"
			}
			ratio = fmt.Sprintf("%.2f× %s", mc/best, arrow)
		}
		bp := "–"
		if who != "" {
			bp = fmtVal(m.Fmt, best) + " " + who
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", m.Label, strings.Join(row, " | "), bp, ratio)
	}
	b.WriteString("\n↑: higher is better, ↓: lower is better.\n\n")
}

func fmtVal(f string, v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf(f, v)
}

// targets checks the ratios on this run's numbers.
func (rep *report) targets() []string {
	get := func(table, label string) metric {
		for _, m := range metrics() {
			if m.Label == label {
				return m
			}
		}
		panic("no metric " + label)
	}
	one, two := "1 core", "2 cores"
	var out []string
	check := func(desc string, ok bool, mc, ref float64) {
		mark := "✘"
		if ok {
			mark = "✔"
		}
		if math.IsNaN(mc) || math.IsNaN(ref) {
			mark = "?"
		}
		out = append(out, fmt.Sprintf("%s %s (mcgate %.1f, reference %.1f)", mark, desc, mc, ref))
	}
	vsPeer := func(label string, factor float64, desc string) {
		m := get(one, label)
		best, who := rep.bestPeer(one, m)
		mc := rep.cell(one, "mcgate", m)
		ok := (m.Higher && mc >= factor*best) || (!m.Higher && mc <= factor*best)
		check(fmt.Sprintf("%s (best peer: %s)", desc, who), ok, mc, best)
	}
	vsPeer("handshake: conn/s", 1.2, "handshakes/s ≥ 1.2× best peer")
	hs, rs := rep.cell(one, "mcgate", get(one, "handshake: conn/s")), rep.cell(one, "mcgate", get(one, "resume: conn/s"))
	check("resumed handshakes/s ≥ 3× own full handshakes/s", rs >= 3*hs, rs, 3*hs)
	vsPeer("bulk1: MB/s", 1.2, "bulk one stream ≥ 1.2× best peer")
	b1, b8 := rep.cell(one, "mcgate", get(one, "bulk1: MB/s")), rep.cell(two, "mcgate", get(two, "bulk8: MB/s"))
	check("bulk 8 streams on 2 cores ≥ 1.5× one-core one-stream", b8 >= 1.5*b1, b8, 1.5*b1)
	vsPeer("rr1: p99 (µs)", 1, "rr p99 at concurrency 1 ≤ best peer")
	vsPeer("rate: p99 (µs)", 1, "rr p99 at the fixed rate ≤ best peer")
	idle := rep.cell(one, "mcgate", get(one, "idle: RSS per connection (KiB)"))
	check(fmt.Sprintf("idle ≤ 16 KiB per connection at %d connections", rep.Opts.IdleConns), idle <= 16, idle, 16)
	vsPeer("t-bulk1: MB/s", 1.2, "tunnel bulk ≥ 1.2× best peer pair")
	return out
}

var csvHeader = []string{"table", "system", "scenario", "unit", "value", "ops", "errors", "p50_us", "p90_us", "p99_us", "p999_us",
	"max_us", "resumed", "rss_bytes", "cpu_s", "cpu_us_per_unit", "ctx_switches", "load1", "note", "first_error"}

func (rep *report) csvRows() [][]string {
	rows := [][]string{csvHeader}
	f := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	for _, r := range rep.Results {
		mx := math.NaN()
		if r.Hist != nil && r.Hist.TotalCount() > 0 {
			mx = float64(r.Hist.Max())
		}
		rows = append(rows, []string{r.Table, r.System, r.Scenario, r.Unit, f(r.Value), strconv.FormatInt(r.Ops, 10),
			strconv.FormatInt(r.Errors, 10), f(r.pct(50)), f(r.pct(90)), f(r.pct(99)), f(r.pct(99.9)), f(mx),
			f(r.Resumed), strconv.FormatInt(r.RSS, 10), f(r.CPU.Seconds()), f(r.PerUnit), strconv.FormatInt(r.Switches, 10), f(r.Load), r.Note, firstLine(r.FirstErr)})
	}
	return rows
}

// write puts results.md, results.csv and the charts into dir.
func (rep *report) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	md := filepath.Join(dir, "results.md")
	if err := os.WriteFile(md, []byte(rep.markdown()), 0o644); err != nil {
		return nil, err
	}
	cf := filepath.Join(dir, "results.csv")
	f, err := os.Create(cf)
	if err != nil {
		return nil, err
	}
	w := csv.NewWriter(f)
	_ = w.WriteAll(rep.csvRows())
	if err := f.Close(); err != nil {
		return nil, err
	}
	files := []string{md, cf}
	charts, err := rep.charts(dir)
	if err != nil {
		return files, err
	}
	files = append(files, charts...)
	if ps, _ := filepath.Glob(filepath.Join(dir, "profile-*.txt")); len(ps) > 0 {
		files = append(files, ps...)
	}
	return slices.Compact(files), nil
}
