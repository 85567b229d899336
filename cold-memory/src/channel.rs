//! The byte streams between the daemon in a sandbox VM and the agent on the host, carrying
//! [`proto`](crate::proto) frames: the guest reports, the host sets targets.
//!
//! Host side ([`Endpoint`], [`connect`], [`HostLink`]), as Kata's runtimes expose a guest port
//! (INTERFACES.md §5.3):
//! - `vsock://<cid>:<port>`: `AF_VSOCK` to the guest (QEMU with `vhost-vsock`);
//! - `hvsock://<path>:<port>`: hybrid vsock, a Unix socket on the host where the VMM forwards
//!   to the guest port after `CONNECT <port>\n` is answered with a line starting `OK`
//!   (Cloud Hypervisor, Firecracker, Dragonball);
//! - `unix://<path>`: a plain Unix stream socket, e.g. QEMU's `-chardev socket,server=on`
//!   behind a `virtserialport`.
//!
//! Guest side ([`Listen`], [`GuestChannel`]): listen on a vsock port (the host connects) or,
//! for the daemon on a node, a Unix socket; or open a virtio-serial port (`/dev/vport*`, found by name through
//! `/sys/class/virtio-ports/*/name`). The guest never blocks on the host: it polls without
//! blocking between periods and drops a report it cannot send at once (the next period sends
//! a fresh one).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::proto::{Decoder, Message, Report, Target, encode};

/// `VMADDR_CID_ANY`: listen on every CID the guest has.
const VMADDR_CID_ANY: u32 = u32::MAX;

/// Where the host reaches a sandbox's daemon.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `AF_VSOCK` (context id, port).
    Vsock {
        /// The guest's context id.
        cid: u32,
        /// The daemon's port.
        port: u32,
    },
    /// Hybrid vsock: a Unix socket on the host and the guest port to ask for.
    HybridVsock {
        /// The VMM's Unix socket.
        path: PathBuf,
        /// The daemon's port.
        port: u32,
    },
    /// A Unix stream socket that is the guest's byte stream (QEMU chardev).
    Unix(PathBuf),
}

/// An endpoint string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "endpoint {input:?}: {reason} (expected vsock://CID:PORT, hvsock://PATH:PORT or unix://PATH)"
)]
pub struct EndpointError {
    input: String,
    reason: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| EndpointError {
            input: s.to_owned(),
            reason,
        };
        let port = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| err("the port is not a number"))
        };
        if let Some(rest) = s.strip_prefix("vsock://") {
            let (cid, p) = rest.split_once(':').ok_or_else(|| err("no :PORT"))?;
            let cid = cid.parse().map_err(|_| err("the CID is not a number"))?;
            Ok(Endpoint::Vsock {
                cid,
                port: port(p)?,
            })
        } else if let Some(rest) = s.strip_prefix("hvsock://") {
            let (path, p) = rest.rsplit_once(':').ok_or_else(|| err("no :PORT"))?;
            if path.is_empty() {
                return Err(err("no socket path"));
            }
            Ok(Endpoint::HybridVsock {
                path: path.into(),
                port: port(p)?,
            })
        } else if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(err("no socket path"));
            }
            Ok(Endpoint::Unix(path.into()))
        } else {
            Err(err("unknown scheme"))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Endpoint::HybridVsock { path, port } => write!(f, "hvsock://{}:{port}", path.display()),
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

fn unix_socket(path: &Path, timeout: Duration) -> io::Result<Socket> {
    let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.connect(&SockAddr::unix(path)?)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(s)
}

/// Connects to a sandbox's daemon; reads and writes on the returned socket time out after
/// `timeout`.
pub fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Socket> {
    match endpoint {
        Endpoint::Vsock { cid, port } => {
            let s = Socket::new(Domain::VSOCK, Type::STREAM, None)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            s.connect_timeout(&SockAddr::vsock(*cid, *port), timeout)?;
            Ok(s)
        }
        Endpoint::Unix(path) => unix_socket(path, timeout),
        Endpoint::HybridVsock { path, port } => {
            let mut s = unix_socket(path, timeout)?;
            s.write_all(format!("CONNECT {port}\n").as_bytes())?;
            // The answer is one short line; read it byte by byte so no frame byte is taken.
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < 64 {
                if s.read(&mut byte)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("{}: closed during CONNECT {port}", path.display()),
                    ));
                }
                if byte[0] == b'\n' {
                    break;
                }
                line.push(byte[0]);
            }
            if !line.starts_with(b"OK") {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!(
                        "{}: CONNECT {port} answered {:?}",
                        path.display(),
                        String::from_utf8_lossy(&line)
                    ),
                ));
            }
            Ok(s)
        }
    }
}

