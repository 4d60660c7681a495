package atauthtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// testClient is a deliberately small ATProto OAuth client written against
// the specs, to exercise the network without atauth.
type testClient struct {
	t        testing.TB
	n        *Network
	clientID string
	redirect string
	dpopKey  jwk.Key
	now      func() time.Time

	// signer is set for private_key_jwt clients.
	signer jwk.Key

	asNonce  string
	pdsNonce string
	http     *http.Client
}

func newKey(t testing.TB, kid string) jwk.Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func loopbackClientID(redirect, scope string) string {
	q := url.Values{"redirect_uri": {redirect}, "scope": {scope}}
	return "http://localhost?" + q.Encode()
}

func newLoopbackClient(t testing.TB, n *Network) *testClient {
	redirect := "http://127.0.0.1/callback"
	return &testClient{
		t:        t,
		n:        n,
		clientID: loopbackClientID(redirect, "atproto transition:generic"),
		redirect: redirect,
		dpopKey:  newKey(t, ""),
		now:      time.Now,
		http:     &http.Client{Timeout: 10 * time.Second},
	}
}

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

type proofOpts struct {
	key   jwk.Key
	htm   string
	htu   string
	nonce string
	ath   string
	iat   time.Time
	jti   string
	typ   string
	// embedPrivate puts the private key in the header, which must fail.
	embedPrivate bool
}

func (c *testClient) proof(o proofOpts) string {
	c.t.Helper()
	if o.key == nil {
		o.key = c.dpopKey
	}
	if o.iat.IsZero() {
		o.iat = c.now()
	}
	if o.jti == "" {
		o.jti = randomToken(c.t)
	}
	if o.typ == "" {
		o.typ = "dpop+jwt"
	}
	pub, err := o.key.PublicKey()
	if err != nil {
		c.t.Fatal(err)
	}
	embedded := pub
	if o.embedPrivate {
		embedded = o.key
	}
	h := jws.NewHeaders()
	for k, v := range map[string]any{jws.TypeKey: o.typ, jws.JWKKey: embedded} {
		if err := h.Set(k, v); err != nil {
			c.t.Fatal(err)
		}
	}
	claims := map[string]any{"jti": o.jti, "htm": o.htm, "htu": o.htu, "iat": o.iat.Unix()}
	if o.nonce != "" {
		claims["nonce"] = o.nonce
	}
	if o.ath != "" {
		claims["ath"] = o.ath
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		c.t.Fatal(err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256, o.key, jws.WithProtectedHeaders(h)))
	if err != nil {
		c.t.Fatal(err)
	}
	return string(signed)
}

func (c *testClient) assertion() string {
	c.t.Helper()
	return c.assertionWith(map[string]any{})
}

// assertionWith signs a client assertion; overrides replace default claims
// (a nil value deletes one).
func (c *testClient) assertionWith(overrides map[string]any) string {
	c.t.Helper()
	claims := map[string]any{
		"iss": c.clientID,
		"sub": c.clientID,
		"aud": c.n.IssuerURL(),
		"jti": randomToken(c.t),
		"iat": c.now().Unix(),
		"exp": c.now().Add(time.Minute).Unix(),
	}
	for k, v := range overrides {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		c.t.Fatal(err)
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.KeyIDKey, c.signer.KeyID()); err != nil {
		c.t.Fatal(err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256, c.signer, jws.WithProtectedHeaders(h)))
	if err != nil {
		c.t.Fatal(err)
	}
	return string(signed)
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

func (c *testClient) do(req *http.Request) response {
	c.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.body); err != nil {
			c.t.Fatalf("decoding %s: %v", b, err)
		}
	}
	return out
}

// postRaw posts form to the AS endpoint path with the given DPoP proof ("" =
// none).
func (c *testClient) postRaw(path string, form url.Values, proof string) response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.n.IssuerURL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	return c.do(req)
}

// post posts to the AS with client auth and a DPoP proof, retrying once on
// a nonce challenge as clients must.
func (c *testClient) post(path string, form url.Values) response {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("client_id", c.clientID)
		if c.signer != nil {
			f.Set("client_assertion_type", clientAssertionType)
			f.Set("client_assertion", c.assertion())
		}
		resp := c.postRaw(path, f, c.proof(proofOpts{htm: "POST", htu: c.n.IssuerURL() + path, nonce: c.asNonce}))
		if n := resp.header.Get("DPoP-Nonce"); n != "" {
			c.asNonce = n
		}
		if attempt == 0 && resp.status == http.StatusBadRequest && resp.str("error") == "use_dpop_nonce" {
			continue
		}
		return resp
	}
}

