package scalebench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// What the processor child's log (slog text) says about a run.

// logLine is one log record: its time, message and attributes.
type logLine struct {
	At    time.Time
	Msg   string
	Attrs map[string]string
}

// parseLogLine splits a slog text record into its key=value pairs (values
// possibly quoted); ok is false for anything else.
func parseLogLine(s string) (logLine, bool) {
	attrs := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " ")
		key, rest, found := strings.Cut(s, "=")
		if !found || key == "" || strings.ContainsAny(key, " \"") {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		attrs[key] = val
		s = rest
	}
	at, err := time.Parse(time.RFC3339Nano, attrs["time"])
	if err != nil || attrs["msg"] == "" {
		return logLine{}, false
	}
	return logLine{At: at, Msg: attrs["msg"], Attrs: attrs}, true
}

// readLog is every record of a log file written since (a file is shared by
// the processors of a run, one after the other).
func readLog(path string, since time.Time) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scalebench: read log: %w", err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if l, ok := parseLogLine(sc.Text()); ok && !l.At.Before(since) {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scalebench: read log: %w", err)
	}
	return out, nil
}

// rebuild is what a worker's start-up rebuild did ("state rebuilt").
type rebuild struct {
	At                         time.Time
	Worker                     string
	FromSnapshot               bool
	Folded, Remembered, Writes int
	Took                       time.Duration
}

// snapshotWrite is one snapshot a worker wrote ("state snapshot written").
type snapshotWrite struct {
	At     time.Time
	Worker string
	Bytes  int
}

// assignment is a set of workers the process was given ("workers
// assigned").
type assignment struct {
	At    time.Time
	Owned string
}

type logSummary struct {
	Rebuilds    []rebuild
	Snapshots   []snapshotWrite
	Assignments []assignment
	Warnings    map[string]int // by message: WARN and ERROR records
}

func summarise(lines []logLine) logSummary {
	s := logSummary{Warnings: map[string]int{}}
	atoi := func(v string) int { n, _ := strconv.Atoi(v); return n }
	for _, l := range lines {
		switch l.Msg {
		case "state rebuilt":
			took, _ := time.ParseDuration(l.Attrs["took"])
			s.Rebuilds = append(s.Rebuilds, rebuild{At: l.At, Worker: l.Attrs["worker"], FromSnapshot: l.Attrs["from_snapshot"] == "true",
				Folded: atoi(l.Attrs["folded"]), Remembered: atoi(l.Attrs["remembered"]), Writes: atoi(l.Attrs["rows_written"]), Took: took})
		case "state snapshot written":
			s.Snapshots = append(s.Snapshots, snapshotWrite{At: l.At, Worker: l.Attrs["worker"], Bytes: atoi(l.Attrs["bytes"])})
		case "workers assigned":
			s.Assignments = append(s.Assignments, assignment{At: l.At, Owned: l.Attrs["owned"]})
		}
		if lvl := l.Attrs["level"]; lvl == "WARN" || lvl == "ERROR" {
			s.Warnings[lvl+" "+l.Msg]++
		}
	}
	return s
}
