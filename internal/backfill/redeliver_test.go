package backfill_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/githubtest"
)

// Failed deliveries are redelivered once each, through the cursor-paged
// list; one whose later attempt succeeded, one that succeeded, and one
// before --since are left alone; a second run asks for nothing (the
// redeliveries succeeded), so the command is safe to repeat.
func TestRedeliverFailedOnce(t *testing.T) {
	now := time.Now().UTC()
	api := githubtest.NewAPI(ghToken)
	defer api.Close()
	api.PerPage = 2
	api.SecondaryEvery = 4
	d := func(id int64, guid, ev string, code int, ago time.Duration, redelivery bool) githubtest.APIDelivery {
		return githubtest.APIDelivery{ID: id, GUID: guid, Event: ev, StatusCode: code, At: now.Add(-ago), Redelivery: redelivery}
	}
	api.AddRepo(&githubtest.Repo{FullName: repo, Commits: map[string]githubtest.APICommit{}, Hooks: map[int64][]githubtest.APIDelivery{
		42: {
			d(1, "g1", "push", 200, 2*time.Hour, false),
			d(2, "g2", "push", 502, 90*time.Minute, false),
			d(3, "g3", "deployment_status", 500, 80*time.Minute, false),
			d(4, "g3", "deployment_status", 202, 70*time.Minute, true),
			d(5, "g4", "issues", 0, 60*time.Minute, false), // timed out
			d(0, "g5", "push", 503, 30*time.Hour, false),   // before --since
		},
	}})
	client, err := backfill.NewGitHubClient(ghToken, api.URL, &backfill.Transport{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := backfill.RedeliverConfig{Repo: repo, HookID: 42, Since: now.Add(-24 * time.Hour)}

	var out strings.Builder
	res, err := backfill.Redeliver(context.Background(), client, cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Redelivered != 2 || res.Recovered != 1 || res.Listed != 5 {
		t.Errorf("first run %+v\n%s", res, out.String())
	}
	if !slices.Equal(api.Redelivered(), []int64{5, 2}) {
		t.Errorf("redelivered %v; want deliveries 5 and 2", api.Redelivered())
	}
	if !strings.Contains(out.String(), "redelivered "+repo+" delivery 2 (guid g2, push, status 502") {
		t.Errorf("output does not say what it did:\n%s", out.String())
	}

	out.Reset()
	res, err = backfill.Redeliver(context.Background(), client, cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Redelivered != 0 || res.Recovered != 3 || len(api.Redelivered()) != 2 {
		t.Errorf("second run %+v, redelivered %v; want nothing asked again\n%s", res, api.Redelivered(), out.String())
	}

	// A dry run says what it would do and asks nothing.
	api.AddRepo(&githubtest.Repo{FullName: "acme/other", Commits: map[string]githubtest.APICommit{},
		Hooks: map[int64][]githubtest.APIDelivery{7: {d(9, "g9", "push", 502, time.Hour, false)}}})
	out.Reset()
	res, err = backfill.Redeliver(context.Background(), client, backfill.RedeliverConfig{Repo: "acme/other", HookID: 7, Since: cfg.Since, DryRun: true}, &out)
	if err != nil || res.Redelivered != 1 || len(api.Redelivered()) != 2 || !strings.Contains(out.String(), "would redeliver") {
		t.Errorf("dry run: %+v, %v, redelivered %v\n%s", res, err, api.Redelivered(), out.String())
	}
	if api.Secondary.Load() == 0 {
		t.Error("no secondary limit was hit: the test does not exercise it")
	}

	// An organisation's webhook, through the organisation's endpoints.
	api.AddOrgHook("acme", 9, []githubtest.APIDelivery{d(20, "o1", "push", 500, time.Hour, false), d(21, "o2", "push", 200, time.Hour, false)})
	out.Reset()
	res, err = backfill.Redeliver(context.Background(), client, backfill.RedeliverConfig{Org: "acme", HookID: 9, Since: cfg.Since}, &out)
	if err != nil || res.Redelivered != 1 || !slices.Contains(api.Redelivered(), 20) {
		t.Errorf("organisation hook: %+v, %v, redelivered %v\n%s", res, err, api.Redelivered(), out.String())
	}
}
