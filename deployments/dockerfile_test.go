package deployments

import (
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

const dockerfile = "../Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	raw, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur string
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		cur += " " + strings.TrimSuffix(trimmed, "\\")
		if strings.HasSuffix(trimmed, "\\") {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

// finalStage is the instructions after the last FROM.
func finalStage(ins []instruction) []instruction {
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].cmd == "FROM" {
			return ins[i:]
		}
	}
	return nil
}

var (
	uidOnce sync.Once
	uid     string
)

// imageUID is the numeric user the image runs as: Kubernetes' runAsUser
// must be the same.
func imageUID(t *testing.T) string {
	t.Helper()
	uidOnce.Do(func() {
		for _, in := range finalStage(readDockerfile(t)) {
			if in.cmd == "USER" {
				uid, _, _ = strings.Cut(in.args, ":")
			}
		}
	})
	return uid
}

// pinnedImage is an image with a version tag (digits, not latest) or a
// digest.
var pinnedImage = regexp.MustCompile(`^[a-z0-9./_-]+(:[0-9][A-Za-z0-9._-]*)?(@sha256:[0-9a-f]{64})?$`)

func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	final := finalStage(ins)
	stages := map[string]bool{}
	cases := []struct {
		what  string
		check func() bool
	}{
		{"every FROM is a pinned image or an earlier stage", func() bool {
			for _, in := range ins {
				if in.cmd != "FROM" {
					continue
				}
				f := strings.Fields(in.args)
				ref := f[0]
				if !stages[ref] && (!pinnedImage.MatchString(ref) || !strings.ContainsAny(ref, ":@")) {
					t.Logf("FROM %s", ref)
					return false
				}
				if len(f) == 3 && strings.EqualFold(f[1], "AS") {
					stages[f[2]] = true
				}
			}
			return len(stages) > 0
		}},
		{"the binary is built static (CGO_ENABLED=0) from ./cmd/doraflow", func() bool {
			for _, in := range ins {
				if in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0 go build") && strings.Contains(in.args, "./cmd/doraflow") {
					return true
				}
			}
			return false
		}},
		{"the final image runs as a numeric non-root user", func() bool {
			u := imageUID(t)
			return u != "" && u != "0" && regexp.MustCompile(`^[0-9]+$`).MatchString(u)
		}},
		{"the health check asks /healthz on doraflow's default port", func() bool {
			for _, in := range final {
				if in.cmd == "HEALTHCHECK" {
					return strings.Contains(in.args, "127.0.0.1:"+listenPort(t, "")+"/healthz")
				}
			}
			return false
		}},
		{"the final image exposes doraflow's default port", func() bool {
			for _, in := range final {
				if in.cmd == "EXPOSE" && in.args == listenPort(t, "") {
					return true
				}
			}
			return false
		}},
		{"the final image carries OCI labels", func() bool {
			for _, in := range final {
				if in.cmd == "LABEL" {
					for _, l := range []string{"title", "source", "version", "revision"} {
						if !strings.Contains(in.args, "org.opencontainers.image."+l+"=") {
							return false
						}
					}
					return true
				}
			}
			return false
		}},
		{"every ENV the final image sets is a variable doraflow reads", func() bool {
			known := envNames()
			for _, in := range final {
				if in.cmd == "ENV" {
					name, _, _ := strings.Cut(in.args, "=")
					if !known[name] {
						return false
					}
				}
			}
			return true
		}},
	}
	for _, tc := range cases {
		if !tc.check() {
			t.Errorf("%s: not so in %s", tc.what, dockerfile)
		}
	}
}
