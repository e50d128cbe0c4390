package mirror

// The health of a Link's connection to its cluster, as the Link's status,
// metrics, logs and events show it: refused credentials, an unreachable
// cluster, and a running watch that fails.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// remoteHealthChanged runs when a Link's watcher starts or stops failing to
// list or watch its cluster (the API server is down or unreachable). The
// mirrors stay as they are meanwhile: the watcher's cache keeps the last
// known state, and it resumes where it stopped. The Link's status and
// mirror_remote_connected say so.
func (c *controller) remoteHealthChanged(link string, r *remote) {
	c.mu.Lock()
	st := c.links[link]
	current := st != nil && st.remote == r
	var cluster string
	var credErr error
	if current {
		cluster, credErr = st.cluster, st.credErr
	}
	c.mu.Unlock()
	if !current {
		return // a watcher being started or replaced: reconcileLink reports
	}
	if err := r.watchErr(); err != nil {
		c.m.met.connected.WithLabelValues(cluster).Set(0)
		c.m.log.Warn().Err(err).Str("link", link).Str("cluster", cluster).Msg("cannot watch linked cluster; keeping existing mirrors")
	} else {
		if credErr == nil {
			c.m.met.connected.WithLabelValues(cluster).Set(1)
		}
		c.m.log.Info().Str("link", link).Str("cluster", cluster).Msg("watching linked cluster again")
	}
	c.statusLater(link)
}

// unreachableRetry is how often a Link whose cluster cannot be reached is
// tried again: one small list request each time.
const unreachableRetry = 15 * time.Second

// retryAfter asks next to try the key again after a fixed delay instead of
// with the rate limiter's growing backoff.
type retryAfter struct {
	error
	after time.Duration
}

func (r retryAfter) Unwrap() error { return r.error }

// unreachable tells a cluster that cannot be reached (network errors,
// timeouts, an API server that is starting or overloaded) from one that
// refuses the credentials, so that an outage is not reported as bad
// credentials.
func unreachable(err error) bool {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := st.Status().Code
		return code >= 500 || code == http.StatusTooManyRequests || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
	}
	var nerr net.Error
	var uerr *url.Error
	return errors.As(err, &nerr) || errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// unreachable records that the Link's cluster could not be reached when
// its watcher was (re)started; existing mirrors and any running watcher stay.
func (c *controller) unreachable(link string, err error) {
	c.mu.Lock()
	st := c.links[link]
	changed := st.connErr == nil || st.connErr.Error() != err.Error()
	st.connErr, st.credErr = err, nil // whether the credentials work is unknown now
	cluster, running := st.cluster, st.remote != nil
	c.mu.Unlock()
	if !running {
		c.m.met.connected.WithLabelValues(cluster).Set(0)
	}
	if changed {
		c.m.log.Warn().Err(err).Str("link", link).Msg("cannot reach linked cluster; keeping existing mirrors, retrying")
		c.event(link, corev1.EventTypeWarning, "ClusterUnreachable", err.Error())
	}
	c.statusLater(link)
}

func (c *controller) credentialsFailed(link string, err error) {
	c.mu.Lock()
	st := c.links[link]
	changed := st.credErr == nil || st.credErr.Error() != err.Error()
	st.credErr, st.connErr = err, nil
	cluster := st.cluster
	c.mu.Unlock()
	c.m.met.connected.WithLabelValues(cluster).Set(0)
	if changed {
		c.m.log.Error().Err(err).Str("link", link).Msg("bad credentials for linked cluster; keeping existing mirrors")
		c.event(link, corev1.EventTypeWarning, "CredentialsInvalid", err.Error())
	}
	c.statusLater(link)
}
