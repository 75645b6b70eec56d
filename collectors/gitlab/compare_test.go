package gitlab

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/doraflow/doraflow/pkg/event"
)

// A fake of GET /api/v4/projects/:id/repository/compare as GitLab documents
// it: the project path URL-encoded as the id, PRIVATE-TOKEN auth.
func TestCompare(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("PRIVATE-TOKEN") != "gl-token":
			http.Error(w, `{"message": "401 Unauthorized"}`, http.StatusUnauthorized)
		case r.URL.EscapedPath() != "/api/v4/projects/acme%2Fpay/repository/compare":
			http.Error(w, `{"message": "404 Project Not Found"}`, http.StatusNotFound)
		case r.URL.Query().Get("from") != "b1" || r.URL.Query().Get("to") != "h1":
			http.Error(w, `{"message": "404 Commit Not Found"}`, http.StatusNotFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"commits": [
				{"id": "c1", "authored_date": "2026-01-02T08:00:00+01:00"},
				{"id": "h1", "authored_date": "2026-01-02T09:00:00Z"}],
				"compare_timeout": false, "compare_same_ref": false}`))
		}
	}))
	defer api.Close()
	c, err := NewComparer("gl-token", api.URL+"/api/v4")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := c.Compare(ctx, "acme/pay", "b1", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	p := e.Push
	if e.ID != "gitlab:compare:acme/pay:b1...h1" || p.Before != "b1" || p.After != "h1" || len(p.Commits) != 2 ||
		p.Commits[0].Time.Hour() != 7 || p.Commits[1].SHA != "h1" {
		t.Errorf("compare event: %+v %+v", e, p)
	}
	if _, err := c.Compare(ctx, "acme/pay", "b1", "unknown"); !errors.Is(err, event.ErrNotComparable) {
		t.Errorf("unknown commit: %v, want ErrNotComparable", err)
	}
	if _, err := NewComparer("", ""); err == nil {
		t.Error("a comparer without a token")
	}
}
