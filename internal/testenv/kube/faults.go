package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Faults of the control plane, for tests that check how clients live
// through them: an API server stopped and started again in place, and etcd
// compacted so that old resourceVersions are gone.

// StopAPIServer stops this cluster's kube-apiserver (SIGTERM, then waits for
// it to exit). Until StartAPIServer, clients get "connection refused". The
// controller manager keeps running and reconnects by itself; the other
// clusters, which share etcd, keep serving.
func (c *Cluster) StopAPIServer() error {
	if err := c.plane.APIServer.Stop(); err != nil {
		return fmt.Errorf("kube: stop kube-apiserver %s: %w", c.Name, err)
	}
	return nil
}

// StartAPIServer starts the kube-apiserver stopped by StopAPIServer again,
// in place: same address and port, same serving certificate, client CA and
// service-account keys (envtest keeps them in the cluster's pki folder and
// reuses them), so every kubeconfig, client certificate and token issued
// before keeps working. It returns once /readyz answers ok. Its log goes on
// in the same file.
//
// A restarted API server's watch cache starts at the current etcd revision,
// so clients resuming a watch from an older resourceVersion get 410 Gone
// and relist, as after a real control-plane restart.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	api := c.plane.APIServer
	if err := api.Start(); err != nil {
		return fmt.Errorf("kube: restart kube-apiserver %s: %w", c.Name, err)
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, api.StartTimeout, true, func(ctx context.Context) (bool, error) {
		if exited, werr := c.kcm.exited(); exited {
			return false, fmt.Errorf("kube-controller-manager %s exited: %v (log %s)", c.Name, werr, c.kcm.logPath)
		}
		var body []byte
		body, last = c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return last == nil && strings.TrimSpace(string(body)) == "ok", nil
	})
	if err != nil {
		return fmt.Errorf("kube: %s not ready after restart (last: %v): %w", c.Name, last, err)
	}
	return nil
}

// RestartAPIServer is StopAPIServer then StartAPIServer.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	if err := c.StopAPIServer(); err != nil {
		return err
	}
	return c.StartAPIServer(ctx)
}

// EtcdRevision returns the current revision of the etcd this cluster stores
// its objects in (shared by all clusters of its Env): the resourceVersion
// of the latest write to any of them.
func (c *Cluster) EtcdRevision(ctx context.Context) (int64, error) {
	var resp struct {
		Header etcdHeader `json:"header"`
	}
	// A range over one key that never exists: only the header matters.
	if err := c.etcdCall(ctx, "/v3/kv/range", map[string]any{"key": []byte("/mcgate-kube-revision")}, &resp); err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// CompactEtcd compacts the etcd of this cluster (and so of every cluster of
// its Env) at its current revision and returns that revision, once the
// compaction is applied to the storage. Afterwards etcd refuses every read
// and watch at an older revision; API servers answer requests for older
// resourceVersions that their watch cache cannot serve with 410 Gone.
func (c *Cluster) CompactEtcd(ctx context.Context) (int64, error) {
	rev, err := c.EtcdRevision(ctx)
	if err != nil {
		return 0, err
	}
	err = c.etcdCall(ctx, "/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil)
	// The API server compacts every few minutes by itself; if it just did
	// at this very revision, the history is gone all the same.
	if err != nil && !strings.Contains(err.Error(), "required revision has been compacted") {
		return 0, err
	}
	return rev, nil
}

type etcdHeader struct {
	// The JSON gateway encodes int64 as strings.
	Revision int64 `json:"revision,string"`
}

// etcdCall posts req as JSON to etcd's gRPC gateway (the client URL serves
// it) and decodes the answer into resp (if not nil).
func (c *Cluster) etcdCall(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("kube: etcd %s: %w", path, err)
	}
	u := *c.plane.Etcd.URL
	u.Path = path
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("kube: etcd %s: %w", path, err)
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		return fmt.Errorf("kube: etcd %s: %w", path, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("kube: etcd %s: %w", path, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("kube: etcd %s: %s: %s", path, res.Status, bytes.TrimSpace(out))
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(out, resp); err != nil {
		return fmt.Errorf("kube: etcd %s: decode %q: %w", path, out, err)
	}
	return nil
}
