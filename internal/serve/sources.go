package serve

import (
	"github.com/doraflow/doraflow/collectors/cdevents"
	"github.com/doraflow/doraflow/collectors/generic"
	"github.com/doraflow/doraflow/collectors/github"
	"github.com/doraflow/doraflow/collectors/gitlab"
	"github.com/doraflow/doraflow/collectors/opsgenie"
	"github.com/doraflow/doraflow/collectors/pagerduty"
	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/config"
)

// Route is a configured source and where it listens.
type Route struct {
	Path   string
	Source webhook.Source
	// Event, when set, is the only event type this route's source parses
	// (the generic API has one source per kind under one name).
	Event string
}

// Disabled is a source left off because its secret is not configured.
type Disabled struct {
	Path, Setting string
}

// Sources are the collectors the configuration enables, and those it
// leaves off. A source without a secret is never open.
func Sources(cfg config.Config) ([]Route, []Disabled, error) {
	var routes []Route
	var off []Disabled
	add := func(path, setting string, configured bool, build func() (webhook.Source, error), event string) error {
		if !configured {
			off = append(off, Disabled{Path: path, Setting: setting})
			return nil
		}
		src, err := build()
		if err != nil {
			return err
		}
		routes = append(routes, Route{Path: path, Source: src, Event: event})
		return nil
	}
	steps := []func() error{
		func() error {
			return add("/webhooks/github", "DORAFLOW_GITHUB_WEBHOOK_SECRET", cfg.GitHub.WebhookSecret != "", func() (webhook.Source, error) {
				return github.New(github.Config{WebhookSecret: cfg.GitHub.WebhookSecret, IncidentLabels: cfg.GitHub.IncidentLabels})
			}, "")
		},
		func() error {
			return add("/webhooks/gitlab", "DORAFLOW_GITLAB_WEBHOOK_TOKEN", cfg.GitLab.WebhookToken != "", func() (webhook.Source, error) {
				return gitlab.New(gitlab.Config{WebhookToken: cfg.GitLab.WebhookToken, PipelineDeployments: cfg.GitLab.PipelineDeployments})
			}, "")
		},
		func() error {
			return add("/webhooks/pagerduty", "DORAFLOW_PAGERDUTY_WEBHOOK_SECRET", cfg.PagerDuty.WebhookSecret != "", func() (webhook.Source, error) {
				return pagerduty.New(pagerduty.Config{WebhookSecret: cfg.PagerDuty.WebhookSecret})
			}, "")
		},
		func() error {
			return add("/webhooks/opsgenie", "DORAFLOW_OPSGENIE_SECRET", cfg.Opsgenie.Secret != "", func() (webhook.Source, error) {
				return opsgenie.New(opsgenie.Config{Secret: cfg.Opsgenie.Secret, Header: cfg.Opsgenie.Header,
					Tags: cfg.Opsgenie.Tags, Priorities: cfg.Opsgenie.Priorities})
			}, "")
		},
		func() error {
			return add("/webhooks/cdevents", "DORAFLOW_CDEVENTS_TOKEN", cfg.CDEvents.Token != "", func() (webhook.Source, error) {
				return cdevents.New(cdevents.Config{Token: cfg.CDEvents.Token})
			}, "")
		},
		func() error {
			return add("/api/v1/deployments", "DORAFLOW_API_TOKEN", cfg.API.Token != "", func() (webhook.Source, error) {
				return generic.NewDeployments(generic.Config{APIToken: cfg.API.Token})
			}, "deployment")
		},
		func() error {
			return add("/api/v1/incidents", "DORAFLOW_API_TOKEN", cfg.API.Token != "", func() (webhook.Source, error) {
				return generic.NewIncidents(generic.Config{APIToken: cfg.API.Token})
			}, "incident")
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, err
		}
	}
	return routes, off, nil
}
