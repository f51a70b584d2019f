package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEncodeDecodeMeta(t *testing.T) {
	cases := []Meta{
		{},
		{APIURL: "http://10.0.0.5:8080", Version: "1.2.3", ModulesDigest: "0123456789abcdef", RingFill: 37, Ready: true, Rollout: true},
		{APIURL: "http://[fe80::1]:8080", RingFill: 100},
	}
	for _, m := range cases {
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("EncodeMeta(%+v): %v", m, err)
		}
		got, err := DecodeMeta(b)
		if err != nil || got != m {
			t.Fatalf("round trip %+v: got %+v, %v", m, got, err)
		}
	}
	typical, _ := EncodeMeta(cases[1])
	t.Logf("typical metadata: %d bytes: %s", len(typical), typical)
	if len(typical) > 120 {
		t.Errorf("typical metadata %d bytes; expected compact encoding", len(typical))
	}
	// Exactly at and over the limit.
	base, _ := EncodeMeta(Meta{APIURL: "x"})
	pad := MaxMetaSize - len(base) + 1
	if b, err := EncodeMeta(Meta{APIURL: strings.Repeat("x", pad)}); err != nil || len(b) != MaxMetaSize {
		t.Errorf("meta of exactly %d bytes: %d bytes, %v", MaxMetaSize, len(b), err)
	}
	if _, err := EncodeMeta(Meta{APIURL: strings.Repeat("x", pad+1)}); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("meta of %d bytes: %v", MaxMetaSize+1, err)
	}
	if _, err := EncodeMeta(Meta{RingFill: 101}); err == nil {
		t.Error("ring fill 101 accepted")
	}
	for _, bad := range []string{"x{}", "B", "B{", `B{"f":200}`, `B{"u":1}`, `B{} x`, "B" + strings.Repeat(" ", 600)} {
		if _, err := DecodeMeta([]byte(bad)); err == nil {
			t.Errorf("DecodeMeta(%q) accepted", bad)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, {APIURL: "http://a:1", Version: "v", ModulesDigest: "d", RingFill: 5, Ready: true}} {
		b, _ := EncodeMeta(m)
		f.Add(b)
	}
	f.Add([]byte("B{\"f\":-1}"))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		enc, err := EncodeMeta(m)
		if err != nil {
			if !errors.Is(err, ErrMetaTooLarge) { // escaping may grow a decoded string
				t.Fatalf("decoded meta %+v does not re-encode: %v", m, err)
			}
			return
		}
		if again, err := DecodeMeta(enc); err != nil || again != m {
			t.Fatalf("re-decode %+v: %+v %v", m, again, err)
		}
	})
}

func TestParseNodeInfo(t *testing.T) {
	cases := []struct {
		body, want string
		ok         bool
	}{
		{`{"cluster":{"gossip_addr":"10.0.0.1:7946"}}`, "10.0.0.1:7946", true},
		{`{"node_id":"x","cluster":{"enabled":true,"gossip_addr":"[::1]:7947","members":3}}`, "[::1]:7947", true},
		{`{"cluster":{"gossip_addr":"0.0.0.0:7946"}}`, "0.0.0.0:7946", true},
		{`{"cluster":{}}`, "", false},
		{`{"cluster":null}`, "", false},
		{`{}`, "", false},
		{`{"cluster":{"gossip_addr":"nohost"}}`, "", false},
		{`{"cluster":{"gossip_addr":"h:0"}}`, "", false},
		{`{"cluster":{"gossip_addr":"h:70000"}}`, "", false},
		{`{"cluster":{"gossip_addr":5}}`, "", false},
		{`not json`, "", false},
	}
	for _, c := range cases {
		got, err := ParseNodeInfo([]byte(c.body))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseNodeInfo(%s) = %q, %v", c.body, got, err)
		}
	}
}

