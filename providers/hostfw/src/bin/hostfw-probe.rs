//! `hostfw-probe`: a tiny TCP listener and connector for checking a host firewall from inside
//! network namespaces (`ip netns exec NS hostfw-probe ...`). The provider's real-kernel tests
//! use it; it is also handy to verify an allow-list by hand.
//!
//! ```text
//! hostfw-probe listen PORT...                      accept and close on [::]:PORT (IPv4 too)
//!                                                  until stdin closes; prints `ready`
//! hostfw-probe connect SRC DST PORT TIMEOUT_MS     prints connected | refused | timeout | error: ...
//! hostfw-probe loop SRC DST PORT TIMEOUT_MS MAX    connects repeatedly until stdin closes or MAX
//!                                                  attempts; prints
//!                                                  `connected N refused N timeout N error N`
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

fn usage() -> ExitCode {
    eprintln!(
        "usage: hostfw-probe listen PORT... | connect SRC DST PORT TIMEOUT_MS | loop SRC DST PORT TIMEOUT_MS MAX"
    );
    ExitCode::from(2)
}

/// The outcome of one connection attempt.
async fn connect(src: IpAddr, dst: IpAddr, port: u16, timeout: Duration) -> String {
    let socket = match dst {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => return format!("error: socket: {e}"),
    };
    if let Err(e) = socket.bind(SocketAddr::new(src, 0)) {
        return format!("error: bind {src}: {e}");
    }
    match tokio::time::timeout(timeout, socket.connect(SocketAddr::new(dst, port))).await {
        Err(_) => "timeout".into(),
        Ok(Ok(_stream)) => "connected".into(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".into(),
        Ok(Err(e)) => format!("error: {e}"),
    }
}

/// Resolves when stdin reaches end of file (the parent closed it or exited).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn listen(ports: Vec<u16>) -> ExitCode {
    let mut listeners = Vec::new();
    for port in ports {
        match TcpListener::bind(SocketAddr::new(IpAddr::from([0u16; 8]), port)).await {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("hostfw-probe: cannot listen on port {port}: {e}");
                return ExitCode::FAILURE;
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
    let mut out = tokio::io::stdout();
    if out.write_all(b"ready\n").await.is_err() || out.flush().await.is_err() {
        return ExitCode::FAILURE;
    }
    stdin_closed().await;
    ExitCode::SUCCESS
}

async fn run_loop(src: IpAddr, dst: IpAddr, port: u16, timeout: Duration, max: u32) -> ExitCode {
    let stop = stdin_closed();
    tokio::pin!(stop);
    let (mut connected, mut refused, mut timed_out, mut errors) = (0u32, 0u32, 0u32, 0u32);
    for _ in 0..max {
        let outcome = tokio::select! {
            _ = &mut stop => break,
            o = connect(src, dst, port, timeout) => o,
        };
        match outcome.as_str() {
            "connected" => connected += 1,
            "refused" => refused += 1,
            "timeout" => timed_out += 1,
            _ => {
                errors += 1;
                eprintln!("hostfw-probe: {outcome}");
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!("connected {connected} refused {refused} timeout {timed_out} error {errors}");
    ExitCode::SUCCESS
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ip = |s: &String| s.parse::<IpAddr>().ok();
    let num = |s: &String| s.parse::<u64>().ok();
    match args.first().map(String::as_str) {
        Some("listen") if args.len() > 1 => {
            let ports: Option<Vec<u16>> = args[1..].iter().map(|p| p.parse().ok()).collect();
            match ports {
                Some(p) => listen(p).await,
                None => usage(),
            }
        }
        Some("connect") if args.len() == 5 => {
            match (
                ip(&args[1]),
                ip(&args[2]),
                args[3].parse::<u16>().ok(),
                num(&args[4]),
            ) {
                (Some(src), Some(dst), Some(port), Some(ms)) => {
                    println!(
                        "{}",
                        connect(src, dst, port, Duration::from_millis(ms)).await
                    );
                    ExitCode::SUCCESS
                }
                _ => usage(),
            }
        }
        Some("loop") if args.len() == 6 => {
            match (
                ip(&args[1]),
                ip(&args[2]),
                args[3].parse::<u16>().ok(),
                num(&args[4]),
                args[5].parse::<u32>().ok(),
            ) {
                (Some(src), Some(dst), Some(port), Some(ms), Some(max)) => {
                    run_loop(src, dst, port, Duration::from_millis(ms), max).await
                }
                _ => usage(),
            }
        }
        _ => usage(),
    }
}
