package identity

// ForgetVerifiedChains empties the verified-chain cache of src's current
// identity, so that the next handshake verifies its peer's chain in full
// (BenchmarkHandshakeFull's cache-miss case).
func ForgetVerifiedChains(src *FileSource) { src.cur.Load().trust.verified.forget() }

func (c *verifiedCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.probation.Init()
	c.protected.Init()
}
