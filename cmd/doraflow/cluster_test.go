package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/demo"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/processor"
)

// On a 3-node JetStream cluster with every stream on all three, webhooks
// from several senders keep flowing while the event stream's leader is shut
// down and then a second node: the collector answers 503 while there is no
// quorum and never 2xx for a delivery it could not persist; when the nodes
// return, every delivery is on the bus once and the facts are a clean run's.
func TestClusterLosesNodesAndNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test runs in the full suite")
	}
	ctx := context.Background()
	cluster := natstest.StartCluster(t, 3)
	hooks, teams := demo.Generate(demo.Options{Seed: 11, Days: 4, End: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})
	cfg := config.Default()
	cfg.NATSURL = cluster.URL()
	cfg.NATS.Replicas = 3
	cfg.ClickHouseDSN = testenv.ClickHouse(t)
	cfg.GitHub.WebhookSecret = "cluster"
	cfg.Listen = "127.0.0.1:0"
	cfg.Collector.PublishTimeout = 2 * time.Second
	cfg.Processor.LeaseTTL = 2 * time.Second
	cfg.Processor.AckWait = 2 * time.Second
	for _, tm := range teams {
		cfg.Teams = append(cfg.Teams, config.Team{Name: tm.Name, Repos: tm.Repos})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, slog.New(slog.NewTextHandler(testenv.FailureLog(t), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(ctx)

	// Senders retry what is refused, as a Git host's redelivery would.
	var mu sync.Mutex
	statuses := map[int]int{}
	var refused []time.Time // when each 503 came
	url := "http://" + srv.Addr() + "/webhooks/github"
	post := func(h demo.Webhook) int {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(h.Body))
		req.Header.Set("X-GitHub-Event", h.Event)
		req.Header.Set("X-GitHub-Delivery", h.Delivery)
		req.Header.Set("X-Hub-Signature-256", demo.Signature(cfg.GitHub.WebhookSecret, h.Body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	jobs := make(chan demo.Webhook)
	var senders sync.WaitGroup
	for range 4 {
		senders.Go(func() {
			for h := range jobs {
				for deadline := time.Now().Add(90 * time.Second); ; {
					code := post(h)
					mu.Lock()
					statuses[code]++
					if code == http.StatusServiceUnavailable {
						refused = append(refused, time.Now())
					}
					mu.Unlock()
					if code/100 == 2 || time.Now().After(deadline) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	faults := make(chan error, 1)
	var outage outage
	go func() { outage, err = loseTwoNodes(ctx, cluster, srv); faults <- err }()
	for _, h := range hooks {
		jobs <- h
		time.Sleep(40 * time.Millisecond) // paced, so the faults land while webhooks flow
	}
	close(jobs)
	senders.Wait()
	if err := <-faults; err != nil {
		t.Fatal(err)
	}
	t.Logf("answers: %v", statuses)
	for code, n := range statuses {
		if code/100 != 2 && code != http.StatusServiceUnavailable {
			t.Errorf("%d answers %d: only 2xx and 503 are right", n, code)
		}
	}
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Error("no 503 while two of three nodes were down: the faults did not land while webhooks flowed")
	}
	// A 503 only from the first node's loss (its streams elect new leaders)
	// until every stream the collector writes has a leader again, give or
	// take a publish's timeout for a request under way then.
	last := outage.quorumBack.Add(cfg.Collector.PublishTimeout + time.Second)
	for _, at := range refused {
		if at.Before(outage.firstDown) || at.After(last) {
			t.Errorf("503 at %s, outside the outage (%s until quorum at %s)", at.Format(time.StampMilli),
				outage.firstDown.Format(time.StampMilli), outage.quorumBack.Format(time.StampMilli))
		}
	}
	t.Logf("503s from %s to %s; outage %s until quorum at %s", refused[0].Format(time.StampMilli),
		refused[len(refused)-1].Format(time.StampMilli), outage.firstDown.Format(time.StampMilli), outage.quorumBack.Format(time.StampMilli))

	// A request the cluster takes while it elects leaders may go unanswered:
	// each look gets a few seconds, and the looks go on for two minutes.
	cluster.WaitForLeader()
	want := digest(cleanRun(t, cfg, hooks))
	var stored uint64
	var got []string
	var idleAt time.Time
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the faults: raw archive holds %d of %d deliveries; ClickHouse %d facts of a clean run's %d when last idle (%s)\nfirst difference: %s",
				stored, len(hooks), len(got), len(want), idleAt.Format(time.StampMilli), firstDifference(got, want))
		}
		look, cancel := context.WithTimeout(ctx, 5*time.Second)
		if raw, err := srv.Bus.JS.Stream(look, bus.RawStream); err == nil {
			stored = raw.CachedInfo().State.Msgs
		}
		idle, err := processor.Idle(look, srv.Bus.JS, cfg.Processor.Partitions)
		if err == nil && idle {
			if facts, err := srv.Store().Facts(look); err == nil {
				got, idleAt = digest(facts), time.Now()
			}
		}
		cancel()
		if stored > uint64(len(hooks)) {
			t.Fatalf("raw archive holds %d deliveries; %d were sent: some twice", stored, len(hooks))
		}
		if stored == uint64(len(hooks)) && slices.Equal(got, want) {
			break
		}
	}
	t.Logf("%d webhooks, every one stored once; %d facts equal to a clean run", len(hooks), len(want))
}

// outage is when the cluster lost its first node, and when every stream a
// collector writes had a leader again after both lost nodes came back.
type outage struct{ firstDown, quorumBack time.Time }

// loseTwoNodes shuts down the event stream's leader, then a second node,
// and brings both back.
func loseTwoNodes(ctx context.Context, cluster *natstest.Cluster, srv *serve.Server) (outage, error) {
	var o outage
	time.Sleep(500 * time.Millisecond)
	stream, err := srv.Bus.JS.Stream(ctx, bus.EventStream)
	if err != nil {
		return o, err
	}
	leader := stream.CachedInfo().Cluster.Leader
	first := cluster.Node(leader)
	if first < 0 {
		return o, fmt.Errorf("no node named %q leads the event stream", leader)
	}
	second := (first + 1) % len(cluster.Servers)
	o.firstDown = time.Now()
	cluster.Stop(first)
	time.Sleep(time.Second)
	cluster.Stop(second)
	time.Sleep(3 * time.Second) // no quorum
	if err := errors.Join(cluster.Restart(first), cluster.Restart(second)); err != nil {
		return o, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return o, errors.New("streams without a leader 30 s after the nodes returned")
		}
		if led(ctx, srv, bus.RawStream) && led(ctx, srv, bus.EventStream) {
			o.quorumBack = time.Now()
			return o, nil
		}
	}
}

// led says whether the stream has a leader, asking the cluster.
func led(ctx context.Context, srv *serve.Server, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	stream, err := srv.Bus.JS.Stream(ctx, name)
	return err == nil && stream.CachedInfo().Cluster != nil && stream.CachedInfo().Cluster.Leader != ""
}
