package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, v2, v1 string // "" : no such file
		want         int64
		err          string
	}{
		{name: "no cgroup files"},
		{name: "v2 without a limit", v2: "max\n"},
		{name: "v2 limit", v2: "2147483648\n", want: 1932735283},
		{name: "v2 before v1", v2: "1000\n", v1: "2000\n", want: 900},
		{name: "v1 limit", v1: "1000\n", want: 900},
		{name: "v1 without a limit", v1: "9223372036854771712\n"},
		{name: "garbage", v2: "lots\n", err: `holds "lots", not a limit in bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := []string{filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.limit_in_bytes")}
			for i, content := range []string{tc.v2, tc.v1} {
				if content != "" {
					if err := os.WriteFile(files[i], []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, err := FromCgroup(files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// The limit found is the runtime's, unless GOMEMLIMIT already set one.
func TestApply(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	file := filepath.Join(t.TempDir(), "memory.max")
	if err := os.WriteFile(file, []byte("1000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := func(string) string { return "" }
	if got, err := Apply(none, []string{file}); err != nil || got != 900000000 || debug.SetMemoryLimit(-1) != 900000000 {
		t.Fatalf("Apply: %d, %v; runtime limit %d", got, err, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(123456789)
	set := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "123456789"
		}
		return ""
	}
	if got, err := Apply(set, []string{file}); err != nil || got != 123456789 {
		t.Fatalf("with GOMEMLIMIT: %d, %v", got, err)
	}
}
