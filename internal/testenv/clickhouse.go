// Package testenv provides throwaway external services for integration tests.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/doraflow/doraflow/pkg/config"
)

// clickhouseBinEnv overrides the ClickHouse server binary. Setting it to a
// path that does not exist simulates a machine without ClickHouse.
const clickhouseBinEnv = "DORAFLOW_CLICKHOUSE_BIN"

// readyTimeout bounds how long we wait for a fresh server to answer a ping.
// A start normally takes well under a second; the slack is for loaded CI.
const readyTimeout = 30 * time.Second

// chServer is the per-process state set up by RunClickHouse. Each test
// package runs in its own process with its own TestMain, so a single package
// variable is enough; it is written before m.Run and only read afterwards.
var chServer struct {
	addr    string // 127.0.0.1:port of the native protocol; "" if not running
	missing string // non-empty (the reason) if the binary is not installed
}

// RunClickHouse starts a private ClickHouse server for the current test
// package, runs the tests and tears the server down. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }
//
// If ClickHouse is not installed the tests still run but ClickHouse(t) skips,
// unless $CI is set, in which case it fails: CI must never silently skip
// integration tests.
func RunClickHouse(m *testing.M) int {
	bin, err := clickhouseBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintf(os.Stderr, "testenv: ClickHouse is required in CI but not installed: %v\n"+
				"testenv: install it with scripts/clickhouse.sh ensure\n", err)
			return 1
		}
		chServer.missing = err.Error()
		return m.Run()
	}

	srv, err := startClickHouse(bin, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	defer srv.stop()
	chServer.addr = srv.addr
	return m.Run()
}

// ClickHouse creates a fresh, uniquely named database on the package's
// server, drops it when the test ends and returns its DSN
// (clickhouse://127.0.0.1:PORT/DBNAME, native protocol). It skips the test if
// ClickHouse is not installed and fails it if RunClickHouse was not called.
func ClickHouse(t testing.TB) string {
	t.Helper()
	if chServer.addr == "" {
		if chServer.missing != "" {
			t.Skipf("ClickHouse not installed (%s); run scripts/clickhouse.sh ensure (or make test, which does that)", chServer.missing)
		}
		t.Fatal("testenv.ClickHouse: no server running; call testenv.RunClickHouse from TestMain")
	}

	var b [8]byte
	_, _ = rand.Read(b[:]) // never returns an error
	db := "test_" + hex.EncodeToString(b[:])
	if err := adminExec(chServer.addr, "CREATE DATABASE "+db, 30*time.Second); err != nil {
		t.Fatalf("testenv: create database %s: %v", db, err)
	}
	t.Cleanup(func() {
		// Dropping tens of millions of rows while merges run (a scale
		// benchmark's store) took over 30 s on 18.16.
		if err := adminExec(chServer.addr, "DROP DATABASE IF EXISTS "+db, 5*time.Minute); err != nil {
			t.Errorf("testenv: drop database %s: %v", db, err)
		}
	})
	return "clickhouse://" + chServer.addr + "/" + db
}

// ClickHouseTLS starts a server of the test's own that also speaks the
// native protocol over TLS, with a certificate ca signed for
// ca.ServerName, and returns the DSN of a fresh database on its TLS port
// (without the TLS parameters: the caller says how to trust it). It stops
// with the test.
func ClickHouseTLS(t testing.TB, ca CA) string {
	t.Helper()
	bin, err := clickhouseBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testenv: ClickHouse is required in CI but not installed: %v", err)
		}
		t.Skipf("ClickHouse not installed (%s)", err)
	}
	p, err := startClickHouse(bin, &ca)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(p.stop)
	if err := adminExec(p.addr, "CREATE DATABASE tls_test", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return "clickhouse://" + p.secureAddr + "/tls_test"
}

// ClickHouseAddr returns the 127.0.0.1:PORT native-protocol address of the
// package's server, or "" if RunClickHouse did not start one.
func ClickHouseAddr() string { return chServer.addr }

