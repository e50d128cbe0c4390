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

// limitUnsent bounds the bytes a socket's send queue holds that TCP has not
// sent yet (TCP_NOTSENT_LOWAT) to limit: a write blocks once that many
// wait. Bytes in flight are bounded by the peer's receive window and the
// congestion window, which is what a long fat link needs. Without the
// bound, a peer that stops reading makes the kernel queue up to tcp_wmem's
// maximum (4 MiB by default) for it on each socket of the splice (issue 25
// point 5: 100 clients that never read held 1.5 GB of TCP memory on one
// host, past tcp_mem's pressure threshold, where every socket of the host
// is squeezed) until the write-stall timeout resets them. It is off by
// default: at 128 KiB it cost one stream 19% more CPU per MB (bench
// -baseline, bulk1), as the writer wakes for every 64 KiB the peer takes.
//
// Set on a listener, Linux 6.18 did not pass it on to the connections it
// accepts, so it is set per connection. Best effort: without it the
// connection works as before.
func limitUnsent(c net.Conn, limit int) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, limit) })
	}
}
