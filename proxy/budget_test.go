package proxy_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

func withBufferMemory(n int64) pairOpt {
	return func(i *proxy.IngressConfig, e *proxy.EgressConfig) { i.BufferMemory, e.BufferMemory = n, n }
}

// TestBufferBudget: with room for one bulk buffer per hop, four
// connections streaming both ways at once all carry their bytes intact;
// the buffers held never exceed the budget, and every byte of it is given
// back once the connections have closed.
func TestBufferBudget(t *testing.T) {
	const budget = 64 << 10
	const size = 2 << 20
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			r := startParkRoute(t, kind, newBackend(t).Addr(), withBufferMemory(budget))
			var peak atomic.Int64
			stopSampling := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					for _, reg := range r.regs {
						v := int64(counter(t, reg, "gateway_buffer_bytes", nil))
						if v > peak.Load() {
							peak.Store(v)
						}
					}
					select {
					case <-stopSampling:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 4 {
				c, _ := r.dial(t)
				c.SetDeadline(time.Now().Add(30 * time.Second))
				payload := make([]byte, size)
				rand.Read(payload)
				wg.Add(2)
				go func() {
					defer wg.Done()
					if _, err := c.Write(payload); err != nil {
						errs <- err
					}
				}()
				go func() {
					defer wg.Done()
					got := make([]byte, size)
					if _, err := io.ReadFull(c, got); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, payload) {
						errs <- io.ErrShortBuffer
					}
					c.Close()
				}()
			}
			wg.Wait()
			close(stopSampling)
			<-sampled
			close(errs)
			for err := range errs {
				t.Errorf("stream: %v", err)
			}
			if p := peak.Load(); p > budget {
				t.Errorf("bulk buffers peaked at %d bytes on one hop, budget %d", p, budget)
			}
			wait.Until(t, 10*time.Second, "every bulk buffer given back", func() bool {
				for _, reg := range r.regs {
					if counter(t, reg, "gateway_buffer_bytes", nil) != 0 {
						return false
					}
				}
				return true
			})
		})
	}
}
