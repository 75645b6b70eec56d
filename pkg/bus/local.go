package bus

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LocalURLFile, in the data directory, holds the client URL (with its
// token) of the embedded server of a running `serve`: how other commands
// of the same install (backfill) reach the bus. It is readable by the
// owner only, and removed when serve stops.
const LocalURLFile = "bus.url"

// NewToken is a random token for the embedded server's listener.
func NewToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("bus: token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// WriteLocalURL records the embedded server's client URL in dataDir.
func WriteLocalURL(dataDir, clientURL string) error {
	path := filepath.Join(dataDir, LocalURLFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(clientURL+"\n"), 0o600); err != nil {
		return fmt.Errorf("bus: record the local url: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bus: record the local url: %w", err)
	}
	return nil
}

// RemoveLocalURL removes the record, if it still names clientURL (another
// serve may have started on the same directory since).
func RemoveLocalURL(dataDir, clientURL string) {
	path := filepath.Join(dataDir, LocalURLFile)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == clientURL {
		_ = os.Remove(path)
	}
}

// ErrNoLocalBus says no serve with an embedded bus runs on a data
// directory.
var ErrNoLocalBus = errors.New("no running doraflow serve with an embedded bus")

// LocalURL is the client URL recorded in dataDir by a running serve. A
// record whose server does not answer (serve was killed) is ErrNoLocalBus
// too.
func LocalURL(dataDir string) (string, error) {
	path := filepath.Join(dataDir, LocalURLFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w on data dir %s (no %s): start `doraflow serve` with the same DORAFLOW_DATA_DIR, or set DORAFLOW_NATS_URL to an external NATS", ErrNoLocalBus, dataDir, path)
	}
	if err != nil {
		return "", fmt.Errorf("bus: %w", err)
	}
	raw := strings.TrimSpace(string(b))
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bus: %s holds %q, not a NATS URL", path, raw)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("%w on data dir %s (%s names %s, which does not answer: serve stopped without removing it): start `doraflow serve`, or set DORAFLOW_NATS_URL", ErrNoLocalBus, dataDir, path, u.Host)
	}
	conn.Close()
	return raw, nil
}
