package mirror

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestUnreachable(t *testing.T) {
	svc := schema.GroupResource{Resource: "services"}
	refused := &url.Error{Op: "Get", URL: "https://198.18.0.254:1/api/v1/services",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("list remote services: %w", refused), true},
		{"deadline", fmt.Errorf("list remote services: %w", context.DeadlineExceeded), true},
		{"server starting", apierrors.NewServiceUnavailable("starting"), true},
		{"internal error", apierrors.NewInternalError(errors.New("etcd")), true},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), true},
		{"server timeout", apierrors.NewServerTimeout(svc, "list", 1), true},
		{"bad token", fmt.Errorf("list remote services: %w", apierrors.NewUnauthorized("invalid bearer token")), false},
		{"no RBAC", apierrors.NewForbidden(svc, "", errors.New("cannot list")), false},
		{"config", errors.New("remote client: unknown TLS version"), false},
	} {
		if got := unreachable(tt.err); got != tt.want {
			t.Errorf("%s: unreachable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
