//! Start the real `transcription-server` binary on an ephemeral port and talk
//! to it: a well-behaved HTTP client (`ureq`) for ordinary requests, and raw
//! sockets for everything a well-behaved client would never send.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server process, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How long a test waits for the server to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Server {
    /// Start with extra flags (always on 127.0.0.1, port 0).
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_wrapped(&[], args, env)
    }

    /// Start under a wrapper command (`prlimit --as=N --`, …) that execs the
    /// server with the arguments that follow it.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        let binary = env!("CARGO_BIN_EXE_transcription-server");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !args.contains(&"--log-level") {
            command.args(["--log-level", "warn"]);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn transcription-server");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&stderr_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = collected.lock() {
                    lines.push(line);
                }
            }
        });
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = addr_tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let errors = stderr_lines.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("server did not start: {errors:#?}");
            }
        };
        Server {
            child: Some(child),
            addr,
            stderr: stderr_lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Send a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run the binary with arguments and wait for it to exit (for refusals at start).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_transcription-server"));
    command.args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run transcription-server");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fixture under tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {}: {error}", path.display()))
}

/// A response as the tests see it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The error code of API.md's error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

fn into_reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("request failed: {error}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            response
                .header(&name)
                .map(|value| (name.clone(), value.to_string()))
        })
        .collect();
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .expect("read body");
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET` with a real client.
pub fn get(server: &Server, path: &str) -> Reply {
    into_reply(agent().get(&server.url(path)).call())
}

/// `POST` a body with a content type, and optional extra headers.
pub fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = agent()
        .post(&server.url(path))
        .set("Content-Type", content_type);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    into_reply(request.send_bytes(body))
}

/// Any method with a real client.
pub fn request(server: &Server, method: &str, path: &str) -> Reply {
    request_with(server, method, path, &[])
}

/// Any method with extra headers and no body.
pub fn request_with(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().request(method, &server.url(path));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    into_reply(request.call())
}

/// A multipart/form-data body as OpenAI SDKs and curl send it.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "------------------------test0123456789";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if let Some((filename, content_type, data)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A raw connection for requests no client library would send.
pub struct Raw {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl Raw {
    pub fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    /// Wrap a stream connected some other way.
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Read one response (head + Content-Length body). `None` on EOF before a
    /// response starts.
    pub fn read_response(&mut self) -> Option<Reply> {
        loop {
            if let Some((reply, used)) = parse_response(&self.pending) {
                self.pending.drain(..used);
                return Some(reply);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(
                        self.pending.is_empty(),
                        "EOF inside a response: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    );
                    return None;
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    /// The bytes the server sent (buffered ones included) before it closed
    /// the connection (EOF or reset) within `timeout`; `None` if it did not.
    pub fn bytes_until_closed(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut received = std::mem::take(&mut self.pending);
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(received),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(_) => return Some(received),
            }
        }
    }

    /// Whether the server closed the connection (EOF or reset) within
    /// `timeout`, discarding anything it still sends.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// Parse one response from the front of `bytes`: the reply and the bytes used.
fn parse_response(bytes: &[u8]) -> Option<(Reply, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes).expect("valid response head") {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return None,
    };
    let status = response.code.expect("status");
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    if status == 100 {
        return Some((
            Reply {
                status,
                headers,
                body: Vec::new(),
            },
            head_len,
        ));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse().expect("numeric length"))
        .unwrap_or(0);
    if bytes.len() < head_len + length {
        return None;
    }
    Some((
        Reply {
            status,
            headers,
            body: bytes[head_len..head_len + length].to_vec(),
        },
        head_len + length,
    ))
}

/// A WebSocket client (tungstenite) connected to the streaming endpoint.
pub struct Ws {
    pub socket: tungstenite::WebSocket<TcpStream>,
}

/// Why connecting failed: the HTTP status the server answered instead of 101.
#[derive(Debug)]
pub struct WsRefused {
    pub status: u16,
    pub body: String,
}

impl Ws {
    /// Connect to `/v1/transcribe/stream?{query}` (query may be empty).
    pub fn connect(server: &Server, query: &str) -> Ws {
        Ws::try_connect(server, query, &[])
            .unwrap_or_else(|refused| panic!("WebSocket refused: {refused:?}"))
    }

    pub fn try_connect(
        server: &Server,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, WsRefused> {
        let stream = TcpStream::connect(server.addr).expect("connect");
        Ws::try_handshake(server.addr, stream, query, headers)
    }

    /// Connect to a server by address (from threads that do not hold the
    /// [`Server`]).
    pub fn connect_addr(addr: SocketAddr, query: &str) -> Ws {
        let stream = TcpStream::connect(addr).expect("connect");
        Ws::try_handshake(addr, stream, query, &[])
            .unwrap_or_else(|refused| panic!("WebSocket refused: {refused:?}"))
    }

    /// Connect from the local address `source` (any 127.0.0.0/8 address works
    /// on loopback), to look like another client machine.
    pub fn try_connect_from(
        server: &Server,
        source: std::net::IpAddr,
        query: &str,
    ) -> Result<Ws, WsRefused> {
        Ws::try_connect_from_with(server, source, query, &[])
    }

    /// [`Ws::try_connect_from`] with extra request headers.
    pub fn try_connect_from_with(
        server: &Server,
        source: std::net::IpAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, WsRefused> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect(&server.addr.into()).expect("connect");
        Ws::try_handshake(server.addr, socket.into(), query, headers)
    }

    fn try_handshake(
        addr: SocketAddr,
        stream: TcpStream,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, WsRefused> {
        use tungstenite::client::IntoClientRequest;
        let url = format!("ws://{addr}/v1/transcribe/stream?{query}");
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        match tungstenite::client::client(request, stream) {
            Ok((socket, _)) => Ok(Ws { socket }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(WsRefused {
                    status: response.status().as_u16(),
                    body: response
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                })
            }
            Err(error) => panic!("handshake failed: {error}"),
        }
    }

    pub fn send_audio(&mut self, bytes: &[u8]) {
        self.socket
            .send(tungstenite::Message::binary(bytes.to_vec()))
            .expect("send audio");
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(tungstenite::Message::text(text))
            .expect("send text");
    }

    /// Send audio in frames of `frame_bytes`.
    pub fn stream_audio(&mut self, pcm: &[u8], frame_bytes: usize) {
        for frame in pcm.chunks(frame_bytes) {
            self.send_audio(frame);
        }
    }

    /// The next JSON message; `None` when the server closed. Panics on a
    /// timeout.
    pub fn next_json(&mut self) -> Option<serde_json::Value> {
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON message"));
                }
                Ok(tungstenite::Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return None
                }
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    /// Read until the server's close: every JSON message and the close code.
    pub fn read_to_close(&mut self) -> (Vec<serde_json::Value>, Option<u16>) {
        let mut messages = Vec::new();
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    messages.push(serde_json::from_str(text.as_str()).expect("JSON message"));
                }
                Ok(tungstenite::Message::Close(frame)) => {
                    let code = frame.map(|f| u16::from(f.code));
                    // Complete the handshake.
                    while self.socket.read().is_ok() {}
                    return (messages, code);
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return (messages, None)
                }
                Err(tungstenite::Error::Io(error)) => {
                    panic!("read failed: {error}; got {messages:#?}")
                }
                Err(error) => {
                    eprintln!("read error after {} messages: {error}", messages.len());
                    return (messages, Some(0));
                }
            }
        }
    }
}

/// The PCM16 payload of a canonical 44-byte-header WAV fixture.
pub fn fixture_pcm(name: &str) -> Vec<u8> {
    let wav = fixture(name);
    assert_eq!(&wav[36..40], b"data", "{name} has a canonical header");
    wav[44..].to_vec()
}

/// Poll `check` until it returns true or `timeout` passes. For eventually
/// consistent figures (metrics are merged every 250 ms), never for speed.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled sample in `/metrics` (`None` if absent).
pub fn metric(server: &Server, name: &str, headers: &[(&str, &str)]) -> Option<f64> {
    let reply = request_with(server, "GET", "/metrics", headers);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().lines().find_map(|line| {
        let (sample, value) = line.split_once(' ')?;
        (sample == name)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Wait until `/v1/health` reports `expected` live sessions (the gauge is
/// exact, but a closing session takes a moment to release its slot).
pub fn assert_active_sessions(server: &Server, expected: u64, timeout: Duration) {
    assert!(
        eventually(timeout, || get(server, "/v1/health").json()
            ["active_sessions"]
            == expected),
        "active_sessions never reached {expected}"
    );
}

/// `DELETE` with a real client.
pub fn delete(server: &Server, path: &str) -> Reply {
    request(server, "DELETE", path)
}

/// A gate for jobs of the mock engine (test builds with `fault-injection`):
/// a job whose language hint is `xx-hold` waits on its worker until
/// [`Hold::release`] (bounded by the server at two minutes). Start the server
/// with [`Hold::env`] so it knows the gate's file.
pub struct Hold {
    path: PathBuf,
}

impl Hold {
    pub fn new(name: &str) -> Hold {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "transcription-hold-{}-{name}-{nanos}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        Hold { path }
    }

    /// The server's environment entry naming the gate.
    pub fn env(&self) -> (&'static str, &str) {
        (
            "TRANSCRIBE_FAULT_HOLD_PATH",
            self.path.to_str().expect("a UTF-8 temp path"),
        )
    }

    /// Let every held job (and every later one) run.
    pub fn release(&self) {
        std::fs::write(&self.path, b"go").expect("write the release file");
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The number of model jobs queued or running, from `/metrics`.
pub fn model_jobs_pending(server: &Server) -> f64 {
    let queued = metric(server, "transcribe_model_queue_depth", &[]).unwrap_or(0.0);
    let running = metric(server, "transcribe_model_jobs_in_flight", &[]).unwrap_or(0.0);
    queued + running
}
