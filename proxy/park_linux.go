//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errNoEpoll: the platform has no epoll (never on Linux).
var errNoEpoll = errors.New("proxy: no epoll on this platform")

// epoll is the parker's epoll descriptor. It sits in the Go runtime's
// poller like a socket (an epoll descriptor is readable while it has
// events ready), so the parker's goroutine waits without holding a thread,
// a read deadline wakes it for its sweep, and close wakes it for good.
type epoll struct {
	f      *os.File
	rc     syscall.RawConn
	events []unix.EpollEvent // used by wait alone
}

func openEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("proxy: epoll: %w", err)
	}
	f := os.NewFile(uintptr(fd), "parker-epoll")
	// Deadlines work only on descriptors in the runtime's poller.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("proxy: epoll descriptor not pollable: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("proxy: epoll: %w", err)
	}
	return &epoll{f: f, rc: rc, events: make([]unix.EpollEvent, 128)}, nil
}

// watch arms a one-shot wait for sock to become readable or hang up,
// reported with tok. Level-triggered: bytes that arrived before the call
// are reported at once. It fails if sock or the epoll descriptor is closed.
func (e *epoll) watch(sock syscall.RawConn, tok uint64) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	var err error
	// Control holds both descriptors open while epoll_ctl runs, so neither
	// number can be closed and reused under it.
	cerr := e.rc.Control(func(epfd uintptr) {
		serr := sock.Control(func(fd uintptr) {
			// A socket parked before is still registered (ONESHOT
			// disabled it when it fired); closing it unregisters it.
			err = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_MOD, int(fd), &ev)
			if errors.Is(err, unix.ENOENT) {
				err = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, int(fd), &ev)
			}
		})
		if err == nil {
			err = serr
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// wait reports the tokens of ready sockets to wake, or returns nil at
// until (zero: no deadline). It returns an error once closed.
func (e *epoll) wait(until time.Time, wake func(tok uint64)) error {
	if err := e.f.SetReadDeadline(until); err != nil {
		return err
	}
	var (
		n    int
		werr error
	)
	err := e.rc.Read(func(epfd uintptr) bool {
		for {
			n, werr = unix.EpollWait(int(epfd), e.events, 0)
			if werr != unix.EINTR {
				break
			}
		}
		return n > 0 || werr != nil
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	case err != nil:
		return err
	case werr != nil:
		return fmt.Errorf("proxy: epoll_wait: %w", werr)
	}
	for _, ev := range e.events[:n] {
		wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
	}
	return nil
}

func (e *epoll) close() { e.f.Close() }
