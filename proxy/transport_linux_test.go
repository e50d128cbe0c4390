package proxy

import (
	"bytes"
	"crypto/rand"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// TestTransportReadsAhead: records that arrived together are read from the
// socket once, handed to crypto/tls one by one, and a direction's fill
// returns them all in one call without waiting on the network.
func TestTransportReadsAhead(t *testing.T) {
	client, server, _, serverRaw := tlsPair(t, nil)
	payload := make([]byte, 48<<10) // three full records
	rand.Read(payload)
	cs := tlsSide(client, nil)
	if err := cs.write(payload); err != nil {
		t.Fatal(err)
	}

	ss := tlsSide(server, serverRaw.Conn)
	// readAhead as a direction sets it once it sees bulk data; an empty
	// splicer: no idle timeout, no parking.
	ss.tr.readAhead = true
	d := &direction{s: &splicer{}, src: &ss}
	buf := make([]byte, largeBufSize)
	// Poll until the socket holds all three records, so that what follows
	// does not depend on how fast loopback delivers them.
	tcp := serverRaw.Conn.(*net.TCPConn)
	rc, _ := tcp.SyscallConn()
	wait.Until(t, 10*time.Second, "all three records in the socket", func() bool { return socketBytes(t, rc) >= len(payload) })
	before := serverRaw.reads.Load()
	d.large = true // a bulk buffer: fill gathers what is held
	n, err := d.fill(buf)
	if err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Time{})
	if n != len(payload) || !bytes.Equal(buf[:n], payload) {
		t.Fatalf("read %d bytes, want all %d in order", n, len(payload))
	}
	if reads := serverRaw.reads.Load() - before; reads > 2 {
		t.Errorf("three records took %d socket reads, want at most 2 (one that reads ahead, one that times out at once)", reads)
	}
	if ss.tr.rbuf != nil {
		t.Error("transport keeps its read buffer once drained")
	}
}

// socketBytes is how many bytes wait in the socket's receive queue.
func socketBytes(t *testing.T, rc syscall.RawConn) int {
	var n int
	var err error
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}
