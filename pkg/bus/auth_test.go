package bus_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
)

// runServer starts a JetStream server on a loopback port with opts' auth
// and TLS; it stops with the test.
func runServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func nkeyUser(t *testing.T) (seedFile, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	public, _ = kp.PublicKey()
	seedFile = filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return seedFile, public
}

// operator is a server in operator mode (JWTs) trusting one account, and a
// .creds file of a user of it.
func operator(t *testing.T) (opts *server.Options, creds, otherCreds string) {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	sysKP, _ := nkeys.CreateAccount()
	sysPub, _ := sysKP.PublicKey()
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{DiskStorage: -1, MemoryStorage: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	_ = resolver.Store(sysPub, sysJWT)
	_ = resolver.Store(apub, ajwt)
	user := func(signer nkeys.KeyPair, name string) string {
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		ujwt, err := jwt.NewUserClaims(upub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := ukp.Seed()
		data, err := jwt.FormatUserConfig(ujwt, seed)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// A user signed by an account the server does not know.
	stranger, _ := nkeys.CreateAccount()
	return &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub},
		user(akp, "doraflow.creds"), user(stranger, "stranger.creds")
}

// doraflow connects to an external NATS with every kind of credential
// nats.go supports, and TLS with a CA, a client certificate and a server
// name; wrong credentials or an untrusted certificate fail the start at
// once, saying why.
func TestAuthAndTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	seedFile, nkeyPub := nkeyUser(t)
	wrongSeed, _ := nkeyUser(t)
	opOpts, creds, strangerCreds := operator(t)
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, CaFile: ca.CAFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	otherCA := testenv.NewCA(t)
	goodTLS := &bus.TLS{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey, ServerName: ca.ServerName}
	cases := []struct {
		name   string
		server *server.Options
		auth   bus.Auth
		// wrong are credentials the server refuses, and what the error
		// then says.
		wrong bus.Auth
		says  string
	}{
		{name: "user and password", server: &server.Options{Username: "doraflow", Password: "pw-1"},
			auth: bus.Auth{User: "doraflow", Password: "pw-1"}, wrong: bus.Auth{User: "doraflow", Password: "pw-2"}, says: "Authorization Violation"},
		{name: "token", server: &server.Options{Authorization: "tok-1"},
			auth: bus.Auth{Token: "tok-1"}, wrong: bus.Auth{Token: "tok-2"}, says: "Authorization Violation"},
		{name: "nkey", server: &server.Options{Nkeys: []*server.NkeyUser{{Nkey: nkeyPub}}},
			auth: bus.Auth{NKeySeedFile: seedFile}, wrong: bus.Auth{NKeySeedFile: wrongSeed}, says: "Authorization Violation"},
		{name: "creds", server: opOpts,
			auth: bus.Auth{CredsFile: creds}, wrong: bus.Auth{CredsFile: strangerCreds}, says: "Authorization Violation"},
		{name: "mutual TLS", server: &server.Options{TLSConfig: tlsConfig, TLSVerify: true, TLS: true, Username: "doraflow", Password: "pw-1"},
			auth:  bus.Auth{User: "doraflow", Password: "pw-1", TLS: goodTLS},
			wrong: bus.Auth{User: "doraflow", Password: "pw-1", TLS: &bus.TLS{CAFile: otherCA.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey, ServerName: ca.ServerName}},
			says:  "certificate signed by unknown authority"},
		{name: "TLS server name", server: &server.Options{TLSConfig: tlsConfig, TLSVerify: true, TLS: true},
			auth:  bus.Auth{TLS: goodTLS},
			wrong: bus.Auth{TLS: &bus.TLS{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey, ServerName: "someone-else.invalid"}},
			says:  "someone-else.invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := runServer(t, tc.server)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := bus.Open(ctx, bus.Options{URL: url, Auth: tc.auth, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatalf("with the right credentials: %v", err)
			}
			if err := b.Ready(ctx); err != nil {
				t.Errorf("ready: %v", err)
			}
			b.Close()

			begun := time.Now()
			_, err = bus.Open(ctx, bus.Options{URL: url, Auth: tc.wrong, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("with the wrong credentials: %v; want an error saying %q", err, tc.says)
			}
			if took := time.Since(begun); took > 10*time.Second {
				t.Errorf("the refusal took %s: it is not retried", took)
			}
			t.Logf("wrong credentials: %v", err)
		})
	}
}

// The embedded server takes no credentials, so it never listens beyond
// loopback: in-process only by default, 127.0.0.1 when another process
// must connect.
func TestEmbeddedServerIsLoopbackOnly(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if url := b.ClientURL(); !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Errorf("embedded server listens on %s", url)
	}
	inProcess, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer inProcess.Close()
	if url := inProcess.ClientURL(); url != "" {
		t.Errorf("the default embedded server listens on %s", url)
	}
}
