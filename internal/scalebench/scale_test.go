package scalebench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/doraflow/doraflow/internal/testenv"
)

func TestMain(m *testing.M) {
	if code, ok := Child(); ok {
		os.Exit(code)
	}
	os.Exit(testenv.RunClickHouse(m))
}

// The benchmark is driven by the environment (make bench-scale sets them):
// DORAFLOW_SCALE_SIZE=large for the year of a 2,000-engineer
// organisation (default: Small, so that `make bench` stays quick);
// DORAFLOW_SCALE_DOC, a file to write the figures to (with its charts
// beside it); DORAFLOW_SCALE_DIR, where the run's files go (the NATS
// store, logs, profiles, results; default a temporary directory).
// DORAFLOW_SCALE_RESULT names the results of an earlier run instead: the
// document is written again from them, nothing is run.
const (
	sizeEnv   = "DORAFLOW_SCALE_SIZE"
	docEnv    = "DORAFLOW_SCALE_DOC"
	dirEnv    = "DORAFLOW_SCALE_DIR"
	resultEnv = "DORAFLOW_SCALE_RESULT"
)

// BenchmarkScale runs the whole measurement once (see the package
// documentation); it is a benchmark of the system, not a timed test:
// nothing in it fails on a figure.
func BenchmarkScale(b *testing.B) {
	if path := os.Getenv(resultEnv); path != "" {
		r, err := ReadResult(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteDoc(context.Background(), r, filepath.Clean(os.Getenv(docEnv))); err != nil {
			b.Fatal(err)
		}
		return
	}
	size := Small()
	if os.Getenv(sizeEnv) == "large" {
		size = Large()
	}
	dir := os.Getenv(dirEnv)
	if dir == "" {
		dir = b.TempDir()
	} else {
		// A previous run's store would be replayed on top of.
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Size: size, Exe: exe, Dir: dir, ClickHouseDSN: testenv.ClickHouse(b), BaselineDSN: testenv.ClickHouse(b),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for b.Loop() {
		r, err := Run(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.processorRate(), "events/s")
		b.ReportMetric(r.processorRate()/r.baselineRate(), "×baseline")
		if path := os.Getenv(docEnv); path != "" {
			if err := WriteDoc(context.Background(), r, filepath.Clean(path)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
