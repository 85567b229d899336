//! TCP between the host's loopback and a network namespace a test made, without touching the
//! host's network (no interface, route or firewall rule is added to it).
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole
//! life, whichever thread uses it later. [`in_netns`] runs a closure on a short-lived thread
//! that first joins another namespace (`setns(2)`), so a listener or a connection can be made
//! there and used from the host side; [`Forward`] relays connections between the two.
//!
//! The real-node harness uses it to give pods the API server (which listens on the host's
//! 127.0.0.1) at the `kubernetes` Service's address inside the node's namespace, and the API
//! server the admission webhook served by a pod.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Runs `f` on a new thread that first joined the network namespace `netns` (a path such as
/// `/proc/<pid>/ns/net`); sockets `f` creates stay in that namespace. The calling thread's
/// namespace never changes.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            join(&ns)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread in the namespace panicked")))
    })
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread only.
#[allow(unsafe_code)]
fn join(ns: &std::fs::File) -> io::Result<()> {
    // SAFETY: setns takes a file descriptor the File keeps open for the call and a flag; it
    // touches no memory of ours. It changes only the calling thread's network namespace, and
    // the caller is a thread made for this that ends after its closure.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where a [`Forward`] connects each accepted connection to.
#[derive(Debug, Clone)]
pub enum Target {
    /// An address in the forwarder's own (the test process') namespace.
    Host(SocketAddr),
    /// An address inside the namespace at this path.
    InNetns(PathBuf, SocketAddr),
}

impl Target {
    fn connect(&self) -> io::Result<TcpStream> {
        let timeout = Duration::from_secs(5);
        match self {
            Target::Host(a) => TcpStream::connect_timeout(a, timeout),
            Target::InNetns(ns, a) => in_netns(ns, || TcpStream::connect_timeout(a, timeout)),
        }
    }
}

/// A TCP relay: every connection accepted on its listener is joined to a new connection to
/// its target, bytes copied both ways until either side closes. Dropping it stops accepting;
/// open connections end when a side closes or within a second of the drop.
#[derive(Debug)]
pub struct Forward {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Forward {
    /// Relays from `listener` (made in any namespace, e.g. by [`in_netns`]) to `target`.
    pub fn start(listener: TcpListener, target: Target) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let accept = std::thread::Builder::new()
            .name(format!("forward-{addr}"))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (flag, target) = (Arc::clone(&flag), target.clone());
                            let _ = std::thread::Builder::new()
                                .name("forward-conn".into())
                                .spawn(move || relay(client, &target, &flag));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// The listener's address (in the namespace it was made in).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies `client` ↔ a new connection to `target` until either side closes or `stop` is set.
fn relay(client: TcpStream, target: &Target, stop: &Arc<AtomicBool>) {
    let Ok(server) = target.connect() else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let pair = |from: &TcpStream, to: &TcpStream| -> io::Result<(TcpStream, TcpStream)> {
        Ok((from.try_clone()?, to.try_clone()?))
    };
    let Ok((c2, s2)) = pair(&client, &server) else {
        return;
    };
    let back = {
        let stop = Arc::clone(stop);
        std::thread::spawn(move || copy(s2, c2, &stop))
    };
    copy(client, server, stop);
    let _ = back.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_both_ways_on_the_hosts_loopback() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = echo.accept() {
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
            }
        });
        let fwd = Forward::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            Target::Host(echo_addr),
        )
        .unwrap();
        let mut c = TcpStream::connect(fwd.local_addr()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "closed after the echo");
        drop(fwd);
    }

    #[test]
    fn a_missing_namespace_is_an_error() {
        let e = in_netns(Path::new("/nonexistent/ns/net"), || Ok(())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
