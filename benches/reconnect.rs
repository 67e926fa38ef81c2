//! The load generator `benches/https.sh` drives the new-connection scenarios
//! with: clients that open a new TCP connection (and, for `https://`, a new
//! TLS session) for every request, as scheduled jobs and cron-style scripts
//! do, each client in its own thread, for a fixed time.
//!
//! ```text
//! cargo bench --bench reconnect -- URL [--tls resume|full] [--ca FILE]
//!     [--connections N] [--seconds S] [--method M] [--body B]
//!     [--content-type T] [--auth-file FILE] [--expect STATUS]
//! ```
//!
//! - `--tls resume` (default): each client keeps the session tickets the
//!   server sends it (rustls' client cache, one cache per client, as one
//!   long-lived client process has) and offers one at its next connection;
//!   `--tls full`: no resumption, a full handshake every time (a client that
//!   is a new process every run, e.g. `curl` from cron).
//! - `--ca FILE`: the PEM CA the server's chain is checked against (the
//!   check is a real one, so a full handshake costs the client what it costs
//!   a real client).
//! - `--auth-file FILE`: `Authorization` values, one per line; client `i`
//!   takes them in turn starting from line `i`.
//!
//! Each request carries `Connection: close`; its answer is read to the end
//! of its `Content-Length`, then the client sends `close_notify` and closes.
//! Prints one line that `benches/https.sh` parses:
//!
//! ```text
//! RC_RESULT requests=… seconds=… rps=… p50_us=… p99_us=… max_us=… bad=…
//!     errors=… full=… resumed=… statuses=200:…
//! ```
//!
//! `full` and `resumed` count the handshakes as the client's rustls saw
//! them, so a report can show that resumption really happened. `bad`:
//! answers whose status was not `--expect` (default 200); `errors`: failed
//! connections, handshakes, writes or reads (the first few are printed to
//! stderr). No timing is asserted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

struct Options {
    host: String,
    port: u16,
    path: String,
    tls: Option<Tls>,
    connections: usize,
    seconds: f64,
    method: String,
    body: String,
    content_type: Option<String>,
    authorizations: Vec<String>,
    expect: u16,
}

struct Tls {
    resume: bool,
    roots: RootCertStore,
    server_name: ServerName<'static>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    full: u64,
    resumed: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().all(|arg| arg == "--bench") {
        // `cargo test --all-targets` runs every bench target without
        // arguments: this one is a load generator, driven by
        // benches/https.sh with a URL.
        println!("reconnect: a load generator for benches/https.sh; give it a URL to drive");
        return;
    }
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("reconnect: {message}");
            std::process::exit(2);
        }
    };
    let options = Arc::new(options);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(options.seconds);
    let clients: Vec<_> = (0..options.connections)
        .map(|client| {
            let options = Arc::clone(&options);
            std::thread::spawn(move || run_client(&options, client, until))
        })
        .collect();
    let mut total = Tally::default();
    for client in clients {
        let tally = client.join().expect("a client thread panicked");
        total.latencies_us.extend(tally.latencies_us);
        for (status, count) in tally.statuses {
            *total.statuses.entry(status).or_default() += count;
        }
        total.errors += tally.errors;
        total.full += tally.full;
        total.resumed += tally.resumed;
    }
    let seconds = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let percentile = |p: f64| -> u32 {
        let n = total.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        total.latencies_us[rank.clamp(1, n) - 1]
    };
    let requests = total.latencies_us.len() as u64;
    let bad: u64 = total
        .statuses
        .iter()
        .filter(|(status, _)| **status != options.expect)
        .map(|(_, count)| count)
        .sum();
    let statuses: Vec<String> = total
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}:{count}"))
        .collect();
    println!(
        "RC_RESULT requests={requests} seconds={seconds:.3} rps={:.1} p50_us={} p99_us={} \
         max_us={} bad={bad} errors={} full={} resumed={} statuses={}",
        requests as f64 / seconds,
        percentile(50.0),
        percentile(99.0),
        total.latencies_us.last().copied().unwrap_or(0),
        total.errors,
        total.full,
        total.resumed,
        if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(",")
        }
    );
}

