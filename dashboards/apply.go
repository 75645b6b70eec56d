package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client applies the dashboards to a Grafana through its HTTP API, with a
// service account token.
type Client struct {
	// URL is Grafana's root URL (https://grafana.example.com, or with a
	// sub-path when Grafana is served from one).
	URL   string
	Token string
	HTTP  *http.Client
}

// Applied is a dashboard as Grafana stored it.
type Applied struct {
	UID     string
	URL     string
	Version int
}

// APIError is an answer of Grafana's other than success, with what it
// means for doraflow's dashboards.
type APIError struct {
	Method, Path string
	Status       int
	// Code is Grafana's "status" field (version-mismatch, name-exists,
	// plugin-dashboard), Message its "message".
	Code, Message string
}

func (e *APIError) Error() string {
	what := fmt.Sprintf("grafana: %s %s: %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		what += " " + e.Code
	}
	if e.Message != "" {
		what += ": " + e.Message
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		return what + " (the token was refused: set DORAFLOW_GRAFANA_TOKEN to a valid service account token)"
	case e.Status == http.StatusForbidden:
		return what + " (the token's service account may not do this: it needs the Editor role, or dashboards:write and folders:create in the folder)"
	case e.Status == http.StatusPreconditionFailed && e.Code == "name-exists":
		return what + " (another dashboard in the doraflow folder has this title: rename or delete it)"
	case e.Status == http.StatusPreconditionFailed:
		return what + " (the dashboard changed in Grafana meanwhile: run apply again)"
	case e.Status == http.StatusBadRequest && strings.Contains(strings.ToLower(e.Message), "provisioned"):
		return what + " (this Grafana provisions the dashboard from files: update it with `doraflow dashboards generate` into its provisioning directory, or take it out of file provisioning to apply it through the API)"
	}
	return what
}

// Apply creates the doraflow folder if it is absent and creates or
// overwrites each dashboard in it. Running it again with the same
// dashboards changes nothing but their versions.
func (c *Client) Apply(ctx context.Context, ds []Dashboard) ([]Applied, error) {
	if err := c.ensureFolder(ctx); err != nil {
		return nil, err
	}
	var out []Applied
	for _, d := range ds {
		var got struct {
			UID     string `json:"uid"`
			URL     string `json:"url"`
			Version int    `json:"version"`
		}
		body := struct {
			Dashboard any    `json:"dashboard"`
			FolderUID string `json:"folderUid"`
			Overwrite bool   `json:"overwrite"`
			Message   string `json:"message"`
		}{d.Dashboard, FolderUID, true, "doraflow dashboards apply"}
		if err := c.do(ctx, http.MethodPost, "/api/dashboards/db", body, &got); err != nil {
			return out, fmt.Errorf("dashboard %s: %w", d.UID, err)
		}
		out = append(out, Applied{UID: got.UID, URL: got.URL, Version: got.Version})
	}
	return out, nil
}

// ensureFolder creates the folder unless it exists; one created meanwhile
// by someone else (409) is as good.
func (c *Client) ensureFolder(ctx context.Context) error {
	err := c.do(ctx, http.MethodGet, "/api/folders/"+url.PathEscape(FolderUID), nil, nil)
	var apiErr *APIError
	if err == nil || !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		return err
	}
	err = c.do(ctx, http.MethodPost, "/api/folders", map[string]string{"uid": FolderUID, "title": FolderTitle}, nil)
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
		return nil
	}
	return err
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("grafana: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("grafana: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("grafana: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("grafana: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var msg struct{ Message, Status string }
		if json.Unmarshal(raw, &msg) == nil {
			e.Code, e.Message = msg.Status, msg.Message
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("grafana: %s %s: answer: %w", method, path, err)
	}
	return nil
}
