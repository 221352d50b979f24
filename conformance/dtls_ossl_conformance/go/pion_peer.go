// A small pion/dtls (v2) peer for `dtls-ossl conformance`, built offline in GOPATH mode
// against Debian's golang-github-pion-dtls.v2-dev:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o pion_peer pion_peer.go
//
// Usage: pion_peer server|client PORT CERT_PEM KEY_PEM PROFILE_ID EXPORT_LEN
//
// The server listens on 127.0.0.1:PORT, the client dials it. PROFILE_ID is the IANA id of the
// one SRTP protection profile offered (1, 2, 7, 8). The peer asks for the other side's
// certificate, verifies nothing (InsecureSkipVerify) but prints its sha-256 fingerprint,
// requires the extended master secret, prints what was negotiated and the RFC 5764 keying
// material, then echoes one application datagram and waits for the close.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/dtls/v2"
)

// stateFields mirrors the exported fields of pion's serialized State that we read.
type stateFields struct {
	CipherSuiteID         uint16
	SRTPProtectionProfile uint16
}

func fail(format string, args ...interface{}) {
	fmt.Printf("ERROR: "+format+"\n", args...)
	os.Exit(1)
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func main() {
	if len(os.Args) != 7 {
		fail("usage: pion_peer server|client PORT CERT_PEM KEY_PEM PROFILE_ID EXPORT_LEN")
	}
	role := os.Args[1]
	port, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fail("port: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[3], os.Args[4])
	if err != nil {
		fail("certificate: %v", err)
	}
	profileID, err := strconv.Atoi(os.Args[5])
	if err != nil {
		fail("profile: %v", err)
	}
	exportLen, err := strconv.Atoi(os.Args[6])
	if err != nil {
		fail("export length: %v", err)
	}
	config := &dtls.Config{
		Certificates:           []tls.Certificate{cert},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTPProtectionProfile(profileID)},
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		InsecureSkipVerify:     true,
		ClientAuth:             dtls.RequireAnyClientCert,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return fmt.Errorf("no peer certificate")
			}
			fmt.Printf("PEER_FINGERPRINT sha-256 %s\n", fingerprint(rawCerts[0]))
			return nil
		},
	}
	addr := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: port}
	var conn *dtls.Conn
	switch role {
	case "server":
		listener, err := dtls.Listen("udp", addr, config)
		if err != nil {
			fail("listen: %v", err)
		}
		fmt.Printf("LISTENING 127.0.0.1:%d\n", port)
		c, err := listener.Accept()
		if err != nil {
			fail("handshake: %v", err)
		}
		conn = c.(*dtls.Conn)
	case "client":
		conn, err = dtls.Dial("udp", addr, config)
		if err != nil {
			fail("handshake: %v", err)
		}
	default:
		fail("role must be server or client, not %q", role)
	}
	fmt.Println("HANDSHAKE OK")
	state := conn.ConnectionState()
	var fields stateFields
	if raw, err := state.MarshalBinary(); err == nil {
		if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&fields); err == nil {
			id := dtls.CipherSuiteID(fields.CipherSuiteID)
			fmt.Printf("CIPHER %s\n", dtls.CipherSuiteName(id))
		}
	}
	if profile, ok := conn.SelectedSRTPProtectionProfile(); ok {
		fmt.Printf("SRTP_PROFILE %d\n", uint16(profile))
	} else {
		fmt.Println("SRTP_PROFILE none")
	}
	material, err := state.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, exportLen)
	if err != nil {
		fail("export: %v", err)
	}
	fmt.Printf("KEYING_MATERIAL %s\n", hex.EncodeToString(material))

	buf := make([]byte, 8192)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		fail("read: %v", err)
	}
	fmt.Printf("RECEIVED %q\n", buf[:n])
	if _, err := conn.Write(buf[:n]); err != nil {
		fail("write: %v", err)
	}
	fmt.Println("ECHOED")
	// Wait for the other side's close_notify.
	for {
		if _, err := conn.Read(buf); err != nil {
			if err == io.EOF {
				fmt.Println("CLOSED")
			} else {
				fmt.Printf("READ_END %v\n", err)
			}
			break
		}
	}
	_ = conn.Close()
}
