package testenv

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards loopback TCP connections to a target and can cut them all,
// to test what a component does when a server goes away and comes back, or
// goes away in the middle of an answer.
type Proxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	// fromTarget counts the bytes the target has sent to clients.
	fromTarget int64
	// resume, while the proxy is stalled, is closed by Resume.
	resume chan struct{}
	// cut, when armed, closes every connection once fromTarget reaches at;
	// down says whether the proxy then refuses new ones too.
	cut struct {
		armed bool
		at    int64
		down  bool
	}
}

// NewProxy starts a proxy to target; it stops with the test.
func NewProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Resume()
		p.Cut()
	})
	return p
}

// Addr is where to connect instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLocked(true)
}

// FromTarget is how many bytes the target has sent to clients so far, over
// all connections: a test reads it around a request to learn how long the
// answer is, and where in it to cut.
func (p *Proxy) FromTarget() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fromTarget
}

// CutAfter cuts as Cut does (refusing new connections until Restore) once
// the target has sent n more bytes to clients: the client sees exactly
// those n bytes of the answer, then the connection closes mid-stream.
func (p *Proxy) CutAfter(n int64) { p.arm(n, true) }

// DropAfter closes every connection once the target has sent n more bytes
// to clients, and keeps accepting new ones: one failure in the middle of an
// answer, which a retry gets past.
func (p *Proxy) DropAfter(n int64) { p.arm(n, false) }

func (p *Proxy) arm(n int64, down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut.armed, p.cut.at, p.cut.down = true, p.fromTarget+n, down
}

// Stall holds every byte in both directions, on open connections and new
// ones, until Resume: a server that hangs without closing anything.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume == nil {
		p.resume = make(chan struct{})
	}
}

// Resume passes bytes on again after Stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *Proxy) cutLocked(down bool) {
	p.down = p.down || down
	p.cut.armed = false
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go p.pipe(out, in, false)
		go p.pipe(in, out, true)
	}
}

// pipe copies src to dst until either closes. The target's side is counted,
// and cut at the armed byte: what is written before the cut is exactly what
// the client receives.
func (p *Proxy) pipe(dst, src net.Conn, fromTarget bool) {
	defer func() {
		dst.Close()
		src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk, cut, down := buf[:n], false, false
			if fromTarget {
				chunk, cut, down = p.count(chunk)
			}
			p.mu.Lock()
			stalled := p.resume
			p.mu.Unlock()
			if stalled != nil {
				<-stalled
			}
			if len(chunk) > 0 {
				if _, werr := dst.Write(chunk); werr != nil {
					return
				}
			}
			if cut {
				p.mu.Lock()
				p.cutLocked(down)
				p.mu.Unlock()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// count adds chunk to the bytes from the target and returns the part of it
// to pass on, whether the armed cut is reached and, if so, whether the
// proxy is to stay down after it.
func (p *Proxy) count(chunk []byte) ([]byte, bool, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut.armed && p.fromTarget+int64(len(chunk)) >= p.cut.at {
		chunk = chunk[:max(p.cut.at-p.fromTarget, 0)]
		p.fromTarget += int64(len(chunk))
		return chunk, true, p.cut.down
	}
	p.fromTarget += int64(len(chunk))
	return chunk, false, false
}
