package main

import (
	"strings"
	"testing"

	"github.com/doraflow/doraflow/internal/testenv"
)

// `report` runs as a read-only ClickHouse user (README "A read-only user"),
// with a password; such a user cannot change the schema.
func TestReportAsReadOnlyUser(t *testing.T) {
	dsn := testenv.ClickHouse(t)
	t.Setenv("DORAFLOW_DATA_DIR", t.TempDir())
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", testenv.AsUser(dsn, testenv.PasswordUser, testenv.Password))
	if out, err := run(t, "migrate"); err != nil {
		t.Fatalf("migrate as a user with a password: %v\n%s", err, out)
	}
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", testenv.AsUser(dsn, testenv.ReaderUser, testenv.ReaderPassword))
	out, err := run(t, "report", "--since", "30d", "--format", "json")
	if err != nil || !strings.Contains(out, `"total"`) {
		t.Fatalf("report as the read-only user: %v\n%s", err, out)
	}
	if _, err := run(t, "migrate"); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Errorf("migrate as the read-only user: %v; want refused (readonly)", err)
	}
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", testenv.AsUser(dsn, testenv.ReaderUser, "wrong"))
	if _, err := run(t, "report", "--since", "30d"); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("report with a wrong password: %v; want refused, without the password", err)
	}
}