type flow struct {
	verifier   string
	state      string
	requestURI string
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (c *testClient) parForm(scope string, extra url.Values) (flow, url.Values) {
	f := flow{verifier: randomToken(c.t) + randomToken(c.t), state: randomToken(c.t)}
	form := url.Values{
		"response_type":         {"code"},
		"redirect_uri":          {c.redirect},
		"scope":                 {scope},
		"state":                 {f.state},
		"code_challenge":        {challengeOf(f.verifier)},
		"code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		form[k] = v
	}
	return f, form
}

// startFlow pushes an authorization request and returns the flow.
func (c *testClient) startFlow(scope string, extra url.Values) flow {
	c.t.Helper()
	f, form := c.parForm(scope, extra)
	resp := c.post("/oauth/par", form)
	if resp.status != http.StatusCreated {
		c.t.Fatalf("PAR: got status %d %s; want 201", resp.status, resp.raw)
	}
	f.requestURI = resp.str("request_uri")
	return f
}

func (c *testClient) authURL(f flow) string {
	q := url.Values{"client_id": {c.clientID}, "request_uri": {f.requestURI}}
	return c.n.IssuerURL() + "/oauth/authorize?" + q.Encode()
}

// login runs PAR, Approve and the code exchange, and returns the token
// response.
func (c *testClient) login(a Account, scope string) response {
	c.t.Helper()
	f := c.startFlow(scope, url.Values{"login_hint": {a.Handle}})
	cb, err := c.n.Approve(c.t.Context(), c.authURL(f), a.Handle, a.Password)
	if err != nil {
		c.t.Fatal(err)
	}
	code := c.checkCallback(cb, f)
	resp := c.exchange(f, code)
	if resp.status != http.StatusOK {
		c.t.Fatalf("token: got status %d %s; want 200", resp.status, resp.raw)
	}
	return resp
}

func (c *testClient) checkCallback(cb string, f flow) string {
	c.t.Helper()
	u, err := url.Parse(cb)
	if err != nil {
		c.t.Fatal(err)
	}
	q := u.Query()
	if got := q.Get("state"); got != f.state {
		c.t.Errorf("callback state: got %q; want %q", got, f.state)
	}
	if got := q.Get("iss"); got != c.n.IssuerURL() {
		c.t.Errorf("callback iss: got %q; want %q", got, c.n.IssuerURL())
	}
	if q.Get("code") == "" {
		c.t.Fatalf("callback %s has no code", cb)
	}
	return q.Get("code")
}

func (c *testClient) exchange(f flow, code string) response {
	c.t.Helper()
	return c.post("/oauth/token", url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.redirect},
		"code_verifier": {f.verifier},
	})
}

func (c *testClient) refresh(token string) response {
	c.t.Helper()
	return c.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}})
}

func ath(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// getSessionRaw calls getSession once with the given proof options.
func (c *testClient) getSessionRaw(accessToken string, o proofOpts) response {
	c.t.Helper()
	u := c.n.PDSURL() + "/xrpc/com.atproto.server.getSession"
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	o.htm, o.htu = "GET", u
	if o.ath == "" {
		o.ath = ath(accessToken)
	}
	req.Header.Set("Authorization", "DPoP "+accessToken)
	req.Header.Set("DPoP", c.proof(o))
	resp := c.do(req)
	if n := resp.header.Get("DPoP-Nonce"); n != "" {
		c.pdsNonce = n
	}
	return resp
}

// getSession calls getSession, retrying once on a nonce challenge.
func (c *testClient) getSession(accessToken string) response {
	c.t.Helper()
	resp := c.getSessionRaw(accessToken, proofOpts{nonce: c.pdsNonce})
	if resp.status == http.StatusUnauthorized && strings.Contains(resp.header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
		resp = c.getSessionRaw(accessToken, proofOpts{nonce: c.pdsNonce})
	}
	return resp
}
