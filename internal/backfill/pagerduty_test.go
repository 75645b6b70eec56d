package backfill_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/config"
)

const (
	pdToken  = "pd-token"
	pdSecret = "pd-secret"
)

type pdIncident struct {
	ID, Status, Service string
	Created, Changed    time.Time
}

// fakePagerDuty serves GET /incidents as PagerDuty documents it: the
// incidents created in [since, until), offset/limit paged with more, two
// a page; every 2nd request is a 429 with ratelimit-reset.
func fakePagerDuty(t *testing.T, incidents []pdIncident) (*httptest.Server, *atomic.Int64) {
	var calls, limited atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("Authorization") != "Token token="+pdToken || r.URL.Path != "/incidents" {
			http.Error(w, `{"error": {"message": "Unauthorized", "code": 2006}}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if n%2 == 0 {
			limited.Add(1)
			w.Header().Set("ratelimit-limit", "960")
			w.Header().Set("ratelimit-remaining", "0")
			w.Header().Set("ratelimit-reset", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error": {"message": "Rate Limit Exceeded", "code": 2020}}`)
			return
		}
		q := r.URL.Query()
		since, err1 := time.Parse(time.RFC3339, q.Get("since"))
		until, err2 := time.Parse(time.RFC3339, q.Get("until"))
		if err1 != nil || err2 != nil || until.Sub(since) > 180*24*time.Hour {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error": {"message": "Invalid Input Provided", "code": 2001}}`)
			return
		}
		var in []map[string]any
		for _, i := range incidents {
			if i.Created.Before(since) || !i.Created.Before(until) {
				continue
			}
			inc := map[string]any{"id": i.ID, "type": "incident", "title": "incident " + i.ID, "status": i.Status,
				"created_at": i.Created.Format(time.RFC3339), "last_status_change_at": i.Changed.Format(time.RFC3339),
				"service": map[string]any{"id": "PSVC1", "type": "service_reference", "summary": i.Service}}
			if i.Status == "resolved" {
				inc["resolved_at"] = i.Changed.Format(time.RFC3339)
			}
			in = append(in, inc)
		}
		offset, _ := strconv.Atoi(q.Get("offset"))
		limit := min(2, max(1, atoiOr(q.Get("limit"), 25)))
		from, to := min(offset, len(in)), min(offset+limit, len(in))
		_ = json.NewEncoder(w).Encode(map[string]any{"incidents": append([]map[string]any{}, in[from:to]...),
			"limit": limit, "offset": offset, "more": to < len(in)})
	}))
	t.Cleanup(srv.Close)
	return srv, &limited
}

func atoiOr(s string, d int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return d
}

// pdWebhook is PagerDuty's documented incident.resolved delivery
// (collectors/pagerduty/testdata) for incident id, resolved at at.
func pdWebhook(t *testing.T, srv *serve.Server, eventID, incidentID, service string, created, at time.Time) {
	t.Helper()
	raw, err := os.ReadFile("../../collectors/pagerduty/testdata/incident.resolved.json")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	ev := body["event"].(map[string]any)
	ev["id"], ev["occurred_at"] = eventID, at.Format(time.RFC3339)
	data := ev["data"].(map[string]any)
	data["id"], data["created_at"] = incidentID, created.Format(time.RFC3339)
	data["service"].(map[string]any)["summary"] = service
	b, _ := json.Marshal(body)
	mac := hmac.New(sha256.New, []byte(pdSecret))
	mac.Write(b)
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/webhooks/pagerduty", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PagerDuty-Signature", "v1="+hex.EncodeToString(mac.Sum(nil)))
	req.Header.Set("X-Webhook-Id", "wh-"+eventID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pagerduty webhook: %d %s", resp.StatusCode, msg)
	}
}

// PagerDuty incidents backfilled (offset/more paging, 429s) end in
// ClickHouse with their time to restore, once each, whether or not their
// webhooks came too; one created before --since is not fetched.
func TestPagerDutyBackfill(t *testing.T) {
	incidents := []pdIncident{
		{ID: "PINC1", Status: "resolved", Service: "payments-api", Created: at(2, 13, 0), Changed: at(2, 15, 0)},
		{ID: "PINC2", Status: "resolved", Service: "payments-api", Created: at(4, 9, 0), Changed: at(4, 9, 30)},
		{ID: "PINC3", Status: "acknowledged", Service: "payments-api", Created: at(5, 1, 0), Changed: at(5, 1, 10)},
		{ID: "PINC4", Status: "resolved", Service: "payments-api", Created: at(6, 1, 0), Changed: at(6, 5, 0)},
		{ID: "POLD", Status: "resolved", Service: "payments-api", Created: at(-3, 1, 0), Changed: at(-3, 2, 0)},
	}
	api, limited := fakePagerDuty(t, incidents)
	cfg := testConfig(t)
	cfg.PagerDuty.WebhookSecret = pdSecret
	cfg.Teams = []config.Team{{Name: "payments", Repos: []string{"acme/pay-*"}, Services: []string{"payments-*"}}}
	srv := start(t, cfg)
	// The webhook of one incident arrives before the backfill.
	pdWebhook(t, srv, "01EVRESOLVED1", "PINC1", "payments-api", at(2, 13, 0), at(2, 15, 0))
	ctx := context.Background()
	now := time.Now().UTC()
	bcfg := backfill.Config{Since: at(1, 0, 0), Until: now, Keep: cfg.Processor.Retention.Keep, Now: now, Concurrency: 1}
	s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{JS: srv.Bus.JS, Partitions: cfg.Processor.Partitions,
		Replicas: 1, Progress: io.Discard, Label: "backfill:pagerduty"}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	p, err := backfill.NewPagerDuty(backfill.PagerDutyConfig{Token: pdToken, APIURL: api.URL}, s.Transport)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(ctx, p.Targets())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 4 || limited.Load() == 0 {
		t.Errorf("result %+v after %d rate-limit answers; want the 4 incidents since day 1", res, limited.Load())
	}
	// The webhook of another one after it.
	pdWebhook(t, srv, "01EVRESOLVED4", "PINC4", "payments-api", at(6, 1, 0), at(6, 5, 0))
	pay := reportOf(t, srv).Teams[0]
	// Opened in the window: 4; restored: 2h, 30m, 4h → median 2h.
	if pay.Incidents != 4 || pay.TimeToRestoreMedian == nil || *pay.TimeToRestoreMedian != 2*3600 {
		t.Errorf("payments: %d incidents, time to restore %v; want 4, 2h", pay.Incidents, pay.TimeToRestoreMedian)
	}
}
