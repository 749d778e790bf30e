//! The Rust SDK of trust-protocol: a client of a running `trust-protocol serve`, over its unix
//! socket or loopback TCP address. It holds the agent token and never a credential value: serve
//! sends the request, injects the value and redacts the answer.
//!
//! Standard library only, for Debian's Rust 1.63: a small HTTP/1.1 client (one request per
//! connection, `Connection: close`) and a small JSON module (docs/decisions.md says why).

mod json;

pub use json::Json;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

const SYSTEM_SOCKET: &str = "/run/trust-protocol/serve.sock";
const ERROR_HEADER: &str = "trust-protocol-error";
const HEAD_LIMIT: usize = 64 * 1024;
const NO_SERVE_HINT: &str = "start one with `trust-protocol serve` (add --listen 127.0.0.1:PORT for the gateway), or pass server: unix:PATH or http://127.0.0.1:PORT";

/// A request template (SPEC section 5; `Template` in serve's OpenAPI document).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template {
    pub credential: Option<String>,
    /// Default GET.
    pub method: Option<String>,
    pub url: String,
    /// Placeholders `{{CREDENTIAL}}`, `{{CREDENTIAL:name}}`, optionally `|base64`.
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

/// A text body is sent as is; a JSON one as JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Text(String),
    Json(Json),
}

impl Template {
    pub fn to_json(&self) -> Json {
        let mut m = BTreeMap::new();
        if let Some(c) = &self.credential {
            m.insert("credential".to_string(), Json::String(c.clone()));
        }
        if let Some(method) = &self.method {
            m.insert("method".to_string(), Json::String(method.clone()));
        }
        m.insert("url".to_string(), Json::String(self.url.clone()));
        if !self.headers.is_empty() {
            let h = self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())));
            m.insert("headers".to_string(), Json::Object(h.collect()));
        }
        match &self.body {
            Some(Body::Text(t)) => drop(m.insert("body".to_string(), Json::String(t.clone()))),
            Some(Body::Json(j)) => drop(m.insert("body".to_string(), j.clone())),
            None => {}
        }
        Json::Object(m)
    }

    /// A template from its JSON text (as `exec --template` reads it).
    pub fn parse(text: &str) -> Result<Template, Error> {
        let bad = |what: &str| usage("bad_template", &format!("not a template: {}", what));
        let json = Json::parse(text).ok_or_else(|| bad("invalid JSON"))?;
        let m = match json {
            Json::Object(m) => m,
            _ => return Err(bad("not a JSON object")),
        };
        let string = |key: &str| -> Result<Option<String>, Error> {
            match m.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("{} is not a string", key))),
            }
        };
        let mut headers = Vec::new();
        if let Some(Json::Object(h)) = m.get("headers") {
            for (k, v) in h {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad("a header value is not a string"))?;
                headers.push((k.clone(), v.to_string()));
            }
        }
        Ok(Template {
            credential: string("credential")?,
            method: string("method")?,
            url: string("url")?.ok_or_else(|| bad("no url"))?,
            headers,
            body: match m.get("body") {
                None => None,
                Some(Json::String(s)) => Some(Body::Text(s.clone())),
                Some(j) => Some(Body::Json(j.clone())),
            },
        })
    }
}

/// A refusal by serve (policy, brake, rate limit, upstream failure), or no serve at all
/// (status 0). `code` is serve's stable reason; `message` and `hint` never hold a secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub status: u16,
    pub code: String,
    pub kind: String,
    pub message: String,
    pub hint: Option<String>,
    pub retry_after: Option<u64>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "trust-protocol: {} ({})", self.message, self.code)?;
        match &self.hint {
            Some(h) => write!(f, "\nhint: {}", h),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The trust-protocol error inside an I/O error from reading a response body, if any.
    pub fn from_io(e: &io::Error) -> Option<&Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }

    fn from_json(status: u16, json: Option<&Json>) -> Error {
        let e = json.and_then(|j| j.get("error"));
        let field = |k: &str| {
            e.and_then(|e| e.get(k))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        match field("code") {
            Some(code) => Error {
                status,
                code,
                kind: field("kind").unwrap_or_else(|| "internal".to_string()),
                message: field("message").unwrap_or_default(),
                hint: field("hint"),
                retry_after: match e.and_then(|e| e.get("retry_after")) {
                    Some(Json::Number(n)) => n.parse().ok(),
                    _ => None,
                },
            },
            None => Error {
                status,
                code: format!("http_{}", status),
                kind: "internal".to_string(),
                message: format!("trust-protocol serve answered HTTP {}", status),
                hint: None,
                retry_after: None,
            },
        }
    }
}

