//go:build linux

package proxy

import (
	"crypto/tls"
	"errors"
	"os"
	"testing"
	"time"
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
