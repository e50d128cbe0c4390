package deploy

import (
	"context"
	"time"
)

// RetryInterval is the pause between tries of `--wait`.
const RetryInterval = 2 * time.Second

// Retry calls try until it reports done, wait has passed since the first
// call, or ctx ends, pausing interval between tries; it returns try's last
// verdict. A zero wait tries once.
func Retry(ctx context.Context, wait, interval time.Duration, try func(context.Context) bool) bool {
	deadline := time.Now().Add(wait)
	for {
		if try(ctx) {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		t := time.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
