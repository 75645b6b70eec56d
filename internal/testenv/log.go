package testenv

import (
	"bytes"
	"sync"
	"testing"
)

// LogBuffer is a log sink that the goroutines under test and the test
// itself share.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Reset empties the buffer.
func (b *LogBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// FailureLog is a LogBuffer whose lines the test prints if it fails: what
// a fault test that fails once in many runs needs to be understood.
func FailureLog(t testing.TB) *LogBuffer {
	logs := &LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return logs
}
