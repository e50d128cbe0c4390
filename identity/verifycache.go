package identity

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// Bounds of verifiedCache: maxVerified chains in all, at most
// maxProbation of them seen only once.
const (
	maxVerified  = 4096
	maxProbation = maxVerified / 4
)

// verifiedCache remembers chains that verified, by a hash of their exact
// DER bytes (chainKey), until the chain's validity window ends. It is a
// segmented LRU: a chain enters on probation and moves to the protected
// segment when it is seen again. A peer that keeps coming back (a gateway,
// a workload's proxy) is protected; chains seen once, which is all a
// holder of many valid certificates gets from presenting each one once,
// churn the probation segment only. Flushing a protected entry takes two
// full handshakes with a certificate of its own for every protected entry
// it displaces, where a wholesale reset of the cache would cost one
// handshake per entry and drop every good peer at once. Only chains that
// verified enter, so only holders of certificates issued under our
// anchors can fill it at all.
type verifiedCache struct {
	mu        sync.Mutex
	entries   map[[sha256.Size]byte]*list.Element // of *cachedChain
	probation list.List                           // most recently used first
	protected list.List                           // most recently used first
}

type cachedChain struct {
	key [sha256.Size]byte
	verifiedChain
	protected bool
}

// get returns the identity of the chain with key if it verified before and
// now is inside its validity window; it forgets a chain that has expired.
func (c *verifiedCache) get(key [sha256.Size]byte, now time.Time) (Name, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return Name{}, false
	}
	ch := e.Value.(*cachedChain)
	switch {
	case now.After(ch.notAfter):
		c.removeLocked(e)
		return Name{}, false
	case now.Before(ch.notBefore):
		return Name{}, false
	case ch.protected:
		c.protected.MoveToFront(e)
	default:
		c.promoteLocked(e)
	}
	return ch.name, true
}

// promoteLocked moves a chain seen again from probation to the protected
// segment, demoting the least recently used protected one if full.
func (c *verifiedCache) promoteLocked(e *list.Element) {
	ch := c.probation.Remove(e).(*cachedChain)
	ch.protected = true
	c.entries[ch.key] = c.protected.PushFront(ch)
	if c.protected.Len() > maxVerified-maxProbation {
		old := c.protected.Remove(c.protected.Back()).(*cachedChain)
		old.protected = false
		c.entries[old.key] = c.probation.PushFront(old)
	}
}

// put remembers a chain that verified, on probation; past maxProbation the
// least recently used chain on probation is forgotten.
func (c *verifiedCache) put(key [sha256.Size]byte, v verifiedChain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		e.Value.(*cachedChain).verifiedChain = v // verified again, e.g. once it became valid
		return
	}
	if c.entries == nil {
		c.entries = make(map[[sha256.Size]byte]*list.Element)
	}
	c.entries[key] = c.probation.PushFront(&cachedChain{key: key, verifiedChain: v})
	if c.probation.Len() > maxProbation {
		c.removeLocked(c.probation.Back())
	}
}

func (c *verifiedCache) removeLocked(e *list.Element) {
	ch := e.Value.(*cachedChain)
	if ch.protected {
		c.protected.Remove(e)
	} else {
		c.probation.Remove(e)
	}
	delete(c.entries, ch.key)
}

// len is the number of chains remembered.
func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
