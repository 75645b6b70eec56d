package serve_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/config"
)

// startLogged starts role with cfg and returns the server and its log.
func startLogged(t *testing.T, cfg config.Config, role serve.Role) (*serve.Server, *testenv.LogBuffer) {
	t.Helper()
	var log testenv.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := serve.Start(ctx, cfg, role, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return srv, &log
}

// A configuration that is valid but likely wrong starts with a warning: a
// team glob that matches none of the repositories seen, and a serve that
// accepts no webhook at all.
func TestServeWarns(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	for _, d := range scenario() {
		post(t, srv, d)
	}
	reportOf(t, srv, cfg)
	stop(srv)

	cfg.Teams = append(cfg.Teams, config.Team{Name: "ghosts", Repos: []string{"acme/ghost-*", "ghost"}})
	srv, log := startLogged(t, cfg, serve.RoleAll)
	stop(srv)
	for _, want := range []string{
		`team ghosts: repos glob \"acme/ghost-*\" matches none of the 3 repositories seen so far`,
		`team platform: repos glob \"acme/infra\" matches none of the 3 repositories seen so far`,
		`team ghosts: repos glob \"ghost\" matches no repository`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, log.String())
		}
	}
	if strings.Contains(log.String(), "acme/pay-*") {
		t.Errorf("a glob that matches was warned about:\n%s", log.String())
	}

	cfg.GitHub.WebhookSecret = ""
	srv, log = startLogged(t, cfg, serve.RoleAll)
	stop(srv)
	if !strings.Contains(log.String(), "every source is disabled") {
		t.Errorf("no warning for a serve with every source disabled:\n%s", log.String())
	}
}