// clickhouseBinary finds the server binary: $DORAFLOW_CLICKHOUSE_BIN, else the
// Debian split binary (clickhouse-server, in /usr/sbin which non-root PATHs
// often lack), else the upstream multi-call binary (clickhouse).
func clickhouseBinary() (string, error) {
	if bin := os.Getenv(clickhouseBinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("$%s: %w", clickhouseBinEnv, err)
		}
		return bin, nil
	}
	for _, name := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "clickhouse", "/usr/bin/clickhouse"} {
		if bin, err := exec.LookPath(name); err == nil {
			return bin, nil
		}
	}
	return "", errors.New("no clickhouse-server or clickhouse binary found")
}

type clickhouseProc struct {
	addr string
	// secureAddr is the native protocol over TLS, when started with a CA.
	secureAddr string
	dir        string
	cmd        *exec.Cmd  // nil until started
	exited     chan error // receives cmd.Wait's result once the server exits
}

// errExited marks a server that died during startup (as opposed to hanging).
var errExited = errors.New("server exited")

// startClickHouse launches a server whose config, data and logs all live in a
// new temp dir. The port is picked by the kernel and released just before the
// server binds it, so another process can occasionally steal it (the server
// then exits); retrying a couple of times makes that race irrelevant.
func startClickHouse(bin string, tls *CA) (*clickhouseProc, error) {
	for attempt := 1; ; attempt++ {
		p, err := tryStartClickHouse(bin, tls)
		if err == nil || attempt == 3 || !errors.Is(err, errExited) {
			return p, err
		}
	}
}

func tryStartClickHouse(bin string, tls *CA) (*clickhouseProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var extra string
	securePort := 0
	if tls != nil {
		if securePort, err = freePort(); err != nil {
			return nil, err
		}
		extra = fmt.Sprintf(secureXML, securePort, xmlEscape(tls.ServerCert), xmlEscape(tls.ServerKey))
	}
	dir, err := os.MkdirTemp("", "doraflow-clickhouse-")
	if err != nil {
		return nil, err
	}
	p := &clickhouseProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	if securePort != 0 {
		p.secureAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(securePort))
	}
	if err := writeClickHouseConfig(dir, port, extra); err != nil {
		p.stop()
		return nil, err
	}
	if err := p.launch(bin); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// launch runs the server on the config and data in p.dir and waits until it
// answers.
func (p *clickhouseProc) launch(bin string) error {
	out, err := os.OpenFile(filepath.Join(p.dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy of the fd

	var args []string
	if filepath.Base(bin) == "clickhouse" { // upstream multi-call binary
		args = append(args, "server")
	}
	args = append(args, "--config-file="+filepath.Join(p.dir, "config.xml"))
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		p.cmd = nil
		return fmt.Errorf("start %s: %w", bin, err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait() }()

	if err := waitReady(p.addr, p.exited); err != nil {
		return fmt.Errorf("ClickHouse (%s) on %s did not come up: %w\n%s", bin, p.addr, err, p.logTail())
	}
	return nil
}

// waitReady pings over the native protocol until the server answers, it
// exits, or readyTimeout passes.
func waitReady(addr string, exited chan error) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			exited <- werr // put it back for stop
			return fmt.Errorf("%w: %v", errExited, werr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s: %w", readyTimeout, err)
		}
	}
}

// stop kills the server and deletes everything it wrote. SIGKILL rather than
// SIGTERM: the data is thrown away anyway, and a graceful shutdown can take
// a second or two per package.
func (p *clickhouseProc) stop() {
	p.kill()
	_ = os.RemoveAll(p.dir)
}

// kill ends the server at once (SIGKILL), keeping what it wrote.
func (p *clickhouseProc) kill() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill() // harmless if it already exited
		<-p.exited               // no longer writing to dir
		p.cmd = nil
	}
}

