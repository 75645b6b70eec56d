package cdevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/cdevents/sdk-go/pkg/api"
	"github.com/package-url/packageurl-go"
)

// customData is what doraflow reads from a CDEvent's customData, when it is
// a JSON object: the repository ("owner/name", or a URL of it) and the full
// commit sha ("sha", or "commit").
type customData struct {
	Repo, SHA, Commit string
}

// readCustomData reads the keys doraflow knows from customData. customData
// belongs to the producer: when it is not a JSON object (XML, a string, an
// array) it simply says nothing doraflow reads. A known key of the wrong
// type is an error, since the producer meant to tell doraflow something.
func readCustomData(ev api.CDEventReader) (customData, error) {
	if ct := ev.GetCustomDataContentType(); ct != "" && !isJSON(ct) {
		return customData{}, nil
	}
	raw, err := ev.GetCustomDataRaw()
	if err != nil {
		return customData{}, nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return customData{}, nil
	}
	var c customData
	for _, f := range []struct {
		key string
		dst *string
	}{{"repo", &c.Repo}, {"sha", &c.SHA}, {"commit", &c.Commit}} {
		key, dst := f.key, f.dst
		v, ok := obj[key]
		if !ok || string(v) == "null" {
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return customData{}, fmt.Errorf("customData.%s is not a string", key)
		}
	}
	return c, nil
}

// isJSON reports whether a media type is JSON (application/json,
// text/json, or any +json type).
func isJSON(mediaType string) bool {
	mt, _, _ := strings.Cut(strings.ToLower(mediaType), ";")
	mt = strings.TrimSpace(mt)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// commitOf finds the repository and commit an artifact was built from. The
// rule, first match wins:
//
// Repository: customData.repo; else the repository of the purl's vcs_url
// qualifier (pkg:oci/app@sha256:...?vcs_url=git%2Bhttps://github.com/acme/app.git);
// else the purl's namespace/name (pkg:github/acme/app@..., also
// pkg:gitlab/group/sub/app@...). A purl without a namespace (pkg:oci/app)
// names no repository. Note that the purl spec lower-cases github and
// bitbucket names: for a repository with capitals, send customData.repo.
//
// Commit: customData.sha; else customData.commit; else the purl qualifier
// commit=<sha>; else the revision after "@" in vcs_url, when it is a sha;
// else the purl version, when it is a sha (pkg:github/acme/app@<sha>).
//
// A sha must be full (40 or, for SHA-256 repositories, 64 hex digits):
// correlation matches it against pushed commits. An explicit one that is not
// is an error; a purl version or vcs_url revision that is not a sha is a tag
// and is passed over.
func commitOf(c customData, artifactID string) (repo, sha string, err error) {
	type candidate struct{ from, value string }
	shas := []candidate{{"customData.sha", c.SHA}, {"customData.commit", c.Commit}}
	repo = repoName(c.Repo)
	if artifactID != "" {
		p, err := parsePurl(artifactID)
		if err != nil {
			return "", "", fmt.Errorf("subject.content.artifactId %q is not a purl: %w", artifactID, err)
		}
		q := p.Qualifiers.Map()
		vcsRepo, vcsRev := splitVCSURL(q["vcs_url"])
		if repo == "" {
			repo = vcsRepo
		}
		if repo == "" && p.Namespace != "" {
			repo = p.Namespace + "/" + p.Name
		}
		shas = append(shas, candidate{"purl qualifier commit", q["commit"]})
		if isFullSHA(vcsRev) {
			shas = append(shas, candidate{"purl vcs_url", vcsRev})
		}
		if isFullSHA(p.Version) {
			shas = append(shas, candidate{"purl version", p.Version})
		}
	}
	for _, s := range shas {
		v := strings.ToLower(strings.TrimSpace(s.value))
		if v == "" {
			continue
		}
		if !isFullSHA(v) {
			return "", "", fmt.Errorf("%s %q is not a full commit sha (40 or 64 hex digits)", s.from, s.value)
		}
		return repo, v, nil
	}
	return repo, "", nil
}

// parsePurl is packageurl.FromString minus its panic: v0.1.1 indexes the
// value of every qualifier, so "?commit" (no "=") would crash it.
func parsePurl(s string) (packageurl.PackageURL, error) {
	rest, _, _ := strings.Cut(s, "#")
	if i := strings.LastIndex(rest, "?"); i >= 0 {
		for _, item := range strings.Split(rest[i+1:], "&") {
			if !strings.Contains(item, "=") {
				return packageurl.PackageURL{}, fmt.Errorf("qualifier %q has no value", item)
			}
		}
	}
	return packageurl.FromString(s)
}

// splitVCSURL splits a purl vcs_url ("git+https://host/owner/name.git@rev")
// into the repository path and the revision.
func splitVCSURL(v string) (repo, rev string) {
	if v == "" {
		return "", ""
	}
	// The "@rev" suffix is after the last "/", so a user in the authority
	// (git+ssh://git@host/...) is not mistaken for it.
	if slash := strings.LastIndex(v, "/"); slash >= 0 {
		if at := strings.LastIndex(v[slash:], "@"); at >= 0 {
			v, rev = v[:slash+at], v[slash+at+1:]
		}
	}
	return repoName(v), strings.ToLower(rev)
}

// repoName normalises a repository reference to "owner/name": the path of a
// URL (https://github.com/acme/app.git, git+ssh://git@host/acme/app,
// git@host:acme/app.git) or the reference itself.
func repoName(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if _, after, ok := strings.Cut(s, "://"); ok {
		// Drop the authority: everything up to the first "/" after it.
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			s = u.Path
		} else if _, path, ok := strings.Cut(after, "/"); ok {
			s = path
		} else {
			return ""
		}
	} else if at, rest, ok := strings.Cut(s, ":"); ok && strings.Contains(at, "@") {
		s = rest // scp-like git@host:owner/name
	}
	s = strings.Trim(s, "/")
	s = strings.TrimSuffix(s, ".git")
	return strings.Trim(s, "/")
}

// isFullSHA reports whether s is a full SHA-1 or SHA-256 commit id.
func isFullSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

// errNoCommit explains what a deployment must carry.
var errNoCommit = errors.New("deployment names no commit: send customData.sha, or an artifactId purl with a commit=<sha> qualifier, a vcs_url ending in @<sha>, or the sha as its version")

// errNoRepo explains what a deployment must carry.
var errNoRepo = errors.New("deployment names no repository: send customData.repo (owner/name), or an artifactId purl with a namespace (pkg:github/<owner>/<name>@...) or a vcs_url qualifier")
