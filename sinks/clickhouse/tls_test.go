package clickhouse

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/testenv"
)

// The store reaches ClickHouse over TLS (secure=true, a CA file, the name
// the certificate bears) and applies its migrations there; an untrusted
// certificate or a plain connection to the TLS port is refused, saying why.
func TestTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	dsn := testenv.ClickHouseTLS(t, ca)
	with := func(params url.Values) string { return dsn + "?" + params.Encode() }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	store, err := Open(ctx, with(url.Values{"secure": {"true"}, "ca_file": {ca.CAFile}, "server_name": {ca.ServerName}}), quiet)
	if err != nil {
		t.Fatalf("over TLS with the CA: %v", err)
	}
	if _, err := store.Migrate(ctx); err != nil {
		t.Errorf("migrate over TLS: %v", err)
	}
	store.Close()

	other := testenv.NewCA(t)
	for _, tc := range []struct {
		name, dsn, says string
	}{
		{"another CA", with(url.Values{"secure": {"true"}, "ca_file": {other.CAFile}, "server_name": {ca.ServerName}}), "unknown authority"},
		{"another name", with(url.Values{"ca_file": {ca.CAFile}, "server_name": {"someone-else.invalid"}}), "someone-else.invalid"},
	} {
		if _, err := Open(ctx, tc.dsn, quiet); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.says)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShort()
	if _, err := Open(short, dsn, quiet); err == nil {
		t.Error("a plain connection to the TLS port succeeded")
	}
}
