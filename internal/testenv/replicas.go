package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// zookeeperJar is where Debian's zookeeper package puts the server (its
// manifest names the jars it needs).
const zookeeperJar = "/usr/share/java/zookeeper.jar"

// ReplicaCluster is what the cluster name of Replicas' servers is.
const ReplicaCluster = "doraflow"

// Replicas is a ClickHouse cluster of one shard whose servers replicate
// each other through a throwaway ZooKeeper, all on loopback: what
// clickhouse.cluster runs on. Everything stops with the test.
type Replicas struct {
	t        testing.TB
	bin      string
	procs    []*clickhouseProc
	database string
}

// ClickHouseReplicas starts n ClickHouse servers, replicas of one shard of
// cluster ReplicaCluster, and the ZooKeeper they coordinate through. It
// skips the test if ZooKeeper or ClickHouse is not installed, and fails it
// instead when $CI is set.
func ClickHouseReplicas(t testing.TB, n int) *Replicas {
	t.Helper()
	bin, err := clickhouseBinary()
	if err == nil {
		err = zookeeperInstalled()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testenv: replicas need ClickHouse and ZooKeeper in CI: %v; install them with scripts/clickhouse.sh ensure", err)
		}
		t.Skipf("testenv: %v; run scripts/clickhouse.sh ensure (or make test, which does that)", err)
	}
	zk := startZooKeeper(t)
	ports := make([]int, 2*n)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			t.Fatal(err)
		}
	}
	var servers strings.Builder
	for i := range n {
		fmt.Fprintf(&servers, "<replica><host>127.0.0.1</host><port>%d</port></replica>", ports[2*i])
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	r := &Replicas{t: t, bin: bin, database: "test_" + hex.EncodeToString(b[:])}
	for i := range n {
		dir := t.TempDir()
		extra := fmt.Sprintf(`    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>%d</interserver_http_port>
    <zookeeper><node><host>127.0.0.1</host><port>%d</port></node></zookeeper>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <remote_servers><%s><shard><internal_replication>true</internal_replication>%s</shard></%s></remote_servers>
    <macros><shard>01</shard><replica>r%d</replica></macros>
`, ports[2*i+1], zk, ReplicaCluster, servers.String(), ReplicaCluster, i+1)
		if err := writeClickHouseConfig(dir, ports[2*i], extra); err != nil {
			t.Fatal(err)
		}
		p := &clickhouseProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])), dir: dir}
		r.procs = append(r.procs, p)
		t.Cleanup(p.kill)
		if err := p.launch(bin); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// Addr is replica i's native-protocol address.
func (r *Replicas) Addr(i int) string { return r.procs[i].addr }

// DSN names the test's database on the given replicas, in that order (the
// order a client tries them in); all of them when none are given.
func (r *Replicas) DSN(replicas ...int) string {
	if len(replicas) == 0 {
		for i := range r.procs {
			replicas = append(replicas, i)
		}
	}
	addrs := make([]string, len(replicas))
	for k, i := range replicas {
		addrs[k] = r.procs[i].addr
	}
	return "clickhouse://" + strings.Join(addrs, ",") + "/" + r.database
}

// Sync waits until replica i has fetched every part the others hold of the
// test database's replicated tables: ClickHouse replicates asynchronously,
// so what one replica acknowledged is on the others a moment later.
func (r *Replicas) Sync(i int) {
	r.t.Helper()
	conn, err := open(r.procs[i].addr, "default")
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE 'Replicated%'", r.database)
	if err != nil {
		r.t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			r.t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		r.t.Fatal(err)
	}
	for _, table := range tables {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+r.database+"."+table); err != nil {
			r.t.Fatalf("testenv: sync replica %d of %s: %v", i, table, err)
		}
	}
}

// Kill ends replica i at once (SIGKILL), keeping its data.
func (r *Replicas) Kill(i int) { r.procs[i].kill() }

// Restart starts replica i again on its data, after Kill.
func (r *Replicas) Restart(i int) {
	r.t.Helper()
	if err := r.procs[i].launch(r.bin); err != nil {
		r.t.Fatal(err)
	}
}

func zookeeperInstalled() error {
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("no java for ZooKeeper: %w", err)
	}
	if _, err := os.Stat(zookeeperJar); err != nil {
		return fmt.Errorf("ZooKeeper (Debian's zookeeper package): %w", err)
	}
	return nil
}

// startZooKeeper runs a standalone ZooKeeper on a loopback port, its data in
// a temp dir, and returns the port once it answers.
func startZooKeeper(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("tickTime=500\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n",
		filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "zookeeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("java", "-Xmx256m", "-cp", zookeeperJar, "org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(dir, "zoo.cfg"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start ZooKeeper: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(readyTimeout)
	for {
		err := serving(port)
		if err == nil {
			return port
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "zookeeper.log"))
			t.Fatalf("testenv: ZooKeeper exited: %s", log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: ZooKeeper on port %d did not answer in %s: %v", port, readyTimeout, err)
		}
	}
}

// serving asks ZooKeeper for its state: it answers to commands before it
// serves sessions (ClickHouse 18.16 then crashes on its first ON CLUSTER
// query), and says "Mode: standalone" once it does.
func serving(port int) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return err
	}
	answer, _ := io.ReadAll(conn)
	if !strings.Contains(string(answer), "Mode: standalone") {
		return errors.New("ZooKeeper answered " + strconv.Quote(string(answer)))
	}
	return nil
}
