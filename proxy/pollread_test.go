//go:build linux

package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// TestPollReadHeldRecords: when the read deadline has passed before a run
// starts, RawConn.Read fails without calling back; what crypto/tls holds
// above the socket (here a record it decrypted and the reader took only a
// byte of) must still be forwarded, since a parked direction is woken by
// its socket alone. Once nothing is held the run reports the deadline, and
// the socket is not read meanwhile.
func TestPollReadHeldRecords(t *testing.T) {
	clientCfg, serverCfg := mtlsConfigs(t)
	c, s := tcpPair(t)
	client := tls.Client(c, clientCfg)
	server := tls.Server(newTransport(s, newBufferBudget(1<<20, nil)), serverCfg)
	handshake(t, client, server)
	if _, err := client.Write([]byte("held above the socket")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := server.Read(one); err != nil { // the rest stays in crypto/tls
		t.Fatal(err)
	}
	src := tlsSide(server, s)
	var got []byte
	buf := make([]byte, 4<<10)
	step := func() (int, error, error) {
		n, err := src.r.Read(buf)
		got = append(got, buf[:n]...)
		return n, nil, err
	}
	var p pollRead
	if !p.open(&src, step) {
		t.Fatal("a TLS source over a transport on TCP cannot be read through pollRead")
	}
	server.SetReadDeadline(time.Unix(1, 0))
	if werr, rerr := p.run(); werr != nil || rerr != nil {
		t.Fatalf("run with held bytes: %v, %v", werr, rerr)
	}
	if string(got) != "eld above the socket" {
		t.Fatalf("forwarded %q", got)
	}
	if _, rerr := p.run(); !errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatalf("run with nothing held: %v, want the deadline", rerr)
	}
	// The connection goes on: the next record arrives whole.
	server.SetReadDeadline(time.Time{})
	client.Write([]byte("next"))
	got = nil
	if _, _, err := step(); err != nil || string(got) != "next" {
		t.Fatalf("next record: %q, %v", got, err)
	}
}

// TestPollReadSeesFINBehindBytes: the read that takes the peer's last
// bytes learns of the FIN queued behind them, so the next one reads the
// end instead of waiting. A FIN that came with the bytes raises no event
// of its own once the poller has reported them, so a run that waited
// would wait for ever (with parking on, until the park delay).
func TestPollReadSeesFINBehindBytes(t *testing.T) {
	peer, c := tcpPair(t)
	if _, err := io.WriteString(peer, "bye"); err != nil {
		t.Fatal(err)
	}
	peer.(*net.TCPConn).CloseWrite()
	rc := rawConn(c)
	wait.Until(t, 10*time.Second, "the bytes and the FIN in the socket", func() bool {
		return tcpState(t, rc) == unix.BPF_TCP_CLOSE_WAIT && socketBytes(t, rc) == 3
	})
	p := pollRead{conn: c}
	buf := make([]byte, 4<<10)
	var (
		n          int
		err, after error
	)
	rc.Control(func(fd uintptr) {
		p.fd = int(fd)
		n, err = p.read(buf)
		_, after = p.read(buf)
	})
	if string(buf[:n]) != "bye" || err != nil || after != io.EOF {
		t.Fatalf("read %q, %v, then %v; want bye, then EOF", buf[:n], err, after)
	}
}

// TestReadHinted: what one read of a socket returns, and whether it says
// that more follows at once.
func TestReadHinted(t *testing.T) {
	for _, tt := range []struct {
		name     string
		send     string
		fin      bool
		bufSize  int
		want     string
		wantMore bool
		wantErr  error
	}{
		{"bytes then FIN", "bye", true, 64, "bye", true, nil},
		{"bytes only", "hi", false, 64, "hi", false, nil},
		{"more than the buffer", "hello, world", false, 4, "hell", true, nil},
		{"FIN only", "", true, 64, "", true, nil}, // 0 bytes: the end
		{"nothing", "", false, 64, "", false, syscall.EAGAIN},
	} {
		t.Run(tt.name, func(t *testing.T) {
			peer, c := tcpPair(t)
			io.WriteString(peer, tt.send)
			if tt.fin {
				peer.(*net.TCPConn).CloseWrite()
			}
			rc := rawConn(c)
			if rc == nil {
				t.Fatal("no TCP_INQ on this kernel: pollRead is never used")
			}
			wait.Until(t, 10*time.Second, "what the peer sent in the socket", func() bool {
				return socketBytes(t, rc) == len(tt.send) && (!tt.fin || tcpState(t, rc) == unix.BPF_TCP_CLOSE_WAIT)
			})
			buf := make([]byte, tt.bufSize)
			var (
				n    int
				more bool
				err  error
			)
			rc.Control(func(fd uintptr) { n, more, err = readHinted(int(fd), buf) })
			if string(buf[:n]) != tt.want || more != tt.wantMore || err != tt.wantErr {
				t.Fatalf("readHinted = %q, %v, %v; want %q, %v, %v", buf[:n], more, err, tt.want, tt.wantMore, tt.wantErr)
			}
		})
	}
}

// tcpState is the TCP state of the socket (unix.BPF_TCP_*).
func tcpState(t *testing.T, rc syscall.RawConn) uint8 {
	var (
		info *unix.TCPInfo
		err  error
	)
	if cerr := rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}
