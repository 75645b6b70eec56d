// Package memlimit sets the Go runtime's soft memory limit from the
// container's, so that the garbage collector works harder as the process
// nears the limit instead of letting its heap grow to twice what is live
// and the kernel kill it.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the container's limit given to the Go runtime: the rest is
// for what it does not count (thread stacks, cgo, the page cache of the
// embedded NATS server's files).
const Fraction = 0.9

// CgroupFiles are where a process reads its memory cgroup's limit: cgroup
// v2, then v1.
func CgroupFiles() []string {
	return []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}
}

// FromCgroup is Fraction of the limit the first of files that exists sets;
// 0 when none does or the limit is "max" (none). A v1 file without a limit
// holds a number near 2^63, which counts as none too.
func FromCgroup(files []string) (int64, error) {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("memlimit: %w", err)
		}
		text := strings.TrimSpace(string(data))
		if text == "max" {
			return 0, nil
		}
		limit, err := strconv.ParseInt(text, 10, 64)
		if err != nil || limit <= 0 {
			return 0, fmt.Errorf("memlimit: %s holds %q, not a limit in bytes", f, text)
		}
		if limit >= 1<<62 {
			return 0, nil
		}
		return int64(float64(limit) * Fraction), nil
	}
	return 0, nil
}

// Apply sets the runtime's limit from the cgroup unless GOMEMLIMIT is set
// (the runtime then has it already) and returns the limit in force, 0 for
// none.
func Apply(getenv func(string) string, files []string) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), nil
	}
	limit, err := FromCgroup(files)
	if err != nil || limit == 0 {
		return 0, err
	}
	debug.SetMemoryLimit(limit)
	return limit, nil
}
