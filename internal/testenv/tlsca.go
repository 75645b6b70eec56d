package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority with a server certificate (for
// 127.0.0.1, localhost and ServerName) and a client certificate it signed,
// as PEM files in a test's temp dir.
type CA struct {
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	ServerName            string
}

// NewCA writes a fresh CA and the certificates it signs.
func NewCA(t testing.TB) CA {
	t.Helper()
	dir := t.TempDir()
	ca := CA{ServerName: "doraflow-test.invalid"}
	caKey, caCert := newCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "doraflow test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	ca.CAFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw)
	srvKey, srvCert := newCert(t, caKey, caCert, &x509.Certificate{
		Subject: pkix.Name{CommonName: ca.ServerName}, DNSNames: []string{ca.ServerName, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	ca.ServerCert = writePEM(t, dir, "server.pem", "CERTIFICATE", srvCert.Raw)
	ca.ServerKey = writeKey(t, dir, "server-key.pem", srvKey)
	cliKey, cliCert := newCert(t, caKey, caCert, &x509.Certificate{
		Subject: pkix.Name{CommonName: "doraflow"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	ca.ClientCert = writePEM(t, dir, "client.pem", "CERTIFICATE", cliCert.Raw)
	ca.ClientKey = writeKey(t, dir, "client-key.pem", cliKey)
	return ca
}

// newCert makes a key and a certificate from template, signed by parent
// (self-signed when parent is nil).
func newCert(t testing.TB, parentKey *ecdsa.PrivateKey, parent, template *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = serial
	template.NotBefore = time.Now().Add(-time.Hour)
	template.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func writeKey(t testing.TB, dir, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PRIVATE KEY", der)
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
