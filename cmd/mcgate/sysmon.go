package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// The Go runtime's monitor thread (sysmon) goes into a deep sleep whenever
// every P is idle, and the next goroutine to make a syscall wakes it with a
// futex; it then naps 20 µs, finds the process idle again and goes back to
// sleep. A gateway carrying request/response traffic at low concurrency goes
// idle between every two requests, so each request paid for about two extra
// context switches on the core it shares with that thread (measured with
// /proc/<pid>/task/*/status: 4.4 switches per request against nginx's 2.1),
// and sysmon and its futexes were a fifth of the gateway's CPU per request in
// perf.
//
// sysmon stays out of deep sleep when schedtrace is set, and then polls with
// a backoff that reaches its 10 ms ceiling within a few milliseconds of
// idleness: 100 cheap wakeups a second instead of two per request. The
// runtime reads schedtrace only at start, so `mcgate gateway` re-executes
// itself once with it added to GODEBUG. The period is the largest the
// runtime takes (24.8 days): a scheduler summary line reaches stderr once per
// period, and once at start on a host up for longer than that.
//
// An operator's own schedtrace, in any value, wins: GODEBUG=schedtrace=0
// turns this off.
const sysmonSchedtrace = "schedtrace=2147483647"

// sysmonGODEBUG returns the GODEBUG the gateway should run with, and whether
// that differs from godebug (the current one) and calls for a re-execution.
// Only `mcgate gateway` is concerned: the CLI's short commands gain nothing.
func sysmonGODEBUG(args []string, godebug string) (string, bool) {
	if len(args) == 0 || args[0] != "gateway" {
		return godebug, false
	}
	for _, kv := range strings.Split(godebug, ",") {
		if k, _, _ := strings.Cut(strings.TrimSpace(kv), "="); k == "schedtrace" {
			return godebug, false
		}
	}
	if strings.TrimSpace(godebug) == "" {
		return sysmonSchedtrace, true
	}
	return godebug + "," + sysmonSchedtrace, true
}

// reexecForSysmon replaces the process with itself, same arguments, with
// sysmonGODEBUG's setting, when that calls for it. It runs first thing in
// main, before any goroutine or file of ours exists. It returns only when it
// does not re-execute; a failed exec is reported and the gateway runs on
// without the setting.
func reexecForSysmon(args []string, stderr io.Writer) {
	if runtime.GOOS != "linux" {
		return
	}
	godebug, ok := sysmonGODEBUG(args, os.Getenv("GODEBUG"))
	if !ok {
		return
	}
	env := []string{"GODEBUG=" + godebug}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	// /proc/self/exe is this very binary even if its file has been replaced
	// on disk since it started.
	err := syscall.Exec("/proc/self/exe", append([]string{os.Args[0]}, args...), env)
	fmt.Fprintf(stderr, "mcgate: could not re-execute with GODEBUG=%s (%v); running without it\n", godebug, err)
}
