// Package natstest starts real NATS JetStream servers for tests: a cluster
// of embedded nats-servers routed to each other on loopback, the way
// nats-server's own JetStream cluster tests run one.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is n JetStream servers of one cluster on loopback.
type Cluster struct {
	t       testing.TB
	name    string
	dir     string
	ports   []int // client ports, fixed so a restarted node keeps its address
	routes  []int // cluster ports
	Servers []*server.Server
}

// StartCluster starts n clustered JetStream servers and waits until the
// cluster has a meta leader that knows every node (before, a stream of n
// replicas finds no place); they shut down with the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, name: "doraflow-test", dir: t.TempDir(), ports: freePorts(t, n), routes: freePorts(t, n), Servers: make([]*server.Server, n)}
	for i := range n {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	c.waitForPeers(n)
	return c
}

// waitForPeers waits until the meta leader counts n peers: a leader is
// elected by a quorum, before the last nodes have joined.
func (c *Cluster) waitForPeers(n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s != nil && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("natstest: the meta leader does not count %d peers after 30s", n)
}

func (c *Cluster) start(i int) error {
	var routes []*url.URL
	for j, p := range c.routes {
		if j != i {
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
		}
	}
	opts := &server.Options{
		ServerName: fmt.Sprintf("n%d", i+1),
		Host:       "127.0.0.1",
		Port:       c.ports[i],
		JetStream:  true,
		StoreDir:   filepath.Join(c.dir, fmt.Sprintf("n%d", i+1)),
		Cluster:    server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: c.routes[i]},
		Routes:     routes,
		NoSigs:     true,
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natstest: node %d: %w", i+1, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("natstest: node %d not ready after 10s", i+1)
	}
	c.Servers[i] = s
	return nil
}

// URL is a client URL naming every node, so a client fails over.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.ports))
	for i, p := range c.ports {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return strings.Join(urls, ",")
}

// Stop shuts node i down (its storage stays, for Restart).
func (c *Cluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
	c.Servers[i] = nil
}

// Restart starts node i again on its address and storage.
func (c *Cluster) Restart(i int) error { return c.start(i) }

// Node is the index of the running node of that server name, or -1.
func (c *Cluster) Node(name string) int {
	for i, s := range c.Servers {
		if s != nil && s.Name() == name {
			return i
		}
	}
	return -1
}

// WaitForLeader waits until the running nodes agree on a JetStream meta
// leader.
func (c *Cluster) WaitForLeader() {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s != nil && s.JetStreamIsLeader() {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("natstest: no JetStream meta leader after 20s")
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	var ls []net.Listener
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
