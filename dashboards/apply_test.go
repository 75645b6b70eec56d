package dashboards

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fakeGrafana answers the part of Grafana's HTTP API that apply uses as
// Grafana documents it (developers/http_api/folder, …/dashboard), and
// fails the test on any request Grafana would refuse as malformed.
type fakeGrafana struct {
	t          *testing.T
	mu         sync.Mutex
	folders    map[string]string
	dashboards map[string]map[string]any
	versions   map[string]int
	requests   []string
	// What to answer instead of success, if set.
	folderRace  bool           // another apply creates the folder between our GET and POST: 409
	dashboardIs map[string]int // uid → status: 400 provisioned, 412 …
	code        string         // the 412's status field
	role        string         // "viewer" answers 403 to writes
}

func newFakeGrafana(t *testing.T) (*fakeGrafana, *httptest.Server) {
	g := &fakeGrafana{t: t, folders: map[string]string{}, dashboards: map[string]map[string]any{}, versions: map[string]int{},
		dashboardIs: map[string]int{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (g *fakeGrafana) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer glsa_good" {
		answer(w, http.StatusUnauthorized, map[string]string{"message": "invalid API key"})
		return
	}
	if r.Header.Get("Accept") != "application/json" {
		g.t.Errorf("%s %s: Accept %q", r.Method, r.URL.Path, r.Header.Get("Accept"))
	}
	if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/json" {
		g.t.Errorf("%s %s: Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	if r.Method == http.MethodPost && g.role == "viewer" {
		answer(w, http.StatusForbidden, map[string]string{"message": "Access denied"})
		return
	}
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/folders/"):
		uid := strings.TrimPrefix(r.URL.Path, "/api/folders/")
		if title, ok := g.folders[uid]; ok {
			answer(w, http.StatusOK, map[string]any{"id": 1, "uid": uid, "title": title})
			return
		}
		answer(w, http.StatusNotFound, map[string]string{"message": "folder not found", "status": "not-found"})
	case r.Method == http.MethodPost && r.URL.Path == "/api/folders":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["uid"] == nil || body["title"] == nil {
			g.t.Errorf("POST /api/folders: body %v (%v)", body, err)
		}
		if g.folderRace {
			g.folders[FolderUID] = FolderTitle
			answer(w, http.StatusConflict, map[string]string{"message": "a folder with the same name already exists"})
			return
		}
		g.folders[body["uid"].(string)] = body["title"].(string)
		answer(w, http.StatusOK, map[string]any{"id": 1, "uid": body["uid"], "title": body["title"]})
	case r.Method == http.MethodPost && r.URL.Path == "/api/dashboards/db":
		var body struct {
			Dashboard map[string]any `json:"dashboard"`
			FolderUID string         `json:"folderUid"`
			Overwrite bool           `json:"overwrite"`
			Message   string         `json:"message"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			g.t.Errorf("POST /api/dashboards/db: %v", err)
		}
		uid, _ := body.Dashboard["uid"].(string)
		if uid == "" || body.Dashboard["title"] == nil || !body.Overwrite || body.Message == "" {
			g.t.Errorf("POST /api/dashboards/db: uid %q, overwrite %t, message %q", uid, body.Overwrite, body.Message)
		}
		if _, ok := g.folders[body.FolderUID]; !ok {
			answer(w, http.StatusBadRequest, map[string]string{"message": "folder not found"})
			return
		}
		if id, ok := body.Dashboard["id"]; ok && id != nil {
			g.t.Errorf("dashboard %s sent with id %v: Grafana would take it for another dashboard's", uid, id)
		}
		switch g.dashboardIs[uid] {
		case http.StatusBadRequest:
			answer(w, http.StatusBadRequest, map[string]string{"message": "Cannot save provisioned dashboard"})
			return
		case http.StatusPreconditionFailed:
			answer(w, http.StatusPreconditionFailed, map[string]string{"message": "The dashboard has been changed by someone else", "status": g.code})
			return
		}
		g.dashboards[uid] = body.Dashboard
		g.versions[uid]++
		answer(w, http.StatusOK, map[string]any{"id": 1, "uid": uid, "url": "/d/" + uid + "/x", "status": "success",
			"version": g.versions[uid], "slug": "x"})
	default:
		g.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

// Apply creates the folder once and the dashboards as generated; applying
// again finds the folder and overwrites them with the same content.
func TestApplyIsIdempotent(t *testing.T) {
	g, srv := newFakeGrafana(t)
	ds, err := Build("doraflow")
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{URL: srv.URL + "/", Token: "glsa_good", HTTP: srv.Client()}
	for run := 1; run <= 2; run++ {
		applied, err := c.Apply(context.Background(), ds)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if len(applied) != len(ds) {
			t.Fatalf("run %d: applied %d of %d", run, len(applied), len(ds))
		}
		for i, a := range applied {
			if a.UID != ds[i].UID || a.Version != run {
				t.Errorf("run %d: applied %+v", run, a)
			}
		}
	}
	want := []string{"GET /api/folders/doraflow", "POST /api/folders"}
	for range ds {
		want = append(want, "POST /api/dashboards/db")
	}
	want = append(want, "GET /api/folders/doraflow")
	for range ds {
		want = append(want, "POST /api/dashboards/db")
	}
	if !reflect.DeepEqual(g.requests, want) {
		t.Errorf("requests\n%v\nwant\n%v", g.requests, want)
	}
	if len(g.folders) != 1 || g.folders[FolderUID] != FolderTitle {
		t.Errorf("folders %v", g.folders)
	}
	for _, d := range ds {
		b, _ := d.JSON()
		var sent map[string]any
		json.Unmarshal(b, &sent)
		if !reflect.DeepEqual(g.dashboards[d.UID], sent) {
			t.Errorf("%s stored differs from the generated JSON", d.UID)
		}
	}
}

// Every refusal comes back as an error that says what it means.
func TestApplyErrors(t *testing.T) {
	ds, err := Build("doraflow")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		token string
		setup func(g *fakeGrafana)
		want  []string // in the error; none: success
	}{
		{"bad token", "glsa_bad", nil, []string{"401", "DORAFLOW_GRAFANA_TOKEN"}},
		{"viewer token", "glsa_good", func(g *fakeGrafana) { g.role = "viewer" }, []string{"403", "POST /api/folders", "Editor"}},
		{"provisioned dashboard", "glsa_good", func(g *fakeGrafana) { g.dashboardIs[TeamsUID] = 400 },
			[]string{"dashboard " + TeamsUID, "400", "provisioned", "dashboards generate"}},
		{"version conflict", "glsa_good", func(g *fakeGrafana) { g.dashboardIs[OverviewUID], g.code = 412, "version-mismatch" },
			[]string{"412 version-mismatch", "run apply again"}},
		{"title taken", "glsa_good", func(g *fakeGrafana) { g.dashboardIs[OverviewUID], g.code = 412, "name-exists" },
			[]string{"412 name-exists", "another dashboard"}},
		{"folder created meanwhile", "glsa_good", func(g *fakeGrafana) { g.folderRace = true }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, srv := newFakeGrafana(t)
			if c.setup != nil {
				c.setup(g)
			}
			client := &Client{URL: srv.URL, Token: c.token, HTTP: srv.Client()}
			_, err := client.Apply(context.Background(), ds)
			if c.want == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if len(g.dashboards) != len(ds) {
					t.Errorf("%d dashboards stored", len(g.dashboards))
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}
