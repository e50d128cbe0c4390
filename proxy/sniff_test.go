package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Request returns a client preface, SETTINGS and one request's HEADERS
// (split over a CONTINUATION when split is set), as a real client sends.
func h2Request(t testing.TB, authority string, split bool) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: authority}, {Name: ":path", Value: "/"},
		{Name: "user-agent", Value: strings.Repeat("x", 100)},
	} {
		enc.WriteField(f)
	}
	var out bytes.Buffer
	out.WriteString(http2Preface)
	fr := http2.NewFramer(&out, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	fr.WriteWindowUpdate(0, 1<<20)
	block := hb.Bytes()
	if !split {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true, EndStream: true})
	} else {
		half := len(block) / 2
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:half], EndStream: true,
			Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}, PadLength: 3})
		fr.WriteContinuation(1, true, block[half:])
	}
	return out.Bytes()
}

func sniff(in []byte) (string, error) {
	return SniffAuthority(bufio.NewReaderSize(bytes.NewReader(in), sniffBufferSize))
}

func TestSniffAuthority(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"http1", []byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local:8080\r\n\r\n"), "api.production.svc.cluster.local:8080", false},
		{"http1 absolute form", []byte("GET http://api.production.svc.cluster.local/ HTTP/1.1\r\nHost: other\r\n\r\n"), "api.production.svc.cluster.local", false},
		{"http1 no host", []byte("GET / HTTP/1.0\r\n\r\n"), "", true},
		{"http1 header too big", []byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", sniffBufferSize) + "\r\n\r\n"), "", true},
		{"http1 unterminated", []byte("GET / HTTP/1.1\r\nHost: a\r\n"), "", true},
		{"http2", h2Request(t, "api.production.svc.cluster.local", false), "api.production.svc.cluster.local", false},
		{"http2 continuation, padding, priority", h2Request(t, "api.production.svc.cluster.local:8080", true), "api.production.svc.cluster.local:8080", false},
		{"http2 preface only", []byte(http2Preface), "", true},
		{"tls in tls", []byte{0x16, 0x03, 0x01, 0x00, 0x10}, "", true},
		{"random bytes", []byte("\x00\x01\x02garbage"), "", true},
		{"empty", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sniff(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %q, %v; want %q, err=%v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errNoAuthority) {
				t.Fatalf("error %v is not errNoAuthority", err)
			}
		})
	}
}

// TestSniffLeavesBytes: sniffing consumes nothing; the backend sees the
// request exactly as the client sent it.
func TestSniffLeavesBytes(t *testing.T) {
	in := h2Request(t, "api.production.svc.cluster.local", true)
	r := bufio.NewReaderSize(bytes.NewReader(in), sniffBufferSize)
	if _, err := SniffAuthority(r); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if !bytes.Equal(rest, in) {
		t.Fatal("sniffing consumed bytes")
	}
}

func FuzzSniffAuthority(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local\r\n\r\n"))
	f.Add(h2Request(f, "api.production.svc.cluster.local", false))
	f.Add(h2Request(f, "a.b.svc.cluster.local:1", true))
	f.Add([]byte(http2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := sniff(in)
		if err == nil && got == "" {
			t.Fatal("empty authority without error")
		}
		if err != nil && !errors.Is(err, errNoAuthority) {
			t.Fatalf("error %v is not errNoAuthority", err)
		}
	})
}
