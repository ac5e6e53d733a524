//! A TCP listener and connector that run *inside* a named network namespace
//! (`/run/netns/NAME`, as `ip netns add` creates it) without spawning a process: each probe
//! runs on its own thread, which `setns(2)`s into the namespace before it opens a socket, so
//! real packets cross the test's veth pair and the firewall under test. Used by the hostfw
//! provider's real-kernel tests (it replaces the former `hostfw-probe` binary).

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;

/// The outcome of one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    Refused,
    Timeout,
    Error(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Connected => f.write_str("connected"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Counts of a [`Loop`]'s attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub connected: u32,
    pub refused: u32,
    pub timeout: u32,
    pub error: u32,
}

/// Run `f` on a new thread that has entered network namespace `netns` first, on a
/// single-threaded tokio runtime of that thread (so every socket is opened in the namespace).
fn in_netns<T, F>(netns: &str, f: F) -> io::Result<JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: AsyncFnOnce() -> io::Result<T> + Send + 'static,
{
    let ns = File::open(format!("/run/netns/{netns}"))?;
    std::thread::Builder::new()
        .name(format!("probe-{netns}"))
        .spawn(move || {
            move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
            drop(ns);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(f())
        })
}

fn joined<T>(handle: JoinHandle<io::Result<T>>) -> io::Result<T> {
    handle
        .join()
        .map_err(|_| io::Error::other("the probe thread panicked"))?
}

/// One connection attempt from `src` to `dst:port` in the current thread's namespace.
async fn attempt(src: IpAddr, dst: IpAddr, port: u16, timeout: Duration) -> Outcome {
    let socket = match dst {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("socket: {e}")),
    };
    if let Err(e) = socket.bind(SocketAddr::new(src, 0)) {
        return Outcome::Error(format!("bind {src}: {e}"));
    }
    match tokio::time::timeout(timeout, socket.connect(SocketAddr::new(dst, port))).await {
        Err(_) => Outcome::Timeout,
        Ok(Ok(_stream)) => Outcome::Connected,
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Ok(Err(e)) => Outcome::Error(e.to_string()),
    }
}

/// One connection attempt from `src` to `dst:port`, made inside namespace `netns`.
pub fn connect(netns: &str, src: IpAddr, dst: IpAddr, port: u16, timeout: Duration) -> Outcome {
    match in_netns(netns, async move || {
        Ok(attempt(src, dst, port, timeout).await)
    })
    .and_then(joined)
    {
        Ok(o) => o,
        Err(e) => Outcome::Error(format!("netns {netns}: {e}")),
    }
}

/// Listeners on `[::]:PORT` (IPv4 too) in a namespace that accept and close every
/// connection until dropped.
pub struct Listener {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Listener {
    /// Listen on every port in `netns`; returns once all of them accept connections.
    pub fn start(netns: &str, ports: &[u16]) -> io::Result<Listener> {
        let ports = ports.to_vec();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = in_netns(netns, async move || {
            let mut listeners = Vec::new();
            for port in ports {
                match TcpListener::bind(SocketAddr::new(IpAddr::from([0u16; 8]), port)).await {
                    Ok(l) => listeners.push(l),
                    Err(e) => {
                        let e = io::Error::new(e.kind(), format!("cannot listen on {port}: {e}"));
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                }
            }
            for l in listeners {
                tokio::spawn(async move {
                    while let Ok((stream, _)) = l.accept().await {
                        drop(stream);
                    }
                });
            }
            let _ = ready_tx.send(Ok(()));
            let _ = stop_rx.await;
            Ok(())
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Listener {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(joined(thread)
                .err()
                .unwrap_or_else(|| io::Error::other("the listener stopped before it was ready"))),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client in a namespace that connects from `src` to `dst:port` again and again (2 ms
/// apart) until stopped or `max` attempts, counting the outcomes.
pub struct Loop {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<io::Result<Counts>>>,
}

impl Loop {
    pub fn start(
        netns: &str,
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        timeout: Duration,
        max: u32,
    ) -> io::Result<Loop> {
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let thread = in_netns(netns, async move || {
            let mut c = Counts::default();
            for _ in 0..max {
                let outcome = tokio::select! {
                    _ = &mut stop_rx => break,
                    o = attempt(src, dst, port, timeout) => o,
                };
                match outcome {
                    Outcome::Connected => c.connected += 1,
                    Outcome::Refused => c.refused += 1,
                    Outcome::Timeout => c.timeout += 1,
                    Outcome::Error(e) => {
                        c.error += 1;
                        eprintln!("netns probe: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(c)
        })?;
        Ok(Loop {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stop the client and return its counts.
    pub fn stop(mut self) -> io::Result<Counts> {
        drop(self.stop.take());
        match self.thread.take() {
            Some(t) => joined(t),
            None => Err(io::Error::other("the loop was already stopped")),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
