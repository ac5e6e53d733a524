//! A real HAProxy (Debian's `haproxy`) for the HAProxy plugin's tests, on loopback only: a
//! generated configuration with a stats socket in a scratch directory and a TCP frontend that
//! admits only the sources of an ACL file (`tcp-request connection reject if !{ src -f
//! allow.acl }`) in front of a tiny backend that answers `ok`. Clients connect from chosen
//! 127.0.0.x source addresses, so a test sees who is really admitted and who is refused.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The `haproxy` to run: `RANGEKEEPER_HAPROXY`, else `haproxy` on PATH, else Debian's
/// `/usr/sbin/haproxy`. `None` when there is none; with `CI=true` a missing haproxy panics
/// (scripts/setup/55-haproxy.sh installs it), so the tests never silently skip in CI.
pub fn exe() -> Option<PathBuf> {
    let found = std::env::var_os("RANGEKEEPER_HAPROXY")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("haproxy"))
                    .find(|p| p.is_file())
            })
        })
        .or_else(|| Some(PathBuf::from("/usr/sbin/haproxy")).filter(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "haproxy is not installed and CI=true: run scripts/setup/55-haproxy.sh"
        );
        eprintln!("haproxy is not installed (scripts/setup/55-haproxy.sh); skipping");
    }
    found
}

/// A running HAProxy and its backend; both stop when this is dropped.
pub struct Haproxy {
    exe: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// The stats socket (level admin).
    pub socket: PathBuf,
    /// The ACL file the frontend admits sources from.
    pub acl: PathBuf,
    /// The frontend clients connect to.
    pub frontend: SocketAddrV4,
    stop: Arc<AtomicBool>,
    backend: SocketAddr,
}

impl Haproxy {
    /// Write the configuration and the ACL file (`entries`, one per line) into `dir` and
    /// start HAProxy; returns once its stats socket answers.
    pub fn start(exe: &Path, dir: &Path, entries: &[&str]) -> Haproxy {
        let stop = Arc::new(AtomicBool::new(false));
        let backend = spawn_backend(stop.clone());
        let frontend = free_port();
        let socket = dir.join("admin.sock");
        let acl = dir.join("allow.acl");
        let mut text = String::new();
        for e in entries {
            text.push_str(e);
            text.push('\n');
        }
        std::fs::write(&acl, text).unwrap_or_else(|e| panic!("{}: {e}", acl.display()));
        let cfg = format!(
            "global\n    stats socket {sock} mode 600 level admin\n    maxconn 2000\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend fe\n    bind {frontend}\n    tcp-request connection reject if !{{ src -f {acl} }}\n    default_backend be\n\
             backend be\n    server s1 {backend}\n",
            sock = socket.display(),
            acl = acl.display(),
        );
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap_or_else(|e| panic!("{}: {e}", cfg_path.display()));
        let mut h = Haproxy {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
            socket,
            acl,
            frontend,
            stop,
            backend,
        };
        h.spawn();
        h
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("haproxy.log"))
            .unwrap_or_else(|e| panic!("haproxy.log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("haproxy.log: {e}"));
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(&self.exe)
            .arg("-db")
            .arg("-f")
            .arg(self.dir.join("haproxy.cfg"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.exe.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(answer) = self.try_cli("show info")
                && answer.contains("Version:")
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("haproxy exited ({status}) at start: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not open its stats socket within 15s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop HAProxy and start it again from its configuration and ACL file (what a host
    /// restart does): the runtime state is gone, the file is loaded anew.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// HAProxy's own output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// Send one command line to the stats socket; the answer.
    pub fn cli(&self, line: &str) -> String {
        self.try_cli(line)
            .unwrap_or_else(|e| panic!("stats socket {}: {e}", self.socket.display()))
    }

    fn try_cli(&self, line: &str) -> std::io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// The entries of the live ACL, as `show acl` lists them.
    pub fn live_entries(&self) -> Vec<String> {
        let list = self.cli("show acl");
        let name = format!("({})", self.acl.display());
        let id = list
            .lines()
            .find(|l| l.contains(&name))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("no ACL {name} in: {list}"))
            .to_owned();
        let mut entries: Vec<String> = self
            .cli(&format!("show acl #{id}"))
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, p)| p.trim().to_owned()))
            .collect();
        entries.sort();
        entries
    }

    /// Whether a client connecting from `source` (a 127.0.0.x address) is admitted: it
    /// reaches the backend and reads its `ok`. A refused client sees the connection closed.
    pub fn admits(&self, source: Ipv4Addr) -> bool {
        match connect_from(source, self.frontend) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0u8; 3];
                let mut got = 0;
                while got < 3 {
                    match s.read(&mut buf[got..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                &buf[..got] == b"ok\n"
            }
            Err(_) => false,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.kill();
        self.stop.store(true, Ordering::SeqCst);
        // Wake the backend's accept so its thread ends.
        let _ = TcpStream::connect_timeout(&self.backend, Duration::from_secs(1));
    }
}

/// A TCP connection to `to` from the address `source` (any port).
pub fn connect_from(source: Ipv4Addr, to: SocketAddrV4) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, ipproto};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP))?;
    rustix::net::bind(&fd, &SocketAddrV4::new(source, 0))?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// A free TCP port on 127.0.0.1 (bound and released; HAProxy binds it next).
fn free_port() -> SocketAddrV4 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    match l.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        other => panic!("unexpected local address {other:?}"),
    }
}

/// The backend: answers `ok\n` to every connection and closes it.
fn spawn_backend(stop: Arc<AtomicBool>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = l
        .local_addr()
        .unwrap_or_else(|e| panic!("local address: {e}"));
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(mut c) = conn {
                let _ = c.write_all(b"ok\n");
            }
        }
    });
    addr
}