func FuzzParseNodeInfo(f *testing.F) {
	f.Add([]byte(`{"cluster":{"gossip_addr":"10.0.0.1:7946"}}`))
	f.Add([]byte(`{"cluster":{"gossip_addr":"[::1]:1"}}`))
	f.Add([]byte(`{"cluster":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, err := ParseNodeInfo(b)
		if err != nil {
			return
		}
		if _, _, err := splitHostPort(addr); err != nil {
			t.Fatalf("accepted %q: %v", addr, err)
		}
	})
}

func TestResolveSeed(t *testing.T) {
	fixed := func(addr string, err error) SeedResolver {
		return func(context.Context, string) (string, error) { return addr, err }
	}
	failed := errors.New("connection refused")
	cases := []struct {
		name     string
		seed     string
		resolver SeedResolver
		want     string
		viaHTTP  bool
		err      bool
	}{
		{"api address", "127.0.0.1:8081", fixed("127.0.0.1:7947", nil), "127.0.0.1:7947", true, false},
		{"not an api: gossip", "127.0.0.1:7946", fixed("", failed), "127.0.0.1:7946", false, false},
		{"bare host is gossip", "box-3", fixed("10.0.0.1:1", nil), "box-3", false, false},
		{"unspecified host replaced", "10.0.0.9:8080", fixed("0.0.0.0:7950", nil), "10.0.0.9:7950", true, false},
		{"empty host replaced", "10.0.0.9:8080", fixed(":7950", nil), "10.0.0.9:7950", true, false},
		{"explicit http", "http://10.0.0.9:8080/", fixed("10.0.0.9:7946", nil), "10.0.0.9:7946", true, false},
		{"explicit http, no port", "http://box", fixed("[::]:7946", nil), "box:7946", true, false},
		{"explicit http failing", "http://10.0.0.9:8080", fixed("", failed), "", true, true},
		{"resolver returns junk", "10.0.0.9:8080", fixed("junk", nil), "10.0.0.9:8080", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, via, err := resolveSeed(context.Background(), c.resolver, c.seed)
			if got != c.want || via != c.viaHTTP || (err != nil) != c.err {
				t.Errorf("resolveSeed(%q) = %q, %v, %v", c.seed, got, via, err)
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	good := `{"version":1,"node":"a","updated":"2026-01-01T00:00:00Z","peers":[{"id":"b","addr":"10.0.0.2:7946"}]}`
	if p, err := ParsePeers([]byte(good)); err != nil || len(p) != 1 || p[0] != (Peer{"b", "10.0.0.2:7946"}) {
		t.Fatalf("ParsePeers(good) = %v, %v", p, err)
	}
	for _, bad := range []string{
		`{"version":2,"peers":[]}`,
		`{"version":1,"peers":[{"id":"","addr":"10.0.0.2:7946"}]}`,
		`{"version":1,"peers":[{"id":"b","addr":"10.0.0.2"}]}`,
		`{"version":1,"peers":[{"id":"b c","addr":"10.0.0.2:1"}]}`,
		`{"version":1,"extra":true}`,
		`{"version":1}{}`,
		`[]`,
	} {
		if _, err := ParsePeers([]byte(bad)); err == nil {
			t.Errorf("ParsePeers(%s) accepted", bad)
		}
	}
}

func FuzzParsePeers(f *testing.F) {
	f.Add([]byte(`{"version":1,"node":"a","updated":"2026-01-01T00:00:00Z","peers":[{"id":"b","addr":"10.0.0.2:7946"}]}`))
	f.Add([]byte(`{"version":1,"peers":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		peers, err := ParsePeers(b)
		if err != nil {
			return
		}
		for _, p := range peers {
			if validNodeID(p.ID) != nil {
				t.Fatalf("accepted id %q", p.ID)
			}
		}
	})
}

func FuzzDecodeUserData(f *testing.F) {
	mods := []ModuleInfo{{Name: "m", Version: "1", SHA256: strings.Repeat("a", 64)}}
	f.Add(encodeAnnouncement(announcement{Origin: "n1", Gen: 7, Modules: mods}))
	st := newModuleStore("n1")
	st.setLocal(mods, time.Unix(1, 0))
	f.Add(st.encodeState())
	f.Add(encodeLeave("n2"))
	f.Add([]byte("Z"))
	f.Fuzz(func(t *testing.T, b []byte) {
		anns, leaving, err := decodeUserData(b)
		if err != nil {
			return
		}
		if leaving != "" && validNodeID(leaving) != nil {
			t.Fatalf("accepted leave from %q", leaving)
		}
		for _, a := range anns {
			if err := a.validate(); err != nil {
				t.Fatalf("accepted invalid announcement: %v", err)
			}
		}
	})
}

func TestUserDataDecoding(t *testing.T) {
	sha := strings.Repeat("0", 64)
	for _, bad := range []string{
		`A{"n":"x","g":0,"m":[]}`,
		`A{"n":"","g":1,"m":[]}`,
		`A{"n":"x","g":1,"m":[{"name":"a/b","version":"","sha256":"` + sha + `"}]}`,
		`A{"n":"x","g":1,"m":[{"name":"a","version":"","sha256":"XYZ"}]}`,
		`A{"n":"x","g":1,"m":[{"name":"a","sha256":"` + sha + `"},{"name":"a","sha256":"` + sha + `"}]}`,
		`A{"n":"x","g":1,"m":[],"extra":1}`,
		`S{"a":[{"n":"x","g":0,"m":[]}]}`,
		`L{"n":"bad id"}`,
		`Q`,
	} {
		if _, _, err := decodeUserData([]byte(bad)); err == nil {
			t.Errorf("decodeUserData(%s) accepted", bad)
		}
	}
}

func TestModuleStoreMerge(t *testing.T) {
	s := newModuleStore("me")
	m1 := []ModuleInfo{{Name: "a", SHA256: strings.Repeat("1", 64)}}
	if news, _ := s.merge(announcement{Origin: "x", Gen: 5, Modules: m1}); !news {
		t.Error("first announcement not news")
	}
	if news, _ := s.merge(announcement{Origin: "x", Gen: 5, Modules: nil}); news {
		t.Error("same generation is news")
	}
	if news, _ := s.merge(announcement{Origin: "x", Gen: 4}); news {
		t.Error("older generation is news")
	}
	// Our own origin with a newer generation (from before a restart) is re-issued above it.
	mine := s.setLocal(m1, time.Unix(0, 100))
	if news, reissue := s.merge(mine); news || reissue != nil {
		t.Errorf("our own echo: news %v, reissue %+v", news, reissue)
	}
	_, reissue := s.merge(announcement{Origin: "me", Gen: mine.Gen + 10})
	if reissue == nil || reissue.Gen != mine.Gen+11 || !slices.Equal(reissue.Modules, m1) {
		t.Errorf("reissue %+v", reissue)
	}
	// Before any SetModules, a stale generation of ours is remembered so the
	// first local announcement goes above it even with a clock behind.
	s2 := newModuleStore("me")
	s2.merge(announcement{Origin: "me", Gen: 1 << 62})
	if a := s2.setLocal(nil, time.Unix(0, 5)); a.Gen != 1<<62+1 {
		t.Errorf("first local generation %d", a.Gen)
	}
	if got := ModulesDigest(nil); got != "" {
		t.Errorf("digest of nothing %q", got)
	}
	a := []ModuleInfo{{Name: "a", SHA256: strings.Repeat("1", 64)}, {Name: "b", SHA256: strings.Repeat("2", 64)}}
	if ModulesDigest(a) != ModulesDigest([]ModuleInfo{a[1], a[0]}) || len(ModulesDigest(a)) != 16 {
		t.Error("digest depends on order or has the wrong length")
	}
}

func TestLogBridge(t *testing.T) {
	var out bytes.Buffer
	var suspects []string
	b := &logBridge{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		onSuspect: func(n string) { suspects = append(suspects, n) }}
	lines := []string{
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:1\n",
		"[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=127.0.0.1:2\n",
		"[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:2\n",
		"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=x\n",
		"[DEBUG] memberlist: Failed to join 127.0.0.1:3: remote error: no installed keys could decrypt the message\n",
		"[ERR] memberlist: discarding packet with unacceptable label \"b\": from=x\n",
		"[INFO] memberlist: Suspect n7 has failed, no acks received\n",
		"[ERR] memberlist: Received invalid msgType (71) from=127.0.0.1:5\n",
		"no level at all\n",
	}
	for _, l := range lines {
		if n, err := b.Write([]byte(l)); err != nil || n != len(l) {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	if got := b.decrypt.Load(); got != 3 {
		t.Errorf("decrypt failures %d, want 3", got)
	}
	if got := b.label.Load(); got != 1 {
		t.Errorf("label failures %d, want 1", got)
	}
	if !slices.Equal(suspects, []string{"n7"}) {
		t.Errorf("suspects %v", suspects)
	}
	s := out.String()
	if !strings.Contains(s, `level=DEBUG msg="Received invalid msgType (71)`) || !strings.Contains(s, `level=ERROR msg="Decrypt packet failed`) ||
		!strings.Contains(s, `level=INFO msg="no level at all"`) {
		t.Errorf("log output:\n%s", s)
	}
}

func TestValidateOptions(t *testing.T) {
	ok := Options{NodeID: "box-1"}
	if _, err := validate(ok); err != nil {
		t.Fatalf("minimal options: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no id", func(o *Options) { o.NodeID = "" }, "node id is empty"},
		{"bad id", func(o *Options) { o.NodeID = "a b" }, "contains"},
		{"bind not ip", func(o *Options) { o.BindAddr = "localhost" }, "bind_addr"},
		{"port", func(o *Options) { o.BindPort = 70000 }, "bind_port"},
		{"advertise hostname", func(o *Options) { o.AdvertiseAddr = "box.example" }, "advertise_addr \"box.example\" is not an IP"},
		{"advertise unspecified", func(o *Options) { o.AdvertiseAddr = "0.0.0.0" }, "unspecified"},
		{"advertise port alone", func(o *Options) { o.AdvertisePort = 7000 }, "needs advertise_addr"},
		{"preset", func(o *Options) { o.Preset = "moon" }, "preset"},
		{"negative", func(o *Options) { o.ProbeInterval = -time.Second }, "probe_interval"},
		{"timeout > interval", func(o *Options) { o.ProbeInterval = time.Second; o.ProbeTimeout = 2 * time.Second }, "exceeds"},
		{"key size", func(o *Options) { o.Keyring = [][]byte{[]byte("short")} }, "16, 24 or 32"},
		{"label", func(o *Options) { o.Label = strings.Repeat("l", 300) }, "label"},
		{"empty seed", func(o *Options) { o.Seeds = []string{" "} }, "seeds[0]"},
	}
	for _, c := range cases {
		o := ok
		c.mod(&o)
		if _, err := validate(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", c.name, err, c.want)
		}
	}
	// All problems at once.
	_, err := validate(Options{NodeID: "", BindAddr: "x", Preset: "y"})
	if err == nil || !strings.Contains(err.Error(), "node id") || !strings.Contains(err.Error(), "bind_addr") || !strings.Contains(err.Error(), "preset") {
		t.Errorf("joined errors: %v", err)
	}
	// Preset timeout vs override interval.
	s, err := validate(Options{NodeID: "x", Preset: PresetWAN, ProbeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.memberlistConfig(); err == nil || !strings.Contains(err.Error(), "probe_timeout") {
		t.Errorf("wan probe timeout 3s over a 1s interval: %v", err)
	}
	// Overrides reach memberlist.
	s, _ = validate(Options{NodeID: "x", ProbeInterval: 2 * time.Second, GossipInterval: time.Second, PushPullInterval: 5 * time.Second,
		SuspicionMult: 9, DeadNodeReclaimTime: time.Minute, Label: "L"})
	c, err := s.memberlistConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.ProbeInterval != 2*time.Second || c.GossipInterval != time.Second || c.PushPullInterval != 5*time.Second ||
		c.SuspicionMult != 9 || c.DeadNodeReclaimTime != time.Minute || c.Label != "L" || c.Name != "x" || c.BindAddr != "0.0.0.0" {
		t.Errorf("memberlist config not overridden: %+v", c)
	}
	if s.rejoin != 10*time.Second || s.readyTimeout != 10*time.Second {
		t.Errorf("defaults %+v", s)
	}
}

func TestDecodeKeys(t *testing.T) {
	k16 := []byte("0123456789abcdef")
	k32 := bytes.Repeat([]byte{0xfe}, 32)
	keys, err := DecodeKeys([]string{base64.StdEncoding.EncodeToString(k16), base64.RawURLEncoding.EncodeToString(k32)})
	if err != nil || !bytes.Equal(keys[0], k16) || !bytes.Equal(keys[1], k32) {
		t.Fatalf("DecodeKeys: %v %v", keys, err)
	}
	if _, err := DecodeKeys([]string{"!!!"}); err == nil || !strings.Contains(err.Error(), "keyring[0]") {
		t.Errorf("bad base64: %v", err)
	}
	if _, err := DecodeKeys([]string{base64.StdEncoding.EncodeToString([]byte("short"))}); err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Errorf("short key: %v", err)
	}
}

func TestHTTPSeedResolverErrors(t *testing.T) {
	r := HTTPSeedResolver(nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Nothing listens on port 1 of loopback.
	if _, err := r(ctx, "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), `seed "127.0.0.1:1"`) {
		t.Errorf("refused: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case strings.HasPrefix(req.URL.Path, "/bad"+NodeInfoPath):
			fmt.Fprint(w, `{"cluster":{"gossip_addr":"nope"}}`)
		case strings.HasPrefix(req.URL.Path, "/gone"+NodeInfoPath):
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		case req.URL.Path == NodeInfoPath:
			fmt.Fprint(w, `{"cluster":{"gossip_addr":"127.0.0.1:7946"}}`)
		default:
			http.NotFound(w, req)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if got, err := r(ctx, host); err != nil || got != "127.0.0.1:7946" {
		t.Errorf("good: %q %v", got, err)
	}
	if _, err := r(ctx, srv.URL+"/gone"); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("404: %v", err)
	}
	if _, err := r(ctx, srv.URL+"/bad/"); err == nil || !strings.Contains(err.Error(), "gossip_addr") {
		t.Errorf("bad addr: %v", err)
	}
}

func TestPickAdvertise(t *testing.T) {
	nets := func(cidrs ...string) []net.Addr {
		var out []net.Addr
		for _, c := range cidrs {
			ip, ipn, err := net.ParseCIDR(c)
			if err != nil {
				t.Fatal(err)
			}
			ipn.IP = ip
			out = append(out, ipn)
		}
		return out
	}
	cases := []struct {
		name   string
		addrs  []net.Addr
		v6     bool
		want   string
		noted  bool
		failed bool
	}{
		{"private v4 wins over ULA", nets("127.0.0.1/8", "fd00::2/64", "192.0.2.2/24", "10.1.2.3/8"), false, "10.1.2.3", false, false},
		{"ULA ignored on a v4 bind", nets("127.0.0.1/8", "fd00::2/64", "192.0.2.2/24"), false, "192.0.2.2", true, false},
		{"loopback only", nets("127.0.0.1/8", "::1/128"), false, "127.0.0.1", true, false},
		{"v6 bind takes v4 first", nets("fd00::2/64", "192.168.1.5/24"), true, "192.168.1.5", false, false},
		{"v6 bind, v6 only", nets("fd00::2/64", "::1/128"), true, "fd00::2", false, false},
		{"nothing", nets("fe80::1/64"), false, "", false, true},
	}
	for _, c := range cases {
		ip, note, err := pickAdvertise(c.addrs, c.v6)
		if (err != nil) != c.failed || (err == nil && ip.String() != c.want) || (note != "") != c.noted {
			t.Errorf("%s: %v %q %v", c.name, ip, note, err)
		}
	}
}

func TestStartOnUnspecifiedBindAdvertisesReachableAddress(t *testing.T) {
	o := fastOpts("any", "0.0.0.0")
	n := startNode(t, o)
	host, _, err := net.SplitHostPort(n.GossipAddr())
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil || ip.IsUnspecified() {
		t.Fatalf("advertised %s for a 0.0.0.0 bind", n.GossipAddr())
	}
	// And it is reachable: a node on loopback joins through it.
	p := fastOpts("peer", "127.0.0.1")
	p.Seeds = []string{n.GossipAddr()}
	peer := startNode(t, p)
	waitFor(t, 10*time.Second, "join via the advertised address", allSee([]*Node{n, peer}, []string{"any", "peer"}, StateAlive))
}

func TestReapForgetsLongDeadMembers(t *testing.T) {
	n, err := New(Options{NodeID: "me"}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for id, r := range map[string]*memberRec{
		"old-dead": {state: StateDead, lastChange: now.Add(-25 * time.Hour)},
		"old-left": {state: StateLeft, lastChange: now.Add(-25 * time.Hour)},
		"new-dead": {state: StateDead, lastChange: now.Add(-time.Hour)},
		"old-up":   {state: StateAlive, lastChange: now.Add(-48 * time.Hour)},
	} {
		r.id = id
		n.members[id] = r
	}
	n.reap(now)
	var left []string
	for _, m := range n.Members() {
		left = append(left, m.ID)
	}
	if !slices.Equal(left, []string{"new-dead", "old-up"}) {
		t.Errorf("after reap: %v", left)
	}
}
