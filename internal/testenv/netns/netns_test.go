package netns

import (
	"bufio"
	"errors"
	"os/exec"
	"syscall"
	"testing"
)

func TestAddr(t *testing.T) {
	if got := Addr(1).String(); got != "198.18.0.1" {
		t.Errorf("Addr(1) = %s", got)
	}
	if got := Addr(254).String(); got != "198.18.0.254" {
		t.Errorf("Addr(254) = %s", got)
	}
	for _, n := range []int{0, 255} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Addr(%d) did not panic", n)
				}
			}()
			Addr(n)
		}()
	}
}

// TestRun checks what a child sees inside (its name, the test-host range on
// lo, no default route), that its exit code comes back, and that the
// namespace is gone afterwards.
func TestRun(t *testing.T) {
	name := OwnedName("mcgate-netnstest-")
	script := `test "$` + EnvName + `" = "` + name + `" &&
		ip -4 addr show lo | grep -q 'inet 198.18.0.1/24' &&
		! ip route show | grep -q default &&
		exit 7`
	code, err := Run(name, nil, []string{"sh", "-c", script})
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("child exit code %d, want 7 (the checks inside failed)", code)
	}
	if Exists(name) {
		t.Errorf("namespace %s still exists", name)
	}
}

// TestDeleteKillsLeftovers: Delete must not leave a process of the namespace
// running, and is safe to repeat.
func TestDeleteKillsLeftovers(t *testing.T) {
	name := OwnedName("mcgate-netnstest-")
	if err := Create(name, nil); err != nil {
		t.Fatal(err)
	}
	left := exec.Command("ip", "netns", "exec", name, "sh", "-c", "echo inside; exec sleep 600")
	out, err := left.StdoutPipe()
	if err == nil {
		err = left.Start()
	}
	if err != nil {
		_ = Delete(name)
		t.Fatal(err)
	}
	// Wait until it is inside, or Delete could run before it got there.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		_ = Delete(name)
		t.Fatal(err)
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	err = left.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("leftover process ended with %v, want killed", err)
	}
	if Exists(name) {
		t.Errorf("namespace %s still exists", name)
	}
	if err := Delete(name); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}