fn usage(code: &str, message: &str) -> Error {
    Error {
        status: 0,
        code: code.to_string(),
        kind: "usage".to_string(),
        message: message.to_string(),
        hint: None,
        retry_after: None,
    }
}

/// What `GET /v1/health` answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub expires_at: String,
}

/// `token` defaults to TRUST_PROTOCOL_TOKEN; `server` (unix:PATH, an absolute socket path, or
/// http://127.0.0.1:PORT) to TRUST_PROTOCOL_SERVER, else the socket in the home
/// (TRUST_PROTOCOL_HOME, else ~/.trust-protocol) or /run/trust-protocol/serve.sock, as exec does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub token: Option<String>,
    pub server: Option<String>,
}

#[derive(Clone, Debug)]
enum Target {
    Unix(PathBuf),
    /// Where to connect, and the `host:port` for the Host header and URLs.
    Tcp(String, u16, String),
}

/// A client of one serve.
#[derive(Clone, Debug)]
pub struct Client {
    token: Option<String>,
    target: Target,
}

impl Client {
    pub fn new(options: Options) -> Result<Client, Error> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let token = options.token.or_else(|| env("TRUST_PROTOCOL_TOKEN"));
        if let Some(server) = options.server.or_else(|| env("TRUST_PROTOCOL_SERVER")) {
            return Ok(Client {
                token,
                target: parse_server(&server)?,
            });
        }
        let home = env("TRUST_PROTOCOL_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env("HOME").unwrap_or_else(|| "/".to_string()))
                    .join(".trust-protocol")
            });
        let mut tried = Vec::new();
        for socket in [home.join("serve.sock"), PathBuf::from(SYSTEM_SOCKET)] {
            let socket = std::env::current_dir()
                .map(|d| d.join(&socket))
                .unwrap_or(socket);
            tried.push(socket.display().to_string());
            let is_socket = std::fs::metadata(&socket).map(|m| m.file_type().is_socket());
            if !is_socket.unwrap_or(false) {
                continue;
            }
            let client = Client {
                token: token.clone(),
                target: Target::Unix(socket),
            };
            if matches!(client.status(), Ok(h) if h.status == "ok") {
                return Ok(client);
            }
        }
        Err(Error {
            status: 0,
            code: "no_serve".to_string(),
            kind: "sealed".to_string(),
            message: format!("no trust-protocol serve answers at {}", tried.join(" or ")),
            hint: Some(NO_SERVE_HINT.to_string()),
            retry_after: None,
        })
    }

    /// Sends `template` through serve's `POST /v1/proxy`: the upstream's answer, its body read
    /// as it arrives and already redacted by serve. A refusal is an Error; a failure part-way
    /// through the body is an I/O error holding one (see `Error::from_io`).
    pub fn request(&self, template: &Template) -> Result<Response, Error> {
        let body = template.to_json().encode();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            // Asks serve to end a stream that fails part-way with an error trailer, not a cut.
            ("TE".to_string(), "trailers".to_string()),
        ];
        if let Some(token) = &self.token {
            if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return Err(Error {
                    kind: "denied".to_string(),
                    ..usage("bad_token", "the agent token is not valid")
                });
            }
            headers.push(("Authorization".to_string(), format!("Bearer {}", token)));
        }
        let res = self.send("POST", "/v1/proxy", &headers, body.as_bytes())?;
        if res.header(ERROR_HEADER).is_some() {
            return Err(res.refusal());
        }
        Ok(res)
    }

    /// The base URL an unmodified SDK uses for `credential`: serve's /v1/gateway/CREDENTIAL on
    /// its loopback TCP address, with the agent token as its API key.
    pub fn gateway_url(&self, credential: &str) -> Result<String, Error> {
        let ok = !credential.is_empty()
            && credential.len() <= 64
            && credential
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(usage(
                "bad_credential_name",
                &format!("not a credential name: {:?}", credential),
            ));
        }
        match &self.target {
            Target::Tcp(_, _, host) => Ok(format!("http://{}/v1/gateway/{}", host, credential)),
            Target::Unix(_) => Err(Error {
                hint: Some("start serve with --listen 127.0.0.1:PORT and pass server: http://127.0.0.1:PORT (or set TRUST_PROTOCOL_SERVER)".to_string()),
                ..usage("no_tcp_server", "the gateway needs serve on a loopback TCP address; no http:// server was given")
            }),
        }
    }

    /// serve's `GET /v1/health`.
    pub fn status(&self) -> Result<Health, Error> {
        let res = self.send("GET", "/v1/health", &[], b"")?;
        if res.status != 200 {
            return Err(res.refusal());
        }
        let status = res.status;
        let json = res.json();
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        match (field("status"), field("version"), field("expires_at")) {
            (Some(s), Some(version), Some(expires_at)) => Ok(Health {
                status: s,
                version,
                expires_at,
            }),
            _ => Err(Error::from_json(status, None)),
        }
    }

    fn where_(&self) -> String {
        match &self.target {
            Target::Unix(p) => format!("unix:{}", p.display()),
            Target::Tcp(_, _, host) => format!("http://{}", host),
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let unreachable = || Error {
            status: 0,
            code: "serve_unreachable".to_string(),
            kind: "sealed".to_string(),
            message: format!("no trust-protocol serve answers at {}", self.where_()),
            hint: Some(NO_SERVE_HINT.to_string()),
            retry_after: None,
        };
        let (conn, host) = match &self.target {
            Target::Unix(p) => (
                Conn::Unix(UnixStream::connect(p).map_err(|_| unreachable())?),
                "localhost",
            ),
            Target::Tcp(ip, port, host) => (
                Conn::Tcp(TcpStream::connect((ip.as_str(), *port)).map_err(|_| unreachable())?),
                host.as_str(),
            ),
        };
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            method, path, host
        );
        for (k, v) in headers {
            head.push_str(&format!("{}: {}\r\n", k, v));
        }
        if method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut conn = conn;
        let sent = conn
            .write_all(head.as_bytes())
            .and_then(|_| conn.write_all(body))
            .and_then(|_| conn.flush());
        sent.map_err(|_| unreachable())?;
        Response::read(BufReader::new(conn), self.where_()).map_err(|_| unreachable())
    }
}

