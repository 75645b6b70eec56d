package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/bus"
)

// rssBound is what the collector may reach while 128 senders post 20 MB
// bodies at once: the default in-flight budget (256 MiB) with room for the
// Go heap's slack, far below the 5 GB such a storm once took.
const rssBound = 1 << 30

// 128 concurrent 20 MB bodies with a wrong signature, half with a
// Content-Length and half chunked (no length to check up front), against
// the real binary: every request is answered 401 or 503, the collector's
// peak RSS stays under rssBound, and a signed push afterwards is accepted.
func TestBodiesInFlightAreBounded(t *testing.T) {
	natsSrv, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer natsSrv.Close()
	const hookSecret = "mem-s3cret"
	proc := startServe(t, "collector", "DORAFLOW_NATS_URL="+natsSrv.ClientURL(), "DORAFLOW_GITHUB_WEBHOOK_SECRET="+hookSecret)
	defer proc.stop()
	addr := proc.addr

	// 20 MiB; not JSON, but a wrong signature is refused before that matters.
	body := bytes.Repeat([]byte(`{"pad": "`+strings.Repeat("x", 1013)+`"}`), 20<<10)
	const senders = 128
	codes := make([]int, senders)
	errs := make([]error, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], errs[i] = rawPost(addr, fmt.Sprintf("mem-%d", i), body, i%2 == 1)
		}()
	}
	wg.Wait()
	peak := vmHWM(t, proc.cmd.Process.Pid)
	count := map[int]int{}
	for i, code := range codes {
		if errs[i] != nil {
			t.Errorf("sender %d: %v", i, errs[i])
			continue
		}
		count[code]++
		if code != http.StatusUnauthorized && code != http.StatusServiceUnavailable {
			t.Errorf("sender %d: %d, want 401 or 503", i, code)
		}
	}
	t.Logf("answers %v; collector peak RSS %d MiB (bound %d MiB)", count, peak>>20, rssBound>>20)
	if peak > rssBound {
		t.Errorf("collector peak RSS %d MiB, over the bound of %d MiB", peak>>20, rssBound>>20)
	}

	push := githubtest.Push("mem-push", "acme/pay-api", strings.Repeat("0", 40), githubtest.SHA("m1"),
		githubtest.Commit{SHA: githubtest.SHA("m1"), Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	resp, err := http.DefaultClient.Do(githubtest.Request("http://"+addr+"/webhooks/github", hookSecret, push))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("signed push after the storm: %d %s", resp.StatusCode, answer)
	}
}

// rawPost sends a GitHub push with a wrong signature over its own
// connection, with a Content-Length or chunked, and returns the status.
// The body is written while the answer is read: a server that refuses
// early answers before the body is through.
func rawPost(addr, id string, body []byte, chunked bool) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(45 * time.Second))
	var head strings.Builder
	fmt.Fprintf(&head, "POST /webhooks/github HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", addr)
	fmt.Fprintf(&head, "X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: %s\r\n", id, githubtest.Sign("wrong", body))
	if chunked {
		head.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", len(body))
	}
	go func() {
		if _, err := io.WriteString(conn, head.String()); err != nil {
			return
		}
		const piece = 256 << 10
		for off := 0; off < len(body); off += piece {
			p := body[off:min(off+piece, len(body))]
			if chunked {
				if _, err := fmt.Fprintf(conn, "%x\r\n", len(p)); err != nil {
					return
				}
			}
			if _, err := conn.Write(p); err != nil {
				return
			}
			if chunked {
				if _, err := io.WriteString(conn, "\r\n"); err != nil {
					return
				}
			}
		}
		if chunked {
			_, _ = io.WriteString(conn, "0\r\n\r\n")
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}
