package serve_test

// What a sender controls must never cut doraflow off from its bus: event
// types in headers and bodies, body sizes. And a bus connection that is lost
// for good must end the process, not leave it answering 503 forever.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
)

// busCases run a test against the embedded bus and against an external
// NATS server with its default limits (1 MB max_payload).
var busCases = []struct {
	name     string
	external bool
}{
	{"embedded", false},
	{"external", true},
}

func configFor(t *testing.T, external bool) config.Config {
	cfg := testConfig(t, testenv.ClickHouse(t))
	if external {
		cfg.NATSURL = externalNATS(t).ClientURL()
	}
	return cfg
}

// send posts req and returns the status and body.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// streamMsgs is the number of messages in a stream.
func streamMsgs(t *testing.T, srv *serve.Server, stream string) uint64 {
	t.Helper()
	ctx := context.Background()
	s, err := srv.Bus.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A signed delivery re-sent with a 4,100-character X-GitHub-Event (the
// header is not signed) once made NATS close the connection ("maximum
// control line exceeded") and every later webhook got 503. Now it is
// refused with the reason, and the next push is accepted.
func TestOverlongEventTypeLeavesTheBusAlone(t *testing.T) {
	for _, bc := range busCases {
		t.Run(bc.name, func(t *testing.T) {
			srv := start(t, configFor(t, bc.external))
			defer stop(srv)
			url := "http://" + srv.Addr() + "/webhooks/github"
			ping := githubtest.Delivery{Event: "ping", ID: "ping-1", Body: []byte(`{"zen": "Keep it logically awesome.", "hook_id": 1}`)}
			if code, body := send(t, githubtest.Request(url, secret, ping)); code != http.StatusOK {
				t.Fatalf("ping: %d %s", code, body)
			}
			attack := githubtest.Request(url, secret, ping)
			attack.Header.Set("X-GitHub-Event", strings.Repeat("p", 4100))
			if code, body := send(t, attack); code != http.StatusBadRequest || !strings.Contains(body, "event type") {
				t.Fatalf("4,100-character event type: got %d %s, want 400 naming the event type", code, body)
			}
			push := githubtest.Push("push-1", "acme/pay-api", strings.Repeat("0", 40), githubtest.SHA("e1"),
				githubtest.Commit{SHA: githubtest.SHA("e1"), Time: at(1, 10, 0)})
			if code, body := send(t, githubtest.Request(url, secret, push)); code != http.StatusAccepted {
				t.Fatalf("push after the attack: %d %s", code, body)
			}
			if !srv.Bus.Conn.IsConnected() {
				t.Errorf("bus connection %s", srv.Bus.Conn.Status())
			}
		})
	}
}

// When the bus connection is closed for good (here by a protocol error
// NATS does not reconnect after), the Server reports a fatal error, which
// `doraflow serve` turns into a non-zero exit for its supervisor to
// restart it; /healthz stops saying ok meanwhile.
func TestLostBusConnectionIsFatal(t *testing.T) {
	for _, bc := range busCases {
		t.Run(bc.name, func(t *testing.T) {
			srv := start(t, configFor(t, bc.external))
			defer stop(srv)
			// A subject longer than the server's control line: the server
			// answers -ERR and closes, and the client does not reconnect.
			_ = srv.Bus.Conn.Publish(strings.Repeat("x", 5000), nil)
			select {
			case err := <-srv.Err():
				if err == nil || !strings.Contains(err.Error(), "bus") {
					t.Errorf("fatal error %v does not name the bus", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no fatal error 10s after the bus connection closed (%s)", srv.Bus.Conn.Status())
			}
			resp, err := http.Get("http://" + srv.Addr() + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("/healthz with the bus connection closed: %d", resp.StatusCode)
			}
		})
	}
}

// bigPush is a push of n commits to repo, each with a message of pad
// bytes, so that its body has about the size wanted. Commit shas start with
// prefix (5 hex digits).
func bigPush(t *testing.T, id, repo, before, prefix string, n, pad int) (githubtest.Delivery, string) {
	t.Helper()
	commits := make([]githubtest.Commit, n)
	for i := range commits {
		commits[i] = githubtest.Commit{SHA: fmt.Sprintf("%s%035x", prefix, i), Time: at(1, 8, 0).Add(time.Duration(i) * time.Second)}
	}
	after := commits[n-1].SHA
	d := githubtest.Push(id, repo, before, after, commits...)
	var body map[string]any
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("m", pad)
	for _, c := range body["commits"].([]any) {
		c.(map[string]any)["message"] = msg
	}
	var err error
	if d.Body, err = json.Marshal(body); err != nil {
		t.Fatal(err)
	}
	return d, after
}

// Pushes of 2 MB and 20 MB (GitHub sends up to 25 MB) are stored and
// their commits become changes, on the embedded bus and on an external
// NATS server that takes at most 1 MB per message. The 20 MB push's
// canonical event (20,000 commits) is over 1 MB too.
func TestLargePushesAreStored(t *testing.T) {
	for _, bc := range busCases {
		t.Run(bc.name, func(t *testing.T) {
			cfg := configFor(t, bc.external)
			cfg.Collector.MaxBodyBytes = config.Default().Collector.MaxBodyBytes
			srv := start(t, cfg)
			defer stop(srv)
			url := "http://" + srv.Addr() + "/webhooks/github"
			small, head1 := bigPush(t, "big-1", "acme/pay-api", strings.Repeat("0", 40), "aaaaa", 2000, 1000)
			large, head2 := bigPush(t, "big-2", "acme/pay-api", head1, "bbbbb", 20000, 1000)
			for _, d := range []githubtest.Delivery{small, large} {
				t.Logf("push %s: %.1f MB", d.ID, float64(len(d.Body))/1e6)
				if code, body := send(t, githubtest.Request(url, secret, d)); code != http.StatusAccepted {
					t.Fatalf("push %s: %d %.300s", d.ID, code, body)
				}
			}
			post(t, srv, githubtest.DeploymentStatus("big-d", "acme/pay-api", 901, 9001, head2, "production", "success", at(2, 12, 0)))
			r := reportOf(t, srv, cfg)
			if r.Total.Changes != 22000 || r.Total.Deployments != 1 {
				t.Fatalf("changes %d, deployments %d; want 22000 changes of 1 deployment", r.Total.Changes, r.Total.Deployments)
			}
			if n := streamMsgs(t, srv, bus.RawStream); n != 3 {
				t.Errorf("raw archive holds %d deliveries, want 3", n)
			}
			// The embedded server takes 25 MB messages; the external one's
			// large messages went by reference.
			obs, err := srv.Bus.JS.ObjectStore(context.Background(), bus.PayloadBucket)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := obs.List(context.Background())
			if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
				t.Fatal(err)
			}
			if bc.external != (len(stored) >= 3) {
				t.Errorf("%d payloads stored by reference", len(stored))
			}
			t.Logf("%d payloads stored by reference", len(stored))
		})
	}
}

// Event names a sender makes up are answered 200 "ignored", publish
// nothing and are counted under one label value; made-up names never
// become metric series (3,000 of them once made 3,000 series). Over-long
// names and names with characters no source uses are refused.
func TestMadeUpEventTypesAreBounded(t *testing.T) {
	cfg := srcConfig(t)
	srv := start(t, cfg)
	defer stop(srv)
	cdevent := srcFixture(t, "cdevents", "service.deployed.json", nil)
	sources := []struct {
		name string
		req  func(typ string) *http.Request
	}{
		{"github", func(typ string) *http.Request {
			return githubtest.Request("http://"+srv.Addr()+"/webhooks/github", secret, githubtest.Delivery{Event: typ, ID: "id-" + typ, Body: []byte(`{}`)})
		}},
		{"gitlab", func(typ string) *http.Request {
			return srcRequest(srv, "/webhooks/gitlab", []byte(`{}`), map[string]string{"X-Gitlab-Token": srcGitLabToken, "X-Gitlab-Event": typ})
		}},
		{"pagerduty", func(typ string) *http.Request {
			body, _ := json.Marshal(map[string]any{"event": map[string]any{"id": "E-" + typ, "event_type": typ}})
			return srcPagerDutyRequest(srv, srcPagerDutySecret, "W-"+typ, body)
		}},
		{"opsgenie", func(typ string) *http.Request {
			body, _ := json.Marshal(map[string]any{"action": typ, "alert": map[string]any{"alertId": "a"}})
			return srcRequest(srv, "/webhooks/opsgenie", body, map[string]string{"X-Doraflow-Token": srcOpsgenieSecret})
		}},
		{"cdevents", func(typ string) *http.Request {
			return srcRequest(srv, "/webhooks/cdevents", cdevent, map[string]string{"Authorization": "Bearer " + srcCDEventsToken,
				"ce-specversion": "1.0", "ce-id": "id-" + typ, "ce-source": "/ci", "ce-type": typ})
		}},
	}
	const names = 300
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			for i := range names {
				typ := fmt.Sprintf("made.up.%s.%d", src.name, i)
				if code, body := send(t, src.req(typ)); code != http.StatusOK || !strings.Contains(body, `"ignored"`) {
					t.Fatalf("%s: got %d %s, want 200 ignored", typ, code, body)
				}
			}
			for _, bad := range []struct{ typ, reason string }{
				{strings.Repeat("e", 129), "longer than 128"},
				{"push.>", "character"},
				{"push*", "character"},
				{"push;x", "character"},
				{"pushé", "character"},
			} {
				if code, body := send(t, src.req(bad.typ)); code != http.StatusBadRequest || !strings.Contains(body, bad.reason) {
					t.Errorf("%.20q: got %d %s, want 400 with %q", bad.typ, code, body, bad.reason)
				}
			}
		})
	}
	if n := streamMsgs(t, srv, bus.RawStream); n != 0 {
		t.Errorf("made-up event types put %d deliveries in the archive", n)
	}
	metrics := metricsText(t, srv.Addr())
	series := map[string]int{}
	for _, line := range strings.Split(metrics, "\n") {
		for _, name := range []string{"doraflow_webhook_requests_total{", "doraflow_webhook_ignored_total{"} {
			if strings.HasPrefix(line, name) {
				series[name]++
				if strings.Contains(line, "made.up") || strings.Contains(line, "eeee") {
					t.Errorf("a made-up name became a label: %s", line)
				}
			}
		}
	}
	// Per source at most: 200 and 400 under event="other".
	for name, n := range series {
		if n > 2*len(sources) {
			t.Errorf("%s: %d series for %d sources", name, n, len(sources))
		}
	}
	if want := fmt.Sprintf(`doraflow_webhook_ignored_total{event="other",reason="event type not known",source="github"} %d`, names); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
