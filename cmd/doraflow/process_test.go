package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var servingAddr = regexp.MustCompile(`msg="doraflow serving".* addr=(\S+)`)

// process is `doraflow serve` running as a subprocess.
type process struct {
	cmd  *exec.Cmd
	addr string        // where it serves HTTP
	done chan struct{} // closed when it has exited (see err)
	err  error         // its exit, once done
	mu   sync.Mutex
	log  strings.Builder
}

// startServe runs `doraflow serve --role role` with the environment
// (NAME=value) given, listening on a free loopback port, and returns once it
// serves.
func startServe(t *testing.T, role string, env ...string) *process {
	t.Helper()
	p := &process{done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "serve", "--role", role)
	p.cmd.Env = append(append(os.Environ(), beMain+"=1", "DORAFLOW_LISTEN=127.0.0.1:0", "DORAFLOW_DATA_DIR="+t.TempDir()), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := servingAddr.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case p.addr = <-found:
		return p
	case <-p.done:
		t.Fatalf("doraflow serve exited before serving: %v\n%s", p.err, p.logText())
	case <-time.After(30 * time.Second):
		p.stop()
		t.Fatalf("doraflow serve did not start within 30s\n%s", p.logText())
	}
	return nil
}

func (p *process) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop ends the process (SIGTERM) if it still runs, and waits for it.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}