/// One client: requests, each on a new connection, until `until`.
fn run_client(options: &Options, client: usize, until: Instant) -> Tally {
    let config = options.tls.as_ref().map(|tls| {
        let mut config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(tls.roots.clone())
        .with_no_client_auth();
        config.resumption = if tls.resume {
            Resumption::in_memory_sessions(8)
        } else {
            Resumption::disabled()
        };
        Arc::new(config)
    });
    let address = (options.host.as_str(), options.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .expect("the URL's host resolves");
    let mut tally = Tally::default();
    let mut next = client;
    let mut reported = 0;
    while Instant::now() < until {
        let authorization = if options.authorizations.is_empty() {
            None
        } else {
            next = (next + 1) % options.authorizations.len();
            Some(options.authorizations[next].as_str())
        };
        let request = request_bytes(options, authorization);
        let sent = Instant::now();
        let outcome = TcpStream::connect(address)
            .map_err(|err| format!("connect: {err}"))
            .and_then(|socket| {
                let _ = socket.set_nodelay(true);
                let _ = socket.set_read_timeout(Some(Duration::from_secs(30)));
                match (&config, &options.tls) {
                    (Some(config), Some(tls)) => {
                        let connection =
                            ClientConnection::new(Arc::clone(config), tls.server_name.clone())
                                .map_err(|err| format!("TLS: {err}"))?;
                        let mut stream = StreamOwned::new(connection, socket);
                        let status = exchange(&mut stream, &request)?;
                        // Read on to the server's close: a server may send
                        // its session tickets after the answer.
                        let mut rest = [0u8; 1024];
                        while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
                        let kind = stream.conn.handshake_kind();
                        stream.conn.send_close_notify();
                        while stream.conn.wants_write() {
                            if stream.conn.write_tls(&mut stream.sock).is_err() {
                                break;
                            }
                        }
                        Ok((status, kind))
                    }
                    _ => {
                        let mut socket = socket;
                        Ok((exchange(&mut socket, &request)?, None))
                    }
                }
            });
        match outcome {
            Ok((status, kind)) => {
                let micros = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                tally.latencies_us.push(micros);
                *tally.statuses.entry(status).or_default() += 1;
                match kind {
                    Some(HandshakeKind::Resumed) => tally.resumed += 1,
                    Some(_) => tally.full += 1,
                    None => {}
                }
            }
            Err(message) => {
                tally.errors += 1;
                if reported < 3 && client == 0 {
                    eprintln!("reconnect: client 0: {message}");
                    reported += 1;
                }
            }
        }
    }
    tally
}

fn request_bytes(options: &Options, authorization: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n",
        options.method, options.path, options.host, options.port
    );
    if let Some(value) = authorization {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    if let Some(content_type) = &options.content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if !options.body.is_empty() || options.method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", options.body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(options.body.as_bytes());
    bytes
}

/// Sends `request` and reads the answer to the end of its body; its status.
fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> Result<u16, String> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|err| format!("write: {err}"))?;
    let mut buffer = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|err| format!("read: {err}"))?;
        if n == 0 {
            return Err("the server closed before answering".to_owned());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", &head[..head.len().min(40)]))?;
    let length: Option<usize> = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|value| value.trim().parse().ok())
    });
    let mut have = buffer.len() - head_end;
    loop {
        if length.is_some_and(|length| have >= length) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => have += n,
            // A server that closes without close_notify after the whole
            // answer (no Content-Length): the body is complete.
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && length.is_none() => {
                break;
            }
            Err(err) => return Err(format!("read body: {err}")),
        }
    }
    match length {
        Some(length) if have < length => Err(format!("short body: {have} of {length} bytes")),
        _ => Ok(status),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut url = None;
    let mut tls_mode = "resume".to_owned();
    let mut ca = None;
    let mut connections = 16;
    let mut seconds = 10.0;
    let mut method = "GET".to_owned();
    let mut body = String::new();
    let mut content_type = None;
    let mut auth_file = None;
    let mut expect = 200;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `cargo bench` adds `--bench`.
        if arg == "--bench" {
            continue;
        }
        if !arg.starts_with("--") {
            url = Some(arg);
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = |what: &str| format!("{what} must be a number, not {value:?}");
        match arg.as_str() {
            "--tls" => tls_mode = value,
            "--ca" => ca = Some(value),
            "--connections" => connections = value.parse().map_err(|_| number(&arg))?,
            "--seconds" => seconds = value.parse().map_err(|_| number(&arg))?,
            "--method" => method = value,
            "--body" => body = value,
            "--content-type" => content_type = Some(value),
            "--auth-file" => auth_file = Some(value),
            "--expect" => expect = value.parse().map_err(|_| number(&arg))?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let url = url.ok_or("no URL given")?;
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("{url} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host.to_owned(),
            port.parse().map_err(|_| format!("bad port in {url}"))?,
        ),
        None => (authority.to_owned(), if https { 443 } else { 80 }),
    };
    if connections == 0 {
        return Err("--connections must be at least 1".to_owned());
    }
    let tls = if https {
        let resume = match tls_mode.as_str() {
            "resume" => true,
            "full" => false,
            other => return Err(format!("--tls is resume or full, not {other}")),
        };
        let ca = ca.ok_or("an https:// URL needs --ca FILE")?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).map_err(|err| format!("{ca}: {err}"))? {
            roots
                .add(cert.map_err(|err| format!("{ca}: {err}"))?)
                .map_err(|err| format!("{ca}: {err}"))?;
        }
        let server_name =
            ServerName::try_from(host.clone()).map_err(|err| format!("{host}: {err}"))?;
        Some(Tls {
            resume,
            roots,
            server_name,
        })
    } else {
        None
    };
    let authorizations = match auth_file {
        Some(file) => std::fs::read_to_string(&file)
            .map_err(|err| format!("{file}: {err}"))?
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    Ok(Options {
        host,
        port,
        path,
        tls,
        connections,
        seconds,
        method,
        body,
        content_type,
        authorizations,
        expect,
    })
}
