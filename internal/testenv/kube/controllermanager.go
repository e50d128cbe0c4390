package kube

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

type kcmConfig struct {
	bin, name, kubeconfig, saKey, rootCA, serviceCIDR, log string
}

// controllerManager is a running kube-controller-manager. envtest has no
// type for it, so it is started here with os/exec.
type controllerManager struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
}

func startControllerManager(cfg kcmConfig) (*controllerManager, error) {
	f, err := os.OpenFile(cfg.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	cmd := exec.Command(cfg.bin,
		"--kubeconfig="+cfg.kubeconfig,
		"--cluster-name="+cfg.name,
		// The admin user (system:masters) for every controller: with
		// per-controller service-account credentials each controller would
		// first need its token minted, slowing start for no test benefit.
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+cfg.saKey,
		"--root-ca-file="+cfg.rootCA,
		"--service-cluster-ip-range="+cfg.serviceCIDR,
		"--leader-elect=false",
		// No kubelet ever reports, so node health means nothing here; this
		// controller would mark every node unreachable and the pods on it
		// not ready after ~50 s (see CreateReadyPod).
		"--controllers=*,-node-lifecycle-controller",
		// No HTTPS endpoint: nothing scrapes it, and it would need a port.
		"--secure-port=0",
		"--v=1",
	)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, and killed by the kernel if its parent dies, so an
	// aborted test run leaves no controller manager behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("kube: start kube-controller-manager %s: %w", cfg.name, err)
	}
	m := &controllerManager{cmd: cmd, logPath: cfg.log, logFile: f, done: make(chan struct{})}
	go m.wait()
	return m, nil
}

func (m *controllerManager) wait() {
	m.err = m.cmd.Wait()
	close(m.done)
}

// exited reports whether the process has exited, and how.
func (m *controllerManager) exited() (bool, error) {
	select {
	case <-m.done:
		return true, m.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, then SIGKILL after a grace period, and waits. Safe to
// call more than once.
func (m *controllerManager) stop() error {
	if exited, _ := m.exited(); !exited {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	}
	err := m.logFile.Close()
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return err
}
