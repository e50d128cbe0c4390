package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// limit is one physical limit of this machine, measured in the same run as
// the table so the ratios are read against the same noise.
type limit struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	How   string  `json:"how"`
}

// measureLimits runs Go's crypto, plain loopback TCP and `openssl speed` on
// the proxies' core: Go's part in a child process of this binary, pinned
// like a proxy, so both speak of the core the proxies get.
func measureLimits(ctx context.Context, d time.Duration, core, self string) []limit {
	args := []string{"-duration", d.String()}
	bin := self
	if core != "" {
		args = append([]string{"-c", core, bin}, args...)
		bin = "taskset"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=limits")
	var out []limit
	if b, err := cmd.Output(); err != nil {
		out = append(out, limit{Name: "Go limits", How: "failed: " + err.Error()})
	} else if err := json.Unmarshal(b, &out); err != nil {
		out = append(out, limit{Name: "Go limits", How: "failed: " + err.Error()})
	}
	if l, err := opensslSpeed(ctx, d, core); err == nil {
		out = append(out, l...)
	} else {
		out = append(out, limit{Name: "openssl speed", How: "failed: " + err.Error()})
	}
	return out
}

// limitsMain is the child of measureLimits: it prints the Go limits as JSON.
func limitsMain(args []string) error {
	fs := flag.NewFlagSet("limits", flag.ContinueOnError)
	d := fs.Duration("duration", time.Second, "time per limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(goLimits(context.Background(), *d))
}

func goLimits(ctx context.Context, d time.Duration) []limit {
	var out []limit
	add := func(name string, v float64, unit, how string) {
		out = append(out, limit{name, v, unit, how})
	}
	add("Go AES-128-GCM seal", goAESGCM(d)/1e6, "MB/s", "16 KiB records")
	sign, verify := goECDSA(d)
	add("Go ECDSA P-256 sign", sign, "op/s", "")
	add("Go ECDSA P-256 verify", verify, "op/s", "")
	x := goX25519(d)
	add("Go X25519 (keygen+shared)", x, "op/s", "")
	// Server side of a full mTLS 1.3 handshake: one signature, two
	// verifications (client leaf, issuer), one key exchange.
	perHS := 1/sign + 2/verify + 1/x
	add("Go mTLS server handshake crypto bound", 1/perHS, "hs/s", fmt.Sprintf("1 sign + 2 verify + 1 X25519 = %.0f µs", perHS*1e6))
	add("loopback TCP, no TLS", loopbackTCP(ctx, d)/1e6, "MB/s", "one stream of 64 KiB writes, sender and receiver on one core")
	return out
}

func goAESGCM(d time.Duration) float64 {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	blk, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(blk)
	nonce := make([]byte, aead.NonceSize())
	buf := make([]byte, 16<<10, 16<<10+aead.Overhead())
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		for range 64 {
			aead.Seal(buf[:0], nonce, buf[:16<<10], nil)
			n += 16 << 10
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func goECDSA(d time.Duration) (sign, verify float64) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := sha256.Sum256([]byte("bench"))
	var sig []byte
	n, start := 0, time.Now()
	for time.Since(start) < d/2 {
		sig, _ = ecdsa.SignASN1(rand.Reader, key, h[:])
		n++
	}
	sign = float64(n) / time.Since(start).Seconds()
	n, start = 0, time.Now()
	for time.Since(start) < d/2 {
		ecdsa.VerifyASN1(&key.PublicKey, h[:], sig)
		n++
	}
	return sign, float64(n) / time.Since(start).Seconds()
}

func goX25519(d time.Duration) float64 {
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	n, start := 0, time.Now()
	for time.Since(start) < d/2 {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		_, _ = k.ECDH(peer.PublicKey())
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

func loopbackTCP(ctx context.Context, d time.Duration) float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0
	}
	buf := make([]byte, 64<<10)
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			break
		}
	}
	c.Close()
	n := <-got
	return float64(n) / time.Since(start).Seconds()
}

var (
	reAES   = regexp.MustCompile(`(?m)^AES-128-GCM\s.*\s([\d.]+)k\s*$`)
	reECDSA = regexp.MustCompile(`(?m)^\s*256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)`)
	reX     = regexp.MustCompile(`(?m)^\s*253 bits ecdh \(X25519\)\s+\S+s\s+([\d.]+)`)
)

func opensslSpeed(ctx context.Context, d time.Duration, core string) ([]limit, error) {
	secs := strconv.Itoa(max(1, int(d.Seconds()/3)))
	run := func(args ...string) (string, error) {
		args = append([]string{"speed", "-seconds", secs}, args...)
		bin := "openssl"
		if core != "" {
			args = append([]string{"-c", core, bin}, args...)
			bin = "taskset"
		}
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}
	var out []limit
	s, err := run("-evp", "aes-128-gcm")
	if err != nil {
		return nil, fmt.Errorf("openssl speed: %w", err)
	}
	if m := reAES.FindStringSubmatch(s); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		out = append(out, limit{"OpenSSL AES-128-GCM", v * 1000 / 1e6, "MB/s", "16 KiB blocks"})
	}
	s, err = run("ecdsap256", "ecdhx25519")
	if err != nil {
		return out, fmt.Errorf("openssl speed: %w", err)
	}
	var sign, verify, x float64
	if m := reECDSA.FindStringSubmatch(s); m != nil {
		sign, _ = strconv.ParseFloat(m[1], 64)
		verify, _ = strconv.ParseFloat(m[2], 64)
		out = append(out, limit{"OpenSSL ECDSA P-256 sign", sign, "op/s", ""},
			limit{"OpenSSL ECDSA P-256 verify", verify, "op/s", ""})
	}
	if m := reX.FindStringSubmatch(s); m != nil {
		x, _ = strconv.ParseFloat(m[1], 64)
		out = append(out, limit{"OpenSSL X25519 derive", x, "op/s", ""})
	}
	if sign > 0 && verify > 0 && x > 0 {
		perHS := 1/sign + 2/verify + 2/x
		out = append(out, limit{"OpenSSL mTLS server handshake crypto bound", 1 / perHS, "hs/s",
			fmt.Sprintf("1 sign + 2 verify + 2 X25519 = %.0f µs", perHS*1e6)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("openssl speed: output not understood: %s", strings.TrimSpace(firstLine(s)))
	}
	return out, nil
}