fn parse_server(text: &str) -> Result<Target, Error> {
    if let Some(p) = text.strip_prefix("unix:").filter(|p| !p.is_empty()) {
        let p = Path::new(p);
        let abs = std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf());
        return Ok(Target::Unix(abs));
    }
    if text.starts_with('/') {
        return Ok(Target::Unix(PathBuf::from(text)));
    }
    let bad = || Error {
        hint: Some(
            "use unix:PATH or http://127.0.0.1:PORT (serve listens on loopback only)".to_string(),
        ),
        ..usage("bad_server", &format!("not a serve address: {:?}", text))
    };
    let rest = text.strip_prefix("http://").ok_or_else(bad)?;
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    let colon = host_port.rfind(':').ok_or_else(bad)?;
    let (host, port) = (&host_port[..colon], &host_port[colon + 1..]);
    let port: u16 = port.parse().map_err(|_| bad())?;
    let connect = match host {
        "localhost" => "127.0.0.1".to_string(),
        "[::1]" => "::1".to_string(),
        h => match h.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_loopback() => h.to_string(),
            _ => return Err(bad()),
        },
    };
    Ok(Target::Tcp(connect, port, host_port.to_string()))
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

enum Framing {
    /// Bytes left in the current chunk; 0 at a chunk boundary.
    Chunked(u64),
    Length(u64),
    UntilClose,
    Done,
}

