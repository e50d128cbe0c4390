package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is cgroup v2's memory limit of this container.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimitShare is the part of the container's memory limit the Go heap
// may aim for; the rest is for stacks, the runtime and what the kernel
// charges to the cgroup besides (socket buffers are not among them).
const memoryLimitShare = 0.9

// containerMemoryLimit returns the soft memory limit for the Go runtime
// derived from the cgroup limit in path, or 0 when there is none to follow:
// no cgroup v2 file, "max", or GOMEMLIMIT set by the operator (which wins).
// Without it the GC paces on heap growth alone, and a gateway holding many
// connections near its container limit is OOM-killed rather than
// collecting harder.
func containerMemoryLimit(path string, getenv func(string) string) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("memory limit: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("memory limit: %s: %q is not a byte count", path, v)
	}
	return int64(float64(n) * memoryLimitShare), nil
}

// applyContainerMemoryLimit sets the runtime's soft memory limit from the
// container's and returns what it set (0: nothing).
func applyContainerMemoryLimit() (int64, error) {
	n, err := containerMemoryLimit(cgroupMemoryMax, os.Getenv)
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return n, err
}
