package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/bus"
)

// errProxy stands between NATS clients and a server, and can send every
// client a protocol error as if from the server: one after which the NATS
// client closes its connection for good instead of reconnecting.
type errProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	clients []*lockedConn
}

// lockedConn serialises writes to a client, so that an injected line never
// lands inside a message the server sends.
type lockedConn struct {
	mu sync.Mutex
	net.Conn
}

func (c *lockedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

func newErrProxy(t *testing.T, target string) *errProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &errProxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *errProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	client := &lockedConn{Conn: c}
	p.mu.Lock()
	p.clients = append(p.clients, client)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c) }()
	_, _ = io.Copy(client, up)
}

// fail sends each client an -ERR that NATS clients treat as fatal.
func (p *errProxy) fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		_, _ = c.Write([]byte("-ERR 'doraflow test: connection revoked'\r\n"))
	}
}

// A `serve` whose connection to an external NATS is closed for good exits
// with a non-zero status (for its supervisor to restart it) instead of
// answering 503 forever.
func TestServeExitsWhenTheBusIsLost(t *testing.T) {
	natsSrv, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer natsSrv.Close()
	proxy := newErrProxy(t, strings.TrimPrefix(natsSrv.ClientURL(), "nats://"))
	const hookSecret = "lost-s3cret"
	proc := startServe(t, "collector", "DORAFLOW_NATS_URL=nats://"+proxy.ln.Addr().String(), "DORAFLOW_GITHUB_WEBHOOK_SECRET="+hookSecret)
	defer proc.stop()
	ping := githubtest.Delivery{Event: "ping", ID: "lost-ping", Body: []byte(`{"zen": "Design for failure."}`)}
	resp, err := http.DefaultClient.Do(githubtest.Request("http://"+proc.addr+"/webhooks/github", hookSecret, ping))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ping before: %d", resp.StatusCode)
	}

	proxy.fail()
	select {
	case <-proc.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still running 20s after its bus connection was closed\n%s", proc.logText())
	}
	var exit *exec.ExitError
	if !errors.As(proc.err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("serve ended with %v, want exit status 1\n%s", proc.err, proc.logText())
	}
	if !strings.Contains(proc.logText(), "bus: connection closed for good") {
		t.Errorf("serve's log does not say why it stopped:\n%s", proc.logText())
	}
}
