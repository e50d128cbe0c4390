//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawConn is c's RawConn when pollRead can read it: a TCP connection on
// which the kernel says, with each read, whether more follows (TCP_INQ,
// Linux 4.18). Elsewhere sources are read through net.Conn.
func rawConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_INQ, 1) }); err != nil || serr != nil {
		return nil
	}
	return rc
}

// read reads the socket once, unless it is known to be empty; only inside
// callback.
func (p *pollRead) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if p.empty {
		return 0, errWouldBlock
	}
	for {
		n, more, err := readHinted(p.fd, b)
		switch err {
		case nil:
			if n == 0 {
				return 0, io.EOF
			}
			p.empty = !more
			return n, nil
		case syscall.EINTR:
		case syscall.EAGAIN:
			p.empty = true
			return 0, errWouldBlock
		default:
			return 0, &net.OpError{Op: "read", Net: "tcp", Source: p.conn.LocalAddr(), Addr: p.conn.RemoteAddr(),
				Err: os.NewSyscallError("read", err)}
		}
	}
}

// readHinted reads into b what the socket holds, and says whether more may
// follow at once: bytes still queued, or the peer's FIN. A short read alone
// does not say: a FIN that arrived with the last bytes, often in the same
// segment, raises no event of its own once the poller has reported those
// bytes, so a direction that waited on it would wait until its park delay,
// or for ever. With TCP_INQ on, the kernel answers each recvmsg with the
// bytes left in the queue, and with 1 when none are but a FIN is
// (tcp_inq_hint: "after receiving a FIN, tell the user-space to continue
// reading").
//
// A reset right behind the bytes read is not counted (the queue is empty,
// the FIN flag unset): the direction learns of it at its next event, at its
// park delay (the parker's epoll is level-triggered and reports it) or at
// its idle timeout, as before.
func readHinted(fd int, b []byte) (n int, more bool, err error) {
	var (
		iov = unix.Iovec{Base: unsafe.SliceData(b)}
		oob [4]uint64 // room for the TCP_CM_INQ message (unix.CmsgSpace(4)), aligned for its header
		msg unix.Msghdr
	)
	iov.SetLen(len(b))
	msg.Iov = &iov
	msg.SetIovlen(1)
	msg.Control = (*byte)(unsafe.Pointer(&oob))
	msg.SetControllen(int(unsafe.Sizeof(oob)))
	r, _, errno := syscall.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	if errno != 0 {
		return 0, false, errno
	}
	n = int(r)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob))
	if int(msg.Controllen) < unix.CmsgLen(4) || h.Level != unix.SOL_TCP || h.Type != unix.TCP_CM_INQ {
		return n, true, nil // no hint: only another read can tell
	}
	inq := *(*int32)(unsafe.Add(unsafe.Pointer(&oob), unix.CmsgLen(0)))
	return n, inq > 0, nil
}