// logTail returns the last lines of the server's error log, or of its
// stdout/stderr if the error log is empty (e.g. it died parsing the config).
func (p *clickhouseProc) logTail() string {
	for _, name := range []string{"clickhouse-server.err.log", "stdout.log"} {
		b, err := os.ReadFile(filepath.Join(p.dir, "log", name))
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		return "--- " + name + " (tail) ---\n" + strings.Join(lines, "\n")
	}
	return "(server wrote no log)"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// open connects over the native protocol; ClickHouse 18.16 is too old for
// clickhouse-go's HTTP transport. No Settings: with 18.16, string-valued
// settings break every query.
func open(addr, db string) (clickhouse.Conn, error) {
	return clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: db, Username: "default"},
		DialTimeout: 2 * time.Second,
	})
}

func ping(addr string) error {
	conn, err := open(addr, "default")
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

func adminExec(addr, query string, timeout time.Duration) error {
	conn, err := open(addr, "default")
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return conn.Exec(ctx, query)
}

// writeClickHouseConfig writes the smallest config 18.16 accepts (same shape
// as scripts/clickhouse.sh): loopback only, one native port, no HTTP or
// interserver port, everything under dir; extra is more of its elements.
func writeClickHouseConfig(dir string, tcpPort int, extra string) error {
	for _, sub := range []string{"data", "tmp", "log", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	// ClickHouse requires the trailing slash on directory paths.
	path := func(sub string) string { return xmlEscape(filepath.Join(dir, sub) + "/") }
	config := fmt.Sprintf(configXML,
		xmlEscape(filepath.Join(dir, "log", "clickhouse-server.log")),
		xmlEscape(filepath.Join(dir, "log", "clickhouse-server.err.log")),
		tcpPort,
		path("data"), path("tmp"), path("user_files"), path("format_schemas"), extra,
	)
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(config), 0o644); err != nil {
		return err
	}
	users := fmt.Sprintf(usersXML, PasswordUser, xmlEscape(Password), ReaderUser, xmlEscape(ReaderPassword))
	return os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o644)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // strings.Builder never fails
	return b.String()
}

// configXML is for ClickHouse 18.16, whose root element is <yandex> (newer
// releases also accept it). mark_cache_size has no default there: without it
// the server exits with "Not found: mark_cache_size". The timezone is pinned
// so DateTime results do not depend on the machine.
const configXML = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>%s</log>
        <errorlog>%s</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%d</tcp_port>
    <path>%s</path>
    <tmp_path>%s</tmp_path>
    <user_files_path>%s</user_files_path>
    <format_schema_path>%s</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <timezone>UTC</timezone>
%s
</yandex>
`

// secureXML adds the native protocol over TLS: the port, and the server's
// certificate and key (no client verification).
const secureXML = `    <tcp_port_secure>%d</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>%s</certificateFile>
            <privateKeyFile>%s</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>`

// Users of every test server beside default (which has no password): one
// with a password and the default profile, for tests of credentials, and a
// reader whose profile is read-only (what README "A read-only user"
// describes for report and the dashboards).
const (
	PasswordUser   = "doraflow_pw"
	Password       = "testenv-ch-password-5c1d"
	ReaderUser     = "doraflow_reader"
	ReaderPassword = "testenv-ch-reader-9e2b"
)

// AsUser is dsn (one ClickHouse returned) as user with password.
func AsUser(dsn, user, password string) string {
	return strings.Replace(dsn, "clickhouse://", "clickhouse://"+user+":"+password+"@", 1)
}

const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default></default>
        <readonly>
            <readonly>2</readonly>
        </readonly>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <%[1]s>
            <password>%[2]s</password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </%[1]s>
        <%[3]s>
            <password>%[4]s</password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>readonly</profile>
            <quota>default</quota>
        </%[3]s>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
`

// Conn is a raw connection to the server a DSN of ClickHouse names, for a
// test to query what doraflow stored, and the DSN's database; it closes
// with the test.
func Conn(t testing.TB, dsn string) (clickhouse.Conn, string) {
	t.Helper()
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := open(d.Hosts()[0], "default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, d.Database
}