/// serve's answer: status, headers (hop-by-hop ones left out) and a body to read (`Read`).
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    conn: BufReader<Conn>,
    framing: Framing,
    where_: String,
}

impl Response {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn read(mut conn: BufReader<Conn>, where_: String) -> io::Result<Response> {
        let mut lines = Vec::new();
        let mut size = 0;
        loop {
            let mut line = String::new();
            let n = conn.read_line(&mut line)?;
            size += n;
            if n == 0 || size > HEAD_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad response head",
                ));
            }
            let line = line.trim_end_matches(&['\r', '\n'][..]).to_string();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        let status_line = lines.first().cloned().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad status line");
        if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
            return Err(bad());
        }
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut framing = Framing::UntilClose;
        for line in &lines[1..] {
            let (k, v) = match line.split_once(':') {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => continue,
            };
            let lower = k.to_ascii_lowercase();
            if lower == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                framing = Framing::Chunked(0);
            } else if lower == "content-length" && !matches!(framing, Framing::Chunked(_)) {
                framing = Framing::Length(v.parse().map_err(|_| bad())?);
            }
            let hop = [
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
                "transfer-encoding",
                "upgrade",
            ];
            if !hop.contains(&lower.as_str()) {
                headers.push((k, v));
            }
        }
        Ok(Response {
            status,
            reason,
            headers,
            conn,
            framing,
            where_,
        })
    }

    fn refusal(self) -> Error {
        let status = self.status;
        Error::from_json(status, self.json().as_ref())
    }

    fn json(mut self) -> Option<Json> {
        let mut text = String::new();
        (&mut self).take(1 << 20).read_to_string(&mut text).ok()?;
        Json::parse(&text)
    }

    fn cut(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            Error {
                status: 502,
                code: "serve_cut".to_string(),
                kind: "upstream".to_string(),
                message: format!("the response from serve ({}) was cut off", self.where_),
                hint: Some(
                    "see `trust-protocol audit show --tail 5` for how the request ended"
                        .to_string(),
                ),
                retry_after: None,
            },
        )
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.conn.read_line(&mut line)? == 0 {
            return Err(self.cut());
        }
        Ok(line.trim_end_matches(&['\r', '\n'][..]).to_string())
    }

    /// After the last chunk: serve's error trailer, if any, becomes the read's error.
    fn trailers(&mut self) -> io::Result<()> {
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Ok(());
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case(ERROR_HEADER) {
                    let e = Error::from_json(502, Json::parse(v.trim()).as_ref());
                    return Err(io::Error::new(io::ErrorKind::Other, e));
                }
            }
        }
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::UntilClose => return self.conn.read(buf),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                }
                Framing::Length(left) => {
                    let max = buf.len().min(left as usize);
                    let n = self.conn.read(&mut buf[..max])?;
                    if n == 0 {
                        return Err(self.cut());
                    }
                    self.framing = Framing::Length(left - n as u64);
                    return Ok(n);
                }
                Framing::Chunked(0) => {
                    let line = self.line()?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| self.cut())?;
                    if size == 0 {
                        self.framing = Framing::Done;
                        self.trailers()?;
                        return Ok(0);
                    }
                    self.framing = Framing::Chunked(size);
                }
                Framing::Chunked(left) => {
                    let max = buf.len().min(left as usize);
                    let n = self.conn.read(&mut buf[..max])?;
                    if n == 0 {
                        return Err(self.cut());
                    }
                    let left = left - n as u64;
                    if left == 0 && self.line()? != "" {
                        return Err(self.cut());
                    }
                    self.framing = Framing::Chunked(left);
                    return Ok(n);
                }
            }
        }
    }
}
