// Package trustprotocol is the Go SDK of trust-protocol: a client of a running
// `trust-protocol serve`, over its unix socket or loopback TCP address, using the standard
// library only. It holds the agent token and never a credential value: serve sends the request,
// injects the value and redacts the answer.
package trustprotocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Template is a request template (SPEC section 5; `Template` in serve's OpenAPI document).
type Template struct {
	Credential string            `json:"credential,omitempty"`
	Method     string            `json:"method,omitempty"`
	URL        string            `json:"url"`
	Headers    map[string]string `json:"headers,omitempty"`
	// A string is sent as is; any other JSON value is sent as JSON; nil sends no body.
	Body interface{} `json:"body,omitempty"`
}

// Health is what GET /v1/health answers.
type Health struct {
	Status    string `json:"status"`
	Version   string `json:"version"`
	ExpiresAt string `json:"expires_at"`
}

// Error is a refusal by serve (policy, brake, rate limit, upstream failure), or no serve at all
// (Status 0). Code is serve's stable reason; Message and Hint never hold a secret.
type Error struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Kind       string `json:"kind"`
	Message    string `json:"message"`
	Hint       string `json:"hint,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

func (e *Error) Error() string {
	if e.Hint == "" {
		return fmt.Sprintf("trust-protocol: %s (%s)", e.Message, e.Code)
	}
	return fmt.Sprintf("trust-protocol: %s (%s)\nhint: %s", e.Message, e.Code, e.Hint)
}

// Options: Token defaults to TRUST_PROTOCOL_TOKEN; Server (unix:PATH, an absolute socket path, or
// http://127.0.0.1:PORT) to TRUST_PROTOCOL_SERVER, else the socket in the home
// (TRUST_PROTOCOL_HOME, else ~/.trust-protocol) or /run/trust-protocol/serve.sock, as exec does.
type Options struct {
	Token  string
	Server string
}

// Client talks to one serve.
type Client struct {
	token  string
	socket string // set for a unix socket
	base   string // http://localhost for a socket, else http://HOST:PORT
	tcp    bool
	http   *http.Client
}

const systemSocket = "/run/trust-protocol/serve.sock"
const errorHeader = "Trust-Protocol-Error"
const noServeHint = "start one with `trust-protocol serve` (add --listen 127.0.0.1:PORT for the gateway), " +
	"or pass Server: unix:PATH or http://127.0.0.1:PORT"

var credentialName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// New resolves the server (probing the default sockets when none is named).
func New(o Options) (*Client, error) {
	c := &Client{token: o.Token}
	if c.token == "" {
		c.token = os.Getenv("TRUST_PROTOCOL_TOKEN")
	}
	server := o.Server
	if server == "" {
		server = os.Getenv("TRUST_PROTOCOL_SERVER")
	}
	if server != "" {
		if err := c.setServer(server); err != nil {
			return nil, err
		}
		return c, nil
	}
	home := os.Getenv("TRUST_PROTOCOL_HOME")
	if home == "" {
		dir, err := os.UserHomeDir()
		if err != nil {
			dir = "/"
		}
		home = filepath.Join(dir, ".trust-protocol")
	}
	tried := []string{}
	for _, socket := range []string{filepath.Join(home, "serve.sock"), systemSocket} {
		socket, _ = filepath.Abs(socket)
		tried = append(tried, socket)
		if st, err := os.Stat(socket); err != nil || st.Mode()&os.ModeSocket == 0 {
			continue
		}
		c.useSocket(socket)
		if h, err := c.Status(context.Background()); err == nil && h.Status == "ok" {
			return c, nil
		}
	}
	return nil, &Error{Code: "no_serve", Kind: "sealed",
		Message: "no trust-protocol serve answers at " + strings.Join(tried, " or "), Hint: noServeHint}
}

func (c *Client) setServer(text string) error {
	if strings.HasPrefix(text, "unix:") && len(text) > 5 {
		p, _ := filepath.Abs(text[5:])
		c.useSocket(p)
		return nil
	}
	if strings.HasPrefix(text, "/") {
		c.useSocket(text)
		return nil
	}
	u, err := url.Parse(text)
	bad := &Error{Code: "bad_server", Kind: "usage", Message: fmt.Sprintf("not a serve address: %q", text),
		Hint: "use unix:PATH or http://127.0.0.1:PORT (serve listens on loopback only)"}
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" {
		return bad
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback() || (ip.To4() == nil && host != "::1")) {
		return bad
	}
	c.tcp = true
	c.base = "http://" + u.Host
	c.http = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	return nil
}

func (c *Client) useSocket(path string) {
	c.socket = path
	c.base = "http://localhost"
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

func (c *Client) where() string {
	if c.tcp {
		return c.base
	}
	return "unix:" + c.socket
}

// Request sends t through serve's POST /v1/proxy and returns the upstream's answer, its body
// streaming and already redacted by serve. A refusal is an *Error; a failure part-way through
// the body is an *Error from the body's Read.
func (c *Client) Request(ctx context.Context, t Template) (*http.Response, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/proxy", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// Asks serve to end a stream that fails part-way with an error trailer, not a bare cut.
	req.Header.Set("TE", "trailers")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if res.Header.Get(errorHeader) != "" {
		return nil, refusal(res)
	}
	res.Body = &trailerCheck{res: res, body: res.Body, where: c.where()}
	return res, nil
}

// GatewayURL is the base URL an unmodified SDK uses for credential: serve's
// /v1/gateway/CREDENTIAL on its loopback TCP address, with the agent token as its API key.
func (c *Client) GatewayURL(credential string) (string, error) {
	if !credentialName.MatchString(credential) {
		return "", &Error{Code: "bad_credential_name", Kind: "usage",
			Message: fmt.Sprintf("not a credential name: %q", credential)}
	}
	if !c.tcp {
		return "", &Error{Code: "no_tcp_server", Kind: "usage",
			Message: "the gateway needs serve on a loopback TCP address; no http:// server was given",
			Hint:    "start serve with --listen 127.0.0.1:PORT and pass Server: http://127.0.0.1:PORT (or set TRUST_PROTOCOL_SERVER)"}
	}
	return c.base + "/v1/gateway/" + credential, nil
}

// Status is serve's GET /v1/health.
func (c *Client) Status(ctx context.Context) (*Health, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/health", nil)
	if err != nil {
		return nil, err
	}
	res, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != 200 {
		return nil, refusal(res)
	}
	defer res.Body.Close()
	var h Health
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&h); err != nil {
		return nil, err
	}
	return &h, nil
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	res, err := c.http.Do(req)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		return nil, &Error{Code: "serve_unreachable", Kind: "sealed",
			Message: "no trust-protocol serve answers at " + c.where(), Hint: noServeHint}
	}
	return res, nil
}

func refusal(res *http.Response) *Error {
	defer res.Body.Close()
	var body struct {
		Error *Error `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body)
	e := body.Error
	if e == nil || e.Code == "" {
		e = &Error{Code: "http_" + strconv.Itoa(res.StatusCode), Kind: "internal",
			Message: "trust-protocol serve answered " + res.Status}
	}
	e.Status = res.StatusCode
	return e
}

// trailerCheck turns serve's error trailer, or a cut connection, into an *Error at the body's end.
type trailerCheck struct {
	res   *http.Response
	body  io.ReadCloser
	where string
}

func (t *trailerCheck) Read(p []byte) (int, error) {
	n, err := t.body.Read(p)
	if err == io.EOF {
		if v := t.res.Trailer.Get(errorHeader); v != "" {
			var body struct {
				Error *Error `json:"error"`
			}
			if json.Unmarshal([]byte(v), &body) == nil && body.Error != nil {
				body.Error.Status = 502
				return n, body.Error
			}
			return n, t.cut()
		}
	} else if err != nil && !errors.Is(err, context.Canceled) {
		return n, t.cut()
	}
	return n, err
}

func (t *trailerCheck) Close() error { return t.body.Close() }

func (t *trailerCheck) cut() *Error {
	return &Error{Status: 502, Code: "serve_cut", Kind: "upstream",
		Message: "the response from serve (" + t.where + ") was cut off",
		Hint:    "see `trust-protocol audit show --tail 5` for how the request ended"}
}
