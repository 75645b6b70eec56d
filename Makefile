# doraflow — two commands do everything on a fresh Debian machine with Go:
#   make demo   the whole pipeline on an embedded NATS and a local ClickHouse
#   make test   every test, integration tests against a real ClickHouse

GO        ?= go
DATA_DIR  ?= .doraflow
# Ports that do not clash with a system ClickHouse (9000/8123).
CH_TCP    ?= 19000
CH_HTTP   ?= 18123
DEMO_ADDR ?= 127.0.0.1:18080
DEMO_DAYS ?= 60
# The linter, at an exact version the module proxy serves here.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The packages whose concurrency the race detector watches. The bus, the
# processor and the collectors' plumbing run once, under -race, instead of
# twice; serve's end-to-end tests run under -race in the subset that drives
# every part at once (all of them under -race took 4.6 min here, over
# make test's budget), and all of them without.
RACE_PKGS  = ./pkg/bus ./processor/... ./collectors/webhook
RACE_MATCH = /(pkg/bus|processor(/.*)?|collectors/webhook)$$
RACE_SERVE = TestEndToEnd|TestSplitRoles|TestTwoProcessorsShareTheWork|TestBackpressureUnderLoad|TestServeStartsWithClickHouseDown|TestReadyzReasonsApart|TestClickHouseOutageLosesNothing
# How long each parser's fuzz test runs in make test.
FUZZTIME  ?= 2s
# The one command that loads make demo's dashboards into a Grafana: the
# plugin at the version the dashboards target, the provisioning mounted
# where Grafana reads it, the host network to reach the demo's ClickHouse.
GRAFANA_RUN = docker run --rm --network host -e GF_PLUGINS_PREINSTALL_SYNC=grafana-clickhouse-datasource@4.20.0 \
	-e DORAFLOW_CLICKHOUSE_READER_PASSWORD= \
	-v $(abspath $(DATA_DIR))/grafana/provisioning:/etc/grafana/provisioning \
	-v $(abspath $(DATA_DIR))/grafana/dashboards:/var/lib/grafana/dashboards/doraflow grafana/grafana:12.1.0

.PHONY: all build test test-race test-fuzz lint test-deployments test-short vet fmt demo clickhouse clickhouse-stop bench bench-queries bench-scale dashboard-pngs clean

all: build

build:
	$(GO) build -o bin/doraflow ./cmd/doraflow

vet:
	$(GO) vet ./...
	cd deployments && $(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Integration tests start their own throwaway ClickHouse server per package;
# this only makes sure it is installed.
test:
	bash scripts/clickhouse.sh ensure
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(MAKE) lint
	$(GO) test -count=1 -timeout 8m $$($(GO) list ./... | grep -v -E '$(RACE_MATCH)')
	$(MAKE) test-race test-fuzz test-deployments

test-race:
	$(GO) test -race -count=1 -timeout 8m $(RACE_PKGS)
	$(GO) test -race -count=1 -timeout 8m -run '$(RACE_SERVE)' ./internal/serve

# Every Fuzz function in the repository, FUZZTIME each: found, not listed,
# so that a new parser's fuzz test runs without a change here. About 6 s
# per target with a warm build cache; the first run on a machine builds
# each package instrumented for fuzzing, about 6 minutes in all here.
test-fuzz:
	@set -e; for f in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz'); do \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz ./$$(dirname $$f) $$fn"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f); \
		done; \
	done

lint:
	$(GO) run $(STATICCHECK) ./...
	cd deployments && $(GO) run $(STATICCHECK) ./...

# The install manifests (Dockerfile, compose, Helm chart) checked against the
# code, statically: its own module (deployments/go.mod), so that Helm and the
# Kubernetes types stay out of the product's.
test-deployments:
	@test -z "$$(gofmt -l deployments)" || { echo "gofmt needed:"; gofmt -l deployments; exit 1; }
	cd deployments && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

clickhouse:
	bash scripts/clickhouse.sh start $(abspath $(DATA_DIR))/clickhouse $(CH_TCP) $(CH_HTTP)

clickhouse-stop:
	bash scripts/clickhouse.sh stop $(abspath $(DATA_DIR))/clickhouse

# Each run starts from an empty bus and database, so re-running shows the
# same kind of table rather than two histories on top of each other.
demo: build clickhouse
	rm -rf $(DATA_DIR)/demo
	clickhouse-client --port $(CH_TCP) -q 'DROP DATABASE IF EXISTS doraflow_demo'
	DORAFLOW_CLICKHOUSE_DSN=clickhouse://127.0.0.1:$(CH_TCP)/doraflow_demo \
	DORAFLOW_DATA_DIR=$(DATA_DIR)/demo \
	DORAFLOW_LISTEN=$(DEMO_ADDR) \
	./bin/doraflow demo --days $(DEMO_DAYS)
	./bin/doraflow dashboards generate --out $(DATA_DIR)/grafana --dashboards-path /var/lib/grafana/dashboards/doraflow \
		--clickhouse-host 127.0.0.1 --clickhouse-port $(CH_TCP) --clickhouse-user default --clickhouse-database doraflow_demo >/dev/null
	@echo
	@echo "Grafana dashboards and provisioning (datasource: this ClickHouse, database doraflow_demo) in $(abspath $(DATA_DIR))/grafana."
	@echo "Load them into a Grafana on this machine (Docker), then open http://localhost:3000 (admin/admin):"
	@echo "  $(GRAFANA_RUN)"

# The README's pictures of the dashboards: each panel drawn (gonum/plot)
# from its own queries, expanded as Grafana would, over make demo's
# history sent through the whole pipeline. No Grafana runs here.
dashboard-pngs:
	bash scripts/clickhouse.sh ensure
	mkdir -p docs/dashboards
	DORAFLOW_DASHBOARD_PNG=$(abspath docs/dashboards) $(GO) test -count=1 -run TestRenderDashboards ./dashboards

bench:
	bash scripts/clickhouse.sh ensure
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

# `report` over three years of a 500-team organisation (10 M changes), its
# baselines and PostgreSQL, measured in one run; figures to
# docs/benchmarks-queries.md. Takes ~15 minutes; each server is throwaway.
bench-queries:
	bash scripts/clickhouse.sh ensure
	bash scripts/postgres.sh ensure
	mkdir -p docs
	DORAFLOW_BENCH_SIZE=organisation DORAFLOW_BENCH_DOC=$(abspath docs/benchmarks-queries.md) \
		$(GO) test -run '^$$' -bench Queries -benchtime 20x -timeout 90m ./internal/benchscale

# A year of a 2,000-engineer organisation (internal/orgsim) published to an
# embedded JetStream, processed by `serve --role processor` against
# ClickHouse, beside a bare consume and a bare insert of the same messages
# and rows, then restarted cleanly and after SIGKILL; figures, charts and
# profiles to docs/benchmarks-scale.md (run files in $(DATA_DIR)/bench-scale).
# Takes ~25 minutes on 2 cores; every server is throwaway.
bench-scale:
	bash scripts/clickhouse.sh ensure
	mkdir -p docs
	DORAFLOW_SCALE_SIZE=large DORAFLOW_SCALE_DOC=$(abspath docs/benchmarks-scale.md) \
	DORAFLOW_SCALE_DIR=$(abspath $(DATA_DIR))/bench-scale \
		$(GO) test -run '^$$' -bench Scale -benchtime 1x -timeout 90m ./internal/scalebench

clean: clickhouse-stop
	rm -rf bin $(DATA_DIR)