/// What the host knows of one sandbox's daemon.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    /// The latest report and when it arrived.
    pub report: Option<(Instant, Report)>,
    /// Connected now.
    pub connected: bool,
    /// The target to hold the daemon to (sent at every connect and whenever it changes).
    pub target: Option<Target>,
    /// Reports received.
    pub reports: u64,
    /// Connection and frame errors.
    pub errors: u64,
    /// The last error.
    pub last_error: Option<String>,
    target_sent: Option<Target>,
    /// Reports since the target was last sent (the first may have been on its way already).
    reports_since_sent: u64,
    /// The last report's sequence number on this connection.
    last_seq: Option<u64>,
}

/// The host's link to one sandbox's daemon: a thread that connects (and reconnects with
/// backoff), reads reports and sends targets. Dropping it stops the thread within a second.
#[derive(Debug)]
pub struct HostLink {
    /// The endpoint.
    pub endpoint: Endpoint,
    state: Arc<Mutex<LinkState>>,
    stop: Arc<AtomicBool>,
}

fn lock(m: &Mutex<LinkState>) -> MutexGuard<'_, LinkState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HostLink {
    /// Starts the link's thread.
    pub fn spawn(endpoint: Endpoint, target: Option<Target>) -> io::Result<Self> {
        let state = Arc::new(Mutex::new(LinkState {
            target,
            ..LinkState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (ep, st, sp) = (endpoint.clone(), state.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("coldmem-link {endpoint}"))
            .spawn(move || run_link(&ep, &st, &sp))?;
        Ok(Self {
            endpoint,
            state,
            stop,
        })
    }

    /// A copy of what the link knows.
    pub fn state(&self) -> LinkState {
        lock(&self.state).clone()
    }

    /// Sets the standing target; the thread sends it within a second if it changed (and
    /// again after a reconnect or to a restarted daemon).
    pub fn set_target(&self, target: Target) {
        lock(&self.state).target = Some(target);
    }

    /// Sets the target and sends it even if unchanged: a `reclaim_bytes` ask is one period's
    /// worth, so asking again means sending again.
    pub fn push_target(&self, target: Target) {
        let mut s = lock(&self.state);
        s.target = Some(target);
        s.target_sent = None;
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn note_error(state: &Mutex<LinkState>, e: String) {
    let mut s = lock(state);
    s.connected = false;
    s.errors += 1;
    s.last_error = Some(e);
}

fn run_link(endpoint: &Endpoint, state: &Mutex<LinkState>, stop: &AtomicBool) {
    let tick = Duration::from_secs(1);
    let mut backoff = Duration::from_millis(250);
    while !stop.load(Ordering::Relaxed) {
        match connect(endpoint, tick) {
            Ok(sock) => {
                backoff = Duration::from_millis(250);
                {
                    let mut s = lock(state);
                    s.connected = true;
                    s.target_sent = None;
                    s.last_seq = None;
                }
                if let Err(e) = serve(sock, state, stop) {
                    note_error(state, e);
                }
                lock(state).connected = false;
            }
            Err(e) => note_error(state, format!("{endpoint}: {e}")),
        }
        // Sleep in short steps so a drop stops the thread promptly.
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One connection: send the target when it changes, read reports; an error ends it.
fn serve(mut sock: Socket, state: &Mutex<LinkState>, stop: &AtomicBool) -> Result<(), String> {
    let mut decoder = Decoder::default();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let pending = {
            let s = lock(state);
            (s.target != s.target_sent)
                .then(|| s.target.clone())
                .flatten()
        };
        if let Some(t) = pending {
            let frame = encode(&Message::Target(t.clone())).map_err(|e| e.to_string())?;
            sock.write_all(&frame)
                .map_err(|e| format!("send target: {e}"))?;
            let mut s = lock(state);
            s.target_sent = Some(t);
            s.reports_since_sent = 0;
        }
        match sock.read(&mut buf) {
            Ok(0) => return Err("the daemon closed the connection".into()),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        loop {
            match decoder.next_message() {
                Ok(Some(Message::Report(r))) => {
                    let mut s = lock(state);
                    // A daemon still not holding the target a report after it was sent
                    // (restarted, or the frame was lost, as virtio-serial drops what the host
                    // sends before the guest opens the port) gets it again.
                    // A sequence number going back is a new daemon behind the same stream (a
                    // virtio-serial port outlives the process that has it open): it has not
                    // seen the target either.
                    s.reports_since_sent += 1;
                    let restarted = s.last_seq.is_some_and(|l| r.seq < l);
                    let differs = s.target.as_ref().is_some_and(|t| {
                        (t.max_bytes_per_period, t.min_age_ms)
                            != (r.max_bytes_per_period, r.min_age_ms)
                    });
                    if restarted || (differs && s.reports_since_sent >= 2) {
                        s.target_sent = None;
                    }
                    s.last_seq = Some(r.seq);
                    s.report = Some((Instant::now(), r));
                    s.reports += 1;
                }
                Ok(Some(Message::Target(_))) => {
                    return Err("the daemon sent a target frame (host → guest only)".into());
                }
                Ok(None) => break,
                // Out of step: drop the connection and start clean.
                Err(e) => return Err(format!("frame: {e}")),
            }
        }
    }
    Ok(())
}

/// Where the guest daemon serves the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Listen on this vsock port (any CID).
    Vsock(u32),
    /// Listen on a Unix socket (the daemon on a node, next to the agent).
    Unix(PathBuf),
    /// A virtio-serial port, by name (`/sys/class/virtio-ports/*/name`).
    VirtioPort(String),
    /// A character device (or any file) opened read-write.
    Path(PathBuf),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("vsock:") {
            p.parse()
                .map(Listen::Vsock)
                .map_err(|_| format!("{s:?}: the vsock port is not a number"))
        } else if let Some(path) = s.strip_prefix("unix:") {
            Ok(Listen::Unix(path.into()))
        } else if let Some(name) = s.strip_prefix("virtio-port:") {
            Ok(Listen::VirtioPort(name.to_owned()))
        } else if s.is_empty() {
            Err("empty channel".into())
        } else {
            Ok(Listen::Path(s.into()))
        }
    }
}

/// The device of the virtio-serial port called `name`, looked up under `sysfs`
/// (`class/virtio-ports/vportNpM/name`).
pub fn virtio_port_device(sysfs: &Path, name: &str) -> Option<PathBuf> {
    let dir = std::fs::read_dir(sysfs.join("class/virtio-ports")).ok()?;
    dir.flatten().find_map(|e| {
        let n = std::fs::read_to_string(e.path().join("name")).ok()?;
        (n.trim() == name).then(|| Path::new("/dev").join(e.file_name()))
    })
}

enum Stream {
    Socket(Socket),
    File(std::fs::File),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Socket(s) => s.read(buf),
            Stream::File(f) => f.read(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Socket(s) => s.write_all(buf),
            Stream::File(f) => f.write_all(buf),
        }
    }
}

/// The guest's end: polled without blocking.
pub struct GuestChannel {
    listener: Option<Socket>,
    /// The Unix socket file this channel made (removed on drop).
    socket_file: Option<PathBuf>,
    stream: Option<Stream>,
    /// A host is at the other end of the port (virtio-serial reads 0 while none is).
    host_there: bool,
    /// The last report's frame, replayed to a host as it connects so it learns the daemon's
    /// state (and settings) at once rather than a period later.
    last: Option<Vec<u8>>,
    decoder: Decoder,
    /// Reports dropped because the host was not there or not reading.
    pub dropped: u64,
    /// Problems met (connection ends, bad frames), most recent last; at most 8 kept.
    pub errors: Vec<String>,
}

impl fmt::Debug for GuestChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestChannel")
            .field("listening", &self.listener.is_some())
            .field("connected", &self.stream.is_some())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl GuestChannel {
    /// Opens the channel (`sysfs` is where virtio-serial ports are looked up by name).
    pub fn open(listen: &Listen, sysfs: &Path) -> io::Result<Self> {
        let mut ch = Self {
            listener: None,
            socket_file: None,
            stream: None,
            host_there: false,
            last: None,
            decoder: Decoder::default(),
            dropped: 0,
            errors: Vec::new(),
        };
        match listen {
            Listen::Vsock(port) => {
                let s = Socket::new(Domain::VSOCK, Type::STREAM, None)?;
                s.bind(&SockAddr::vsock(VMADDR_CID_ANY, *port))?;
                s.listen(1)?;
                s.set_nonblocking(true)?;
                ch.listener = Some(s);
            }
            Listen::Unix(path) => {
                // A socket left by an earlier run is replaced; anything else is an error.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(path)?;
                }
                let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                s.bind(&SockAddr::unix(path)?)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                s.listen(1)?;
                s.set_nonblocking(true)?;
                ch.listener = Some(s);
                ch.socket_file = Some(path.clone());
            }
            Listen::VirtioPort(name) => {
                let dev = virtio_port_device(sysfs, name).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no virtio-serial port named {name:?}"),
                    )
                })?;
                ch.stream = Some(Stream::File(open_nonblocking(&dev)?));
            }
            Listen::Path(path) => ch.stream = Some(Stream::File(open_nonblocking(path)?)),
        }
        Ok(ch)
    }

    fn error(&mut self, e: String) {
        if self.errors.len() == 8 {
            self.errors.remove(0);
        }
        self.errors.push(e);
    }

    fn drop_connection(&mut self, e: String) {
        self.error(e);
        self.decoder = Decoder::default();
        // A listener takes the next connection; a port stays open (the host may come back).
        if self.listener.is_some() {
            self.stream = None;
        }
    }

    /// A host has just connected: give it the last report.
    fn greet(&mut self) {
        self.host_there = true;
        if let Some(frame) = self.last.clone() {
            self.write_frame(&frame);
        }
    }

    /// Accepts a waiting host, reads what arrived; returns the newest target, if any. A host
    /// that has just connected is sent the last report at once.
    pub fn poll(&mut self) -> Option<Target> {
        if let Some(l) = &self.listener {
            match l.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_ok() {
                        // A newer host connection replaces the old one.
                        self.stream = Some(Stream::Socket(s));
                        self.decoder = Decoder::default();
                        self.greet();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => self.error(format!("accept: {e}")),
            }
        }
        let mut target = None;
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            let Some(stream) = self.stream.as_mut() else {
                break;
            };
            match stream.read(&mut buf) {
                // A virtio-serial port reads 0 while no host is connected.
                Ok(0) if self.listener.is_none() => {
                    self.host_there = false;
                    break;
                }
                Ok(0) => {
                    self.drop_connection("the host closed the connection".into());
                    break;
                }
                Ok(n) => {
                    if !self.host_there {
                        self.greet();
                    }
                    self.decoder.push(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.host_there {
                        self.greet();
                    }
                    break;
                }
                Err(e) => {
                    self.drop_connection(format!("read: {e}"));
                    break;
                }
            }
        }
        loop {
            match self.decoder.next_message() {
                Ok(Some(Message::Target(t))) => target = Some(t),
                Ok(Some(Message::Report(_))) => {
                    self.drop_connection("the host sent a report frame (guest → host only)".into());
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    self.drop_connection(format!("frame: {e}"));
                    break;
                }
            }
        }
        target
    }

    /// Sends a report if a host is there to take it now; otherwise counts it as dropped. The
    /// report is kept and replayed to the next host that connects.
    pub fn send(&mut self, report: &Report) {
        let frame = match encode(&Message::Report(report.clone())) {
            Ok(f) => f,
            Err(e) => return self.error(format!("encode: {e}")),
        };
        self.write_frame(&frame);
        self.last = Some(frame);
    }

    fn write_frame(&mut self, frame: &[u8]) {
        let Some(stream) = self.stream.as_mut() else {
            self.dropped += 1;
            return;
        };
        // A frame is at most 16 KiB + 8: one write (virtio-serial takes up to 32 KiB whole).
        match stream.write_all(frame) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.dropped += 1,
            Err(e) => {
                self.dropped += 1;
                self.drop_connection(format!("write: {e}"));
            }
        }
    }
}

