package scalebench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU
// times: 100 on every Linux this runs on.
const clockTicks = 100

// cpuTime is the CPU time (user and system) a process has used.
func cpuTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// Fields 14 and 15 (utime, stime), counted from 1 with the command.
	var total int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("scalebench: /proc/%d/stat: %w", pid, err)
		}
		total += n
	}
	return time.Duration(total) * time.Second / clockTicks, nil
}

// statFields are /proc/<pid>/stat's fields after the command (whose name
// may hold spaces): the state first.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("scalebench: /proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("scalebench: /proc/%d/stat: %q", pid, s)
	}
	return f, nil
}

// clickhousePID is the ClickHouse server this process started (testenv
// starts it as a child), or 0.
func clickhousePID() int {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := strconv.Itoa(os.Getpid())
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "clickhouse") {
			continue
		}
		if f, err := statFields(pid); err == nil && f[1] == self {
			return pid
		}
	}
	return 0
}

// cpuUse is the CPU time each process used over a stretch of the run.
type cpuUse struct {
	Processor, NATS, ClickHouse, Bench time.Duration
}

// cpuMeter takes the CPU times of the run's processes at two moments.
type cpuMeter struct {
	nats, clickhouse, self int
	start                  cpuUse
}

func newCPUMeter(nats *process) *cpuMeter {
	m := &cpuMeter{nats: nats.cmd.Process.Pid, clickhouse: clickhousePID(), self: os.Getpid()}
	m.start = m.now(0)
	return m
}

// now are the processes' CPU times (0 for one that cannot be read); proc
// is the processor's pid, or 0.
func (m *cpuMeter) now(proc int) cpuUse {
	read := func(pid int) time.Duration {
		if pid == 0 {
			return 0
		}
		d, _ := cpuTime(pid)
		return d
	}
	return cpuUse{Processor: read(proc), NATS: read(m.nats), ClickHouse: read(m.clickhouse), Bench: read(m.self)}
}

// since is what each used since the meter started; the processor's is
// all of its own, as it started after the meter.
func (m *cpuMeter) since(proc int) cpuUse {
	n := m.now(proc)
	return cpuUse{Processor: n.Processor, NATS: n.NATS - m.start.NATS, ClickHouse: n.ClickHouse - m.start.ClickHouse,
		Bench: n.Bench - m.start.Bench}
}
