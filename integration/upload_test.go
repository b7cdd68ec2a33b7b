package integration

import "testing"

// TestHTTPUpload: slixmpp finds the upload service by disco, gets a slot
// (XEP-0363), PUTs a file over HTTPS and GETs it back as a download; a file
// over the limit is refused.
func TestHTTPUpload(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{Extra: "\n[upload]\nenabled = true\nlisten = [\"127.0.0.1:0\"]\npublic_url = \"https://127.0.0.1\"\nmax_size = 100000\n"})
	srv.AddUser("alice", "alice-secret")
	r := runScript(t, "testdata/slixmpp_upload.py", "--addr", srv.Addr, "--debug",
		"--alice", srv.JID("alice"), "--alice-password", "alice-secret", "--bob", srv.JID("bob"), "--bob-password", "x")
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	if s := r.all("service"); len(s) != 1 || s[0].str("jid") != "upload."+srv.Domain {
		t.Errorf("service %v", s)
	}
	if s := r.all("put"); len(s) != 1 || s[0]["status"] != 201.0 {
		t.Errorf("PUT %v", s)
	}
	g := r.all("get")
	if len(g) != 1 || g[0]["status"] != 200.0 || g[0]["same"] != true || g[0].str("content_type") != "text/plain" ||
		g[0].str("disposition") != "attachment; filename*=UTF-8''letter.txt" {
		t.Errorf("GET %v", g)
	}
	if s := r.all("too_large"); len(s) != 1 || s[0]["refused"] != true {
		t.Errorf("a file over max_size: %v", s)
	}
}
