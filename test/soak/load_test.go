package soak

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
)

// ioTimeout bounds each connect and exchange: generous, the machine is
// busy and the gateways may be race-instrumented; a stall past it is a
// failure.
const ioTimeout = 15 * time.Second

// echoOnce is one new connection: connect, send msg, read it back, close.
func echoOnce(addr, msg string) error {
	return gatewaytest.EchoOnceWithin(addr, msg, ioTimeout, ioTimeout)
}

// loadResult counts the connections of a load run.
type loadResult struct {
	newOK, streamsOK, streamMsgs, failed atomic.Int64
	firstErr                             atomic.Value // error
}

func (r *loadResult) fail(err error) {
	r.failed.Add(1)
	r.firstErr.CompareAndSwap(nil, err)
}

// runLoad sends bounded load to addr until ctx ends and returns once every
// connection has finished: workers open one new connection each every
// 20 ms, and streams connections stay open for the whole run, exchanging
// 1 KiB every 500 ms, then half-close and must see the echo's end.
func runLoad(ctx context.Context, addr string, workers, streams int) *loadResult {
	r := &loadResult{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ctx.Err() == nil; i++ {
				if err := echoOnce(addr, fmt.Sprintf("worker %d request %d", w, i)); err != nil {
					r.fail(fmt.Errorf("new connection: %w", err))
				} else {
					r.newOK.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		})
	}
	for s := range streams {
		wg.Go(func() {
			if err := stream(ctx, addr, s, r); err != nil {
				r.fail(fmt.Errorf("stream %d: %w", s, err))
			} else {
				r.streamsOK.Add(1)
			}
		})
	}
	wg.Wait()
	return r
}

// stream is one long connection for the whole of ctx.
func stream(ctx context.Context, addr string, id int, r *loadResult) error {
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := bytes.Repeat([]byte{byte('a' + id%26)}, 1024)
	got := make([]byte, len(msg))
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		c.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read echo: %w", err)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echo differs after %d messages", r.streamMsgs.Load())
		}
		r.streamMsgs.Add(1)
		select {
		case <-ctx.Done():
			// End cleanly: our FIN travels to the backend, whose FIN must
			// come back through both gateways.
			c.SetDeadline(time.Now().Add(ioTimeout))
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				return err
			}
			if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
				return fmt.Errorf("after half-close: %d stray bytes, %v", n, err)
			}
			return nil
		case <-tick.C:
		}
	}
}
