package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	gh "github.com/google/go-github/v60/github"
)

// RedeliverConfig configures a redelivery of a GitHub webhook's failed
// deliveries.
type RedeliverConfig struct {
	// Repo (owner/name) or Org owns the hook.
	Repo, Org string
	HookID    int64
	// Since bounds the deliveries looked at (GitHub keeps 3 days of them).
	Since time.Time
	// DryRun says what would be redelivered without asking.
	DryRun bool
}

// Validate explains every problem of the configuration at once.
func (c RedeliverConfig) Validate() error {
	var errs []error
	switch {
	case c.Repo == "" && c.Org == "":
		errs = append(errs, errors.New("redeliver github: name the hook's repository (--repo owner/name) or organisation (--org ORG)"))
	case c.Repo != "" && c.Org != "":
		errs = append(errs, errors.New("redeliver github: --repo and --org exclude each other"))
	case c.Repo != "":
		if owner, name, ok := strings.Cut(c.Repo, "/"); !ok || owner == "" || name == "" {
			errs = append(errs, fmt.Errorf("redeliver github: --repo %q: want owner/name", c.Repo))
		}
	}
	if c.HookID <= 0 {
		errs = append(errs, errors.New("redeliver github: --hook-id is required: the id of the webhook (in its settings URL, …/hooks/<id>)"))
	}
	if c.Since.IsZero() {
		errs = append(errs, errors.New("redeliver github: --since is required"))
	}
	return errors.Join(errs...)
}

// RedeliverResult counts what Redeliver did.
type RedeliverResult struct {
	Listed      int // deliveries in the window
	Failed      int // distinct deliveries (GUIDs) none of whose attempts succeeded
	Redelivered int // of which asked to be redelivered (or would be, dry run)
	Recovered   int // distinct deliveries that failed once and succeeded later
}

// Redeliver asks GitHub to redeliver the hook's deliveries since
// cfg.Since that never succeeded, once each, and writes a line per
// delivery to out. A delivery is one GUID: each attempt (the original and
// every redelivery) is listed under it, so one whose later attempt
// succeeded is left alone, and running Redeliver again asks nothing
// twice that has succeeded since. (A redelivery GitHub has not attempted
// yet may be asked again; its GUID is the X-GitHub-Delivery the collector
// deduplicates on, so it counts once.)
func Redeliver(ctx context.Context, client *gh.Client, cfg RedeliverConfig, out io.Writer) (RedeliverResult, error) {
	var res RedeliverResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	where := cfg.Org
	list := func(opts *gh.ListCursorOptions) ([]*gh.HookDelivery, *gh.Response, error) {
		return client.Organizations.ListHookDeliveries(ctx, cfg.Org, cfg.HookID, opts)
	}
	redeliver := func(id int64) error {
		_, _, err := client.Organizations.RedeliverHookDelivery(ctx, cfg.Org, cfg.HookID, id)
		return err
	}
	if cfg.Repo != "" {
		owner, name, _ := strings.Cut(cfg.Repo, "/")
		where = cfg.Repo
		list = func(opts *gh.ListCursorOptions) ([]*gh.HookDelivery, *gh.Response, error) {
			return client.Repositories.ListHookDeliveries(ctx, owner, name, cfg.HookID, opts)
		}
		redeliver = func(id int64) error {
			_, _, err := client.Repositories.RedeliverHookDelivery(ctx, owner, name, cfg.HookID, id)
			return err
		}
	}
	// Newest first: the first attempt seen of a GUID is its latest.
	type guid struct {
		latest    *gh.HookDelivery
		succeeded bool
		failed    bool
	}
	byGUID := map[string]*guid{}
	var order []string
	opts := &gh.ListCursorOptions{PerPage: 100}
pages:
	for {
		page, resp, err := list(opts)
		if err != nil {
			return res, fmt.Errorf("redeliver github: list deliveries of hook %d of %s: %w", cfg.HookID, where, err)
		}
		for _, d := range page {
			if d.GetDeliveredAt().Before(cfg.Since) {
				break pages
			}
			res.Listed++
			g := byGUID[d.GetGUID()]
			if g == nil {
				g = &guid{latest: d}
				byGUID[d.GetGUID()] = g
				order = append(order, d.GetGUID())
			}
			if code := d.GetStatusCode(); code >= 200 && code < 300 {
				g.succeeded = true
			} else {
				g.failed = true
			}
		}
		if resp.Cursor == "" {
			break
		}
		opts.Cursor = resp.Cursor
	}
	verb := "redelivered"
	if cfg.DryRun {
		verb = "would redeliver"
	}
	for _, id := range order {
		g := byGUID[id]
		switch {
		case g.succeeded && g.failed:
			res.Recovered++
			continue
		case g.succeeded:
			continue
		}
		res.Failed++
		d := g.latest
		if !cfg.DryRun {
			// go-github reports the endpoint's 202 as an AcceptedError:
			// GitHub took the request.
			var accepted *gh.AcceptedError
			if err := redeliver(d.GetID()); err != nil && !errors.As(err, &accepted) {
				return res, fmt.Errorf("redeliver github: delivery %d (%s) of hook %d of %s: %w", d.GetID(), id, cfg.HookID, where, err)
			}
		}
		res.Redelivered++
		fmt.Fprintf(out, "%s %s delivery %d (guid %s, %s, status %d at %s)\n", verb, where, d.GetID(), id, d.GetEvent(),
			d.GetStatusCode(), d.GetDeliveredAt().UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "hook %d of %s: %d deliveries since %s; %d never succeeded, %s %d; %d had failed and succeeded on a later attempt\n",
		cfg.HookID, where, res.Listed, cfg.Since.UTC().Format(time.RFC3339), res.Failed, verb, res.Redelivered, res.Recovered)
	return res, nil
}
