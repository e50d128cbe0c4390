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

// rawConn is c's RawConn when pollRead can read it: a TCP connection.
func rawConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// read reads the socket once, unless it is known to be empty or at its
// end; only inside callback.
func (p *pollRead) read(b []byte) (int, error) {
	switch {
	case len(b) == 0:
		return 0, nil
	case p.eofNext:
		return 0, io.EOF
	case p.empty:
		return 0, errWouldBlock
	}
	for {
		n, next, err := readAndLook(p.fd, b)
		switch err {
		case nil:
			if n == 0 {
				return 0, io.EOF
			}
			p.empty, p.eofNext = next != lookMore, next == lookEOF
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

// look is what readAndLook learned of the socket after its read.
type look uint8

const (
	lookMore    look = iota // bytes may be waiting still: read again
	lookDrained             // none were (or the look failed: see readAndLook)
	lookEOF                 // the peer's FIN follows the bytes read
)

// mmsghdr is recvmmsg(2)'s struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// readAndLook reads into b what the socket holds and, in the same syscall
// (recvmmsg with a second message of one byte), reads once more to learn
// whether that emptied it. A short read alone does not say: a FIN that
// arrived with the last bytes, often in the same segment, raises no event
// of its own once the poller has reported those bytes, so a direction that
// waited on it would wait until the park delay, or for ever. The look costs
// a second pass through the kernel's receive path, not a second syscall.
//
// The second read either finds nothing (recvmmsg returns one message),
// the FIN (a message of 0 bytes), or a byte that arrived meanwhile, which
// is moved to follow the first read's bytes. If it fails with an error (a
// reset right behind the bytes), recvmmsg keeps the error for the next
// read and reports one message, as for nothing: the direction then learns
// of the reset at the next event, at its park delay (the parker's epoll is
// level-triggered and reports it) or at its idle timeout.
func readAndLook(fd int, b []byte) (n int, next look, err error) {
	if len(b) < 2 {
		n, err = syscall.Read(fd, b)
		return max(n, 0), lookMore, err
	}
	last := len(b) - 1
	var (
		iov  [2]unix.Iovec
		msgs [2]mmsghdr
	)
	iov[0].Base, iov[1].Base = &b[0], &b[last]
	iov[0].SetLen(last)
	iov[1].SetLen(1)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov[i]
		msgs[i].hdr.SetIovlen(1)
	}
	r, _, errno := syscall.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), 2, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, lookDrained, errno
	}
	n = int(msgs[0].n)
	switch {
	case r < 2 || n == 0: // the look found nothing, or the read found the end
		return n, lookDrained, nil
	case msgs[1].n == 0:
		return n, lookEOF, nil
	case n < last:
		b[n] = b[last] // the byte the look read follows those the read did
	}
	return n + 1, lookMore, nil
}
