//! An S3 server for the remote-storage tests: moto's, from PyPI, serving one request at a
//! time on 127.0.0.1 (its threaded mode checks preconditions and stores without a lock), plus
//! a TCP proxy that loses PUTs or their replies.
//!
//! The Python comes from `DURAFILE_TEST_PYTHON` (scripts/test.sh makes a venv with
//! `moto[server]` and exports it). Without it, or without moto, [`Server::start`] prints
//! `SKIPPED: <why>` to stderr and returns `None`: the test then returns, visibly skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// moto's WSGI app behind werkzeug's single-threaded, single-process server, as
/// `moto.server.main` builds it but with `threaded=False`. It prints its port, and exits when
/// its stdin closes, so it dies with the test process even when statics are never dropped.
const SERVER: &str = r#"
import os, sys, threading
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, app, threaded=False, processes=1,
                     request_handler=MotoRequestHandler)
print(server.port, flush=True)
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
server.serve_forever()
"#;

/// moto checks that a request carries credentials, not that its signature is right: this
/// header lets a test read and write behind durafile's back with plain HTTP.
const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n";

/// A running moto server.
pub struct Server {
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
}

impl Server {
    /// Starts a server, or says why not (`SKIPPED: ...` on stderr) and returns `None`.
    pub fn start() -> Option<Server> {
        let Some(python) = std::env::var_os("DURAFILE_TEST_PYTHON") else {
            eprintln!(
                "SKIPPED: DURAFILE_TEST_PYTHON is not set; run scripts/test.sh, or make \
                 target/venv with moto[server] (requirements-test.txt) and export it"
            );
            return None;
        };
        let check = Command::new(&python)
            .args(["-c", "import moto.server, werkzeug"])
            .output();
        match check {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "SKIPPED: {} cannot import moto's server: {}",
                    python.to_string_lossy(),
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run {}: {e}", python.to_string_lossy());
                return None;
            }
        }
        let mut child = Command::new(&python)
            .args(["-c", SERVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's server");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto's server printed {line:?}, not its port"));
        Some(Server {
            port,
            child,
            _stdin: stdin,
        })
    }

    /// The server of this test process, started on first use (and stopped when the process
    /// exits, by its closed stdin), with this process's environment pointed at it.
    pub fn shared() -> Option<&'static Server> {
        static SHARED: OnceLock<Option<Server>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let server = Server::start()?;
                for (k, v) in server.env() {
                    // SAFETY: std's env functions (which object_store reads through) take a
                    // lock; nothing in these tests reads the environment through libc.
                    unsafe { std::env::set_var(k, v) };
                }
                Some(server)
            })
            .as_ref()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points object_store (and durafile) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        env_for(&self.endpoint())
    }

    /// Creates a bucket with a fresh name and returns the name.
    pub fn bucket(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let reply = http(
            self.port,
            &format!(
                "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            ),
        );
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "{reply}"
        );
        name
    }

    /// The server's own latency: the median of `n` sequential HEAD-bucket requests.
    pub fn median_latency(&self, bucket: &str, n: usize) -> Duration {
        let mut times: Vec<Duration> = (0..n)
            .map(|_| {
                let start = Instant::now();
                http(
                    self.port,
                    &format!(
                        "HEAD /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTH}Connection: close\r\n\r\n",
                        self.port
                    ),
                );
                start.elapsed()
            })
            .collect();
        times.sort();
        times[n / 2]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

/// One request on its own connection; the whole reply.
fn http(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

/// What the proxy does to a PUT it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Forwards the PUT and drops the reply: the write happened, the client never hears.
    Reply,
    /// Drops the PUT itself: the write never happened, the client never hears.
    Request,
}

/// A TCP proxy in front of the server that, for every `every`-th PUT, loses the request or
/// its reply by closing the client's connection. Everything else passes through, one request
/// per connection.
pub struct Proxy {
    pub port: u16,
    pub lost: Arc<AtomicU64>,
    /// The request line and headers of every PUT that passed through, in order.
    pub puts: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(upstream: u16, loss: Loss, every: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lost = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let puts = Arc::new(AtomicU64::new(0));
        let (counter, record) = (lost.clone(), seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (puts, lost, record) = (puts.clone(), counter.clone(), record.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, loss, every, &puts, &lost, &record);
                });
            }
        });
        Proxy {
            port,
            lost,
            puts: seen,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Relays requests from one client connection, each on a fresh upstream connection.
fn relay(
    mut client: TcpStream,
    upstream: u16,
    loss: Loss,
    every: u64,
    puts: &AtomicU64,
    lost: &AtomicU64,
    record: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    loop {
        let Some(request) = read_request(&mut client)? else {
            return Ok(());
        };
        if request.starts_with(b"PUT ") {
            let head = request.split(|&b| b == 0).next().unwrap_or(&[]);
            let text = String::from_utf8_lossy(head);
            let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
            record.lock().unwrap().push(head);
        }
        let lose = request.starts_with(b"PUT ")
            && puts.fetch_add(1, Ordering::Relaxed) % every == every - 1;
        if lose && loss == Loss::Request {
            lost.fetch_add(1, Ordering::Relaxed);
            return client.shutdown(Shutdown::Both);
        }
        let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
        server.write_all(&request)?;
        // The server speaks HTTP/1.0 when single-threaded: the reply ends when it closes.
        let mut reply = Vec::new();
        server.read_to_end(&mut reply)?;
        if lose {
            lost.fetch_add(1, Ordering::Relaxed);
            return client.shutdown(Shutdown::Both);
        }
        client.write_all(&reply)?;
        if !reply.starts_with(b"HTTP/1.1") || contains(&reply, b"Connection: close") {
            return client.shutdown(Shutdown::Both);
        }
    }
}

/// One whole request (headers and a Content-Length body); `None` at a clean end.
fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(None);
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let start = buf.len();
    buf.resize(start + length, 0);
    client.read_exact(&mut buf[start..])?;
    Ok(Some(buf))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Server {
    /// PUTs `body` at `bucket/key` behind durafile's back, with extra `headers` (such as a
    /// stale `x-amz-meta-durafile-sha256`): how a corrupted or foreign object gets there.
    pub fn raw_put(&self, bucket: &str, key: &str, body: &[u8], headers: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n{AUTH}{headers}Connection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.contains(" 200 "), "{reply}");
    }

    /// GETs `bucket/key` behind durafile's back: the body, or `None` for a 404.
    pub fn raw_get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTH}Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        if reply.windows(5).take(20).any(|w| w == b" 404 ") {
            return None;
        }
        let at = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        Some(reply[at..].to_vec())
    }
}
