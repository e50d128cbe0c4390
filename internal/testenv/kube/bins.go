package kube

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries returns the folder holding etcd, kube-apiserver and
// kube-controller-manager for the checkout at root, building them first with
// internal/testenv/kube/build.sh when they are missing or stale (about 15 minutes the
// first time on a 2-core machine; progress goes to stderr).
func Binaries(root string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "internal", "testenv", "kube", "build.sh"))
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kube: build binaries: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

// Root returns the root of the mcgate checkout containing dir: the nearest
// ancestor whose go.mod declares module github.com/mcgate/mcgate.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("kube: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/mcgate/mcgate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kube: no mcgate checkout (go.mod of github.com/mcgate/mcgate) above the working directory")
		}
		dir = parent
	}
}

// CRDDir is where the project's CRD manifests live in a checkout.
func CRDDir(root string) string { return filepath.Join(root, "deploy", "crds") }
