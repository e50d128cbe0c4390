package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// perfRecord samples mcgate's CPU with perf (software clock, call graphs by
// frame pointers: Go keeps them) during one cell, since the gateway's admin
// port need not expose pprof.
type perfRecord struct {
	cmd    *exec.Cmd
	data   string
	name   string
	cancel context.CancelFunc
}

func startPerf(e *env, pids []int, table string, sc scenario, o runOpts) *perfRecord {
	if _, err := exec.LookPath("perf"); err != nil || len(pids) == 0 {
		return nil
	}
	var ps []string
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	name := fmt.Sprintf("profile-%s-%s", strings.ReplaceAll(table, " ", ""), sc.Name)
	data := filepath.Join(e.work, name+".data")
	// Sample the measured window only.
	secs := fmt.Sprintf("%.1f", o.Duration.Seconds())
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "bash", "-c", fmt.Sprintf("sleep %.1f; exec perf record -q -e cpu-clock -F 1999 -g -p %s -o %s -- sleep %s",
		o.Warmup.Seconds(), strings.Join(ps, ","), data, secs))
	if err := cmd.Start(); err != nil {
		cancel()
		return nil
	}
	return &perfRecord{cmd: cmd, data: data, name: name, cancel: cancel}
}

// finish waits for perf and writes two flat reports (self time by symbol, and
// by shared object) into out; it returns a note for the cell.
func (p *perfRecord) finish(out string) string {
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cancel()
		<-done
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s, recorded %s\n", p.name, time.Now().UTC().Format(time.RFC3339))
	// Self time by object and by symbol, then inclusive time by symbol: which
	// Go functions (handshake, copy loop, syscalls) the time is spent under.
	for _, args := range [][]string{
		{"--no-children", "--sort", "dso", "--percent-limit", "0.7"},
		{"--no-children", "--sort", "symbol", "--percent-limit", "0.7"},
		{"--children", "--sort", "symbol", "--percent-limit", "4"},
	} {
		args = append([]string{"report", "-i", p.data, "--stdio", "-g", "none"}, args...)
		rep, err := exec.Command("perf", args...).CombinedOutput()
		if err != nil {
			return "perf report failed: " + firstLine(string(rep))
		}
		// Drop perf's empty IPC columns, which pad every line to 400 chars.
		for _, line := range strings.Split(string(rep), "\n") {
			b.WriteString(strings.TrimRight(strings.TrimSuffix(strings.TrimRight(line, " "), "-      -"), " ") + "\n")
		}
	}
	path := filepath.Join(out, p.name+".txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return ""
	}
	return "profile: " + path
}