impl Drop for GuestChannel {
    fn drop(&mut self) {
        if let Some(path) = &self.socket_file {
            // Nobody can connect any more; a host sees "no such file", not "refused".
            let _ = std::fs::remove_file(path);
        }
    }
}

fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn endpoints_parse_and_print() {
        for s in [
            "vsock://3:2048",
            "hvsock:///run/kata/abc/root/kata.hvsock:2048",
            "unix:///run/tide/vm.sock",
        ] {
            assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
        }
        assert_eq!(
            "hvsock:///a:b/kata.hvsock:7".parse::<Endpoint>().unwrap(),
            Endpoint::HybridVsock {
                path: "/a:b/kata.hvsock".into(),
                port: 7
            }
        );
        for bad in [
            "vsock://x:1",
            "vsock://3",
            "hvsock://:1",
            "unix://",
            "tcp://1.2.3.4:5",
        ] {
            let e = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("expected"), "{e}");
        }
        assert_eq!("vsock:2048".parse(), Ok(Listen::Vsock(2048)));
        assert_eq!(
            "virtio-port:tide.coldmem".parse(),
            Ok(Listen::VirtioPort("tide.coldmem".into()))
        );
        assert_eq!(
            "unix:/run/c.sock".parse(),
            Ok(Listen::Unix("/run/c.sock".into()))
        );
        assert!("vsock:x".parse::<Listen>().is_err());
    }

    fn report(seq: u64) -> Report {
        Report {
            seq,
            backend: "mglru".into(),
            cold_bytes: 100 << 20,
            age_ms: 30_000,
            reclaimed_bytes: 60 << 20,
            refaults: 0,
            psi_some_avg10: Some(0.0),
            max_bytes_per_period: 64 << 20,
            min_age_ms: 30_000,
        }
    }

    /// The next whole frame from `c` (reading as needed; a hang-up fails the test).
    fn next_frame(c: &mut impl Read, d: &mut Decoder) -> Message {
        let mut buf = [0u8; 512];
        loop {
            if let Some(m) = d.next_message().unwrap() {
                return m;
            }
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "the other end hung up");
            d.push(&buf[..n]);
        }
    }

    fn send_frame(c: &mut impl Write, m: Message) {
        c.write_all(&encode(&m).unwrap()).unwrap();
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tide-chan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A hybrid-vsock VMM: answers `CONNECT 2048` with `OK`, then plays the guest daemon:
    /// sends two reports and reads the host's target.
    #[test]
    fn host_link_over_hybrid_vsock_reads_reports_and_sends_the_target() {
        let dir = temp("hv");
        let sock = dir.join("kata.hvsock");
        let listener = UnixListener::bind(&sock).unwrap();
        let guest = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while c.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
                line.push(b[0]);
            }
            assert_eq!(line, b"CONNECT 2048");
            c.write_all(b"OK 1073741824\n").unwrap();
            for seq in 1..=2 {
                send_frame(&mut c, Message::Report(report(seq)));
            }
            next_frame(&mut c, &mut Decoder::default())
        });
        let target = Target {
            max_bytes_per_period: 256 << 20,
            min_age_ms: 10_000,
            reclaim_bytes: 128 << 20,
        };
        let link = HostLink::spawn(
            Endpoint::HybridVsock {
                path: sock.clone(),
                port: 2048,
            },
            Some(target.clone()),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.state().reports < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = link.state();
        assert_eq!(st.reports, 2, "{st:?}");
        assert_eq!(st.report.unwrap().1.seq, 2);
        assert_eq!(guest.join().unwrap(), Message::Target(target));
        drop(link);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_connect_and_a_missing_socket_are_errors() {
        let dir = temp("refused");
        let sock = dir.join("kata.hvsock");
        let listener = UnixListener::bind(&sock).unwrap();
        let vmm = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut b = [0u8; 13];
            c.read_exact(&mut b).unwrap();
            c.write_all(b"ERR no such port\n").unwrap();
        });
        let ep = Endpoint::HybridVsock {
            path: sock,
            port: 2048,
        };
        let e = connect(&ep, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("ERR no such port"), "{e}");
        vmm.join().unwrap();
        let e = connect(&Endpoint::Unix(dir.join("absent")), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
        // The link keeps trying and counts the failures; it never panics.
        let link = HostLink::spawn(Endpoint::Unix(dir.join("absent")), None).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let st = link.state();
        assert!(!st.connected && st.errors >= 1, "{st:?}");
        assert!(st.last_error.unwrap().contains("absent"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The guest end over a Unix socket pair stands in for a virtio-serial port's byte stream:
    /// reports go out, targets come in, a garbage frame is dropped with an error.
    #[test]
    fn guest_channel_sends_reports_and_takes_targets() {
        use std::os::unix::net::UnixStream;
        let (host, guest) = UnixStream::pair().unwrap();
        guest.set_nonblocking(true).unwrap();
        let mut ch = GuestChannel {
            listener: None,
            socket_file: None,
            stream: Some(Stream::Socket(Socket::from(std::os::fd::OwnedFd::from(
                guest,
            )))),
            host_there: true,
            last: None,
            decoder: Decoder::default(),
            dropped: 0,
            errors: Vec::new(),
        };
        assert_eq!(ch.poll(), None);
        ch.send(&report(1));
        let mut host = host;
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            next_frame(&mut host, &mut Decoder::default()),
            Message::Report(report(1))
        );
        let t = Target {
            max_bytes_per_period: 1 << 30,
            min_age_ms: 4_000,
            reclaim_bytes: 0,
        };
        send_frame(&mut host, Message::Target(t.clone()));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ch.poll(), Some(t));
        host.write_all(b"XXgarbage").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ch.poll(), None);
        assert!(ch.errors[0].contains("bad magic"), "{:?}", ch.errors);
        assert_eq!(ch.dropped, 0);
    }

    /// A daemon serving a Unix socket: a report sent before any host came is kept and given
    /// to the host as it connects; the socket file goes when the channel does.
    #[test]
    fn a_host_that_connects_late_gets_the_last_report_at_once() {
        use std::os::unix::net::UnixStream;
        let dir = temp("late");
        let sock = dir.join("coldmem.sock");
        std::fs::write(&sock, "").unwrap();
        // Not a socket: refused rather than replaced.
        assert!(GuestChannel::open(&Listen::Unix(sock.clone()), &dir).is_err());
        std::fs::remove_file(&sock).unwrap();
        let mut ch = GuestChannel::open(&Listen::Unix(sock.clone()), &dir).unwrap();
        ch.send(&report(0));
        ch.send(&report(1));
        assert_eq!(ch.dropped, 2);
        let mut host = UnixStream::connect(&sock).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ch.poll(), None);
        let mut d = Decoder::default();
        assert_eq!(next_frame(&mut host, &mut d), Message::Report(report(1)));
        assert_eq!(d.next_message().unwrap(), None);
        drop(ch);
        assert!(!sock.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The host sends its target again when the daemon has not taken it a report later, and
    /// when the sequence numbers start over (a new daemon behind the same port).
    #[test]
    fn the_target_is_sent_again_to_a_daemon_that_lacks_it() {
        let dir = temp("resend");
        let sock = dir.join("qemu.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let target = Target {
            max_bytes_per_period: 256 << 20,
            min_age_ms: 10_000,
            reclaim_bytes: 0,
        };
        let holding = |seq| Report {
            max_bytes_per_period: 256 << 20,
            min_age_ms: 10_000,
            ..report(seq)
        };
        let t = target.clone();
        let guest = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut d = Decoder::default();
            let mut next = |c: &mut std::os::unix::net::UnixStream| next_frame(c, &mut d);
            let send = |c: &mut std::os::unix::net::UnixStream, r: Report| {
                send_frame(c, Message::Report(r));
            };
            assert_eq!(next(&mut c), Message::Target(t.clone()));
            // The frame was lost: two reports with the old settings.
            send(&mut c, report(1));
            send(&mut c, report(2));
            assert_eq!(next(&mut c), Message::Target(t.clone()), "sent again");
            send(&mut c, holding(3));
            // A new daemon: seq starts over, default settings happen to match.
            send(&mut c, holding(0));
            assert_eq!(next(&mut c), Message::Target(t), "sent to the new daemon");
        });
        let link = HostLink::spawn(Endpoint::Unix(sock), Some(target)).unwrap();
        guest.join().unwrap();
        assert!(link.state().reports >= 4);
        drop(link);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
