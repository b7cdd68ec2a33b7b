package irctest

import (
	"bufio"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/certs"
)

// ServicesName is the services server's name on the test network; SASL and NickServ live there.
const ServicesName = "services.test"

// Services is InspIRCd linked to Atheme services on loopback: NickServ for accounts, SaslServ
// behind InspIRCd's SASL (PLAIN and, with a client certificate on the TLS port, EXTERNAL).
type Services struct {
	*Server // InspIRCd; Addr is its plain client port. Stop and Start it as any Server: Atheme relinks
	// TLSAddr is InspIRCd's TLS client port. It asks clients for a certificate and passes its
	// fingerprint (SHA-256) to services, for SASL EXTERNAL.
	TLSAddr string
	// CAFile is the (self-signed) certificate the TLS port presents, for 127.0.0.1 and irc.test:
	// a client's CA file.
	CAFile string
	Atheme *Server
}

// InspIRCdWithServices starts InspIRCd as InspIRCd does, plus a server link, SASL, account
// tracking and TLS with client certificates (spanningtree, sasl, services_account, ssl_gnutls,
// sslinfo), and Atheme 7 as services.test linked to it (protocol/inspircd; nickserv with
// register, identify and cert; saslserv with plain and external). It returns once InspIRCd offers
// SASL, that is once the services are linked. Each of the two runs from its own configuration and
// data directory in the test's temporary directory; every port is on 127.0.0.1.
func InspIRCdWithServices(t testing.TB) *Services {
	t.Helper()
	Require(t, InspIRCdBin)
	Require(t, AthemeBin)
	s := newServer(t, "inspircd", InspIRCdBin)
	linkPort, tlsPort := freePort(t), freePort(t)
	certFile, keyFile := filepath.Join(s.dir, "server.pem"), filepath.Join(s.dir, "server.key")
	if err := certs.GenerateSelfSigned(certFile, keyFile, []string{"irc.test", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	const linkPass = "link-secret"
	s.configureInspIRCd("not", fmt.Sprintf(`<module name="spanningtree">
<module name="sasl">
<module name="ssl_gnutls">
<module name="sslinfo">
<bind address="127.0.0.1" port="%[1]s" type="servers">
<sslprofile name="tls" provider="gnutls" certfile="%[3]s" keyfile="%[4]s" hash="sha256" requestclientcert="yes">
<bind address="127.0.0.1" port="%[2]s" type="clients" sslprofile="tls">
<link name="%[5]s" ipaddr="127.0.0.1" port="%[1]s" allowmask="127.0.0.0/8" sendpass="%[6]s" recvpass="%[6]s">
<uline server="%[5]s" silent="yes">
<sasl target="%[5]s">
`, linkPort, tlsPort, certFile, keyFile, ServicesName, linkPass))
	s.Start()

	a := &Server{t: t, Addr: s.Addr, Name: "atheme", dir: t.TempDir(), bin: AthemeBin}
	t.Cleanup(a.Stop)
	data := filepath.Join(a.dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(a.dir, "atheme.conf")
	write(t, conf, athemeConf(linkPort, linkPass))
	// -n: stay in the foreground, so the test owns the process.
	a.args = []string{"-n", "-c", conf, "-D", data, "-l", filepath.Join(a.dir, "atheme.log"), "-p", filepath.Join(a.dir, "atheme.pid")}
	a.ready = func() bool { return offersSASL(s.Addr) }
	a.Start()
	return &Services{Server: s, TLSAddr: "127.0.0.1:" + tlsPort, CAFile: certFile, Atheme: a}
}

// athemeConf is a minimal Atheme configuration: the InspIRCd link, NickServ and SaslServ, no
// e-mail, no flood or registration limits, up to 100 logins per account (a gateway logs every
// connection in to one account).
func athemeConf(port, pass string) string {
	return fmt.Sprintf(`loadmodule "modules/protocol/inspircd";
loadmodule "modules/backend/opensex";
loadmodule "modules/crypto/pbkdf2v2";
loadmodule "modules/nickserv/main";
loadmodule "modules/nickserv/register";
loadmodule "modules/nickserv/identify";
loadmodule "modules/nickserv/cert";
loadmodule "modules/saslserv/main";
loadmodule "modules/saslserv/plain";
loadmodule "modules/saslserv/external";
serverinfo {
	name = %[3]q;
	desc = "Aldis test services";
	numeric = "00A";
	recontime = 1;
	netname = "AldisTest";
	hidehostsuffix = "users.test";
	adminname = "admin";
	adminemail = "admin@irc.test";
	registeremail = "noreply@irc.test";
	mta = "/bin/false";
	loglevel = { error; info; admin; network; };
	maxlogins = 100;
	maxusers = 100;
	mdlimit = 30;
	emaillimit = 10;
	emailtime = 300;
	auth = none;
	casemapping = rfc1459;
};
uplink "irc.test" {
	host = "127.0.0.1";
	password = %[2]q;
	port = %[1]s;
};
nickserv {
	nick = "NickServ";
	user = "NickServ";
	host = %[3]q;
	real = "Nickname Services";
	maxnicks = 5;
	expire = 0;
};
saslserv {
	nick = "SaslServ";
	user = "SaslServ";
	host = %[3]q;
	real = "SASL Authentication Agent";
};
general {
	flood_msgs = 0;
	flood_time = 10;
	ratelimit_uses = 0;
	ratelimit_period = 60;
	commit_interval = 1;
	language = "en";
	uplink_sendq_limit = 1048576;
};
`, port, pass, ServicesName)
}

// offersSASL reports whether the IRC server at addr offers the sasl capability with PLAIN, which
// InspIRCd does only while its SASL target (the services) is linked.
func offersSASL(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprint(c, "CAP LS 302\r\n"); err != nil {
		return false
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[1] != "CAP" || f[3] != "LS" {
			continue
		}
		if strings.Contains(sc.Text(), "sasl=") && strings.Contains(sc.Text(), "PLAIN") {
			return true
		}
		if f[4] != "*" { // the last line of the list
			return false
		}
	}
	return false
}

// Register registers a NickServ account (with the nick of the same name) and logs out.
func (s *Services) Register(t testing.TB, account, password string) {
	t.Helper()
	u := s.Connect(t, account)
	u.Send(fmt.Sprintf("PRIVMSG NickServ :REGISTER %s %s@example.test", password, account))
	u.Expect(func(l string) bool { return hasCode(l, "900") }) // RPL_LOGGEDIN: registered and logged in
	u.Quit()
}

// AddCertFP adds a TLS client certificate's fingerprint (see ClientCert) to account, so that
// a client presenting it on TLSAddr can log in with SASL EXTERNAL.
func (s *Services) AddCertFP(t testing.TB, account, password, fingerprint string) {
	t.Helper()
	u := s.Connect(t, account+"_c")
	u.Send(fmt.Sprintf("PRIVMSG NickServ :IDENTIFY %s %s", account, password))
	u.Expect(func(l string) bool { return hasCode(l, "900") })
	u.Send("PRIVMSG NickServ :CERT ADD " + fingerprint)
	u.Expect(func(l string) bool {
		return strings.Contains(l, "Added fingerprint") && strings.Contains(l, fingerprint)
	})
	u.Quit()
}

// ClientCert writes a new self-signed client certificate and its key into dir, and returns their
// paths and the certificate's fingerprint as InspIRCd reports it (hex SHA-256 of the DER).
func ClientCert(t testing.TB, dir, name string) (certFile, keyFile, fingerprint string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := certs.GenerateSelfSigned(certFile, keyFile, []string{name}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blk.Bytes)
	return certFile, keyFile, hex.EncodeToString(sum[:])
}

// Quit sends QUIT and waits for the server to close the connection.
func (u *User) Quit() {
	u.t.Helper()
	u.Send("QUIT :done")
	u.Wait(5*time.Second, func(string) bool { return false })
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
