// Package testbin builds the mcgate binary once per test process, for tests
// that run it as users do (as a process, with flags and signals).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Mcgate returns the path of a freshly built mcgate binary (built with the
// race detector when the test binary has it), failing t if the build fails.
// The binary lives in a temporary folder for the life of the process.
func Mcgate(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, e := os.MkdirTemp("", "mcgate-bin-")
		if e != nil {
			err = e
			return
		}
		path = filepath.Join(dir, "mcgate")
		args := []string{"build", "-o", path}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, e := exec.Command("go", append(args, "github.com/mcgate/mcgate/cmd/mcgate")...).CombinedOutput()
		if e != nil {
			err = fmt.Errorf("go build: %v\n%s", e, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}
