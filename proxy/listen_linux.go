package proxy

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Go's TCP keepalive defaults, which net.Listen sets on every accepted
// connection: the first probe after 15 s of silence, then one every 15 s,
// and the connection is dead after 9 unanswered ones.
const (
	keepAliveIdleSeconds     = 15
	keepAliveIntervalSeconds = 15
	keepAliveProbes          = 9
)

// listenTCP listens on addr with TCP keepalive set once, on the listening
// socket: Linux copies it to every connection the socket accepts. net.Listen
// instead spends four setsockopt calls on each accepted connection, a
// syscall cost every new connection pays on the VMs gateways run on.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []struct{ level, opt, value int }{
				{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
				{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdleSeconds},
				{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveIntervalSeconds},
				{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveProbes},
			} {
				if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}
