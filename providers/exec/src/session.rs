//! One plugin process and the blocking calls made to it: start and hello, a request and its
//! reply under a deadline, and the kill of the whole process group.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rangekeeper_provider::protocol::{self, Hello, Operation, Reply, Request};
use rangekeeper_provider::{Capabilities, Progress, ProviderError};
use rustix::process::{Pid, Signal, kill_process_group};
use serde::de::DeserializeOwned;

use crate::PluginSpec;

/// How much of what a plugin printed is quoted in an error.
const QUOTE_BYTES: usize = 300;
/// The stderr lines kept for error messages.
const STDERR_TAIL: usize = 10;
/// The longest stderr line forwarded to the log (the rest of the line is dropped).
const MAX_STDERR_LINE: usize = 4096;
/// How long a plugin whose stdin was closed may take to exit before its group is killed.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// What the stdout reader thread saw.
enum Line {
    Text(String),
    /// A line longer than the cap; the reader stopped reading.
    TooLong(String),
    Eof,
    Failed(String),
}

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running plugin process.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Tail,
    /// The stderr forwarder; finished once the plugin (and its children) closed stderr.
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    version: u32,
}

impl Session {
    fn pid(&self) -> Option<Pid> {
        Pid::from_raw(i32::try_from(self.child.id()).ok()?)
    }

    /// Whether the plugin is still there to serve a request: not exited, stdout not closed.
    /// Lines printed between replies are not part of any reply: logged and dropped.
    fn alive(&mut self, label: &str) -> bool {
        loop {
            match self.lines.try_recv() {
                Ok(Line::Text(t)) => {
                    tracing::warn!("{label} printed outside a reply (ignored): {}", quote(&t));
                }
                Ok(Line::TooLong(_) | Line::Eof | Line::Failed(_))
                | Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
            }
        }
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kill the plugin's whole process group and reap the plugin.
    fn kill(&mut self) {
        self.stdin = None;
        if let Some(pid) = self.pid() {
            // ESRCH (the group is gone already) is what we want anyway.
            let _ = kill_process_group(pid, Signal::KILL);
        }
        let _ = self.child.wait();
    }

    /// Close stdin (the end of the session), give the plugin a moment to exit, then kill
    /// whatever is left of its process group.
    fn close(&mut self) {
        self.stdin = None;
        // A plugin that ends its session closes its stdout: wait for that event (no polling
        // interval to sleep through), then for the exit itself.
        let until = Instant::now() + EXIT_GRACE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Line::Text(_)) => continue,
                Ok(_) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        self.kill();
    }

    /// After the plugin's stdout closed: its exit status, waited for briefly.
    fn exit_status(&mut self) -> String {
        let until = Instant::now() + EXIT_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return s.to_string(),
                Ok(None) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(None) => return "closed its stdout".into(),
                Err(e) => return format!("cannot be waited for ({e})"),
            }
        }
    }

    /// The last stderr lines, for an error message. After an exit, wait briefly for the
    /// forwarder to read what the plugin printed last.
    fn stderr_text(&self) -> String {
        if let Some(t) = &self.stderr_thread {
            let until = Instant::now() + EXIT_GRACE;
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.is_empty() {
            return "nothing on stderr".into();
        }
        let text = tail.iter().cloned().collect::<Vec<_>>().join("\n");
        format!("stderr: {}", quote(&text))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// A plugin bound to one target: its spec and its process, started on demand.
pub(crate) struct Plugin {
    spec: PluginSpec,
    session: Mutex<Option<Session>>,
    starts: AtomicUsize,
    label: String,
}

impl Plugin {
    pub(crate) fn new(spec: PluginSpec) -> Plugin {
        let label = if spec.target.name.is_empty() {
            format!("plugin {}", spec.exe.display())
        } else {
            format!(
                "plugin {} (target `{}`)",
                spec.exe.display(),
                spec.target.name
            )
        };
        Plugin {
            spec,
            session: Mutex::new(None),
            starts: AtomicUsize::new(0),
            label,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// One request and its reply. A process that died since the last call is started again
    /// first; a process that failed this call (timeout, garbage, exit) is killed, and the
    /// error names the plugin and quotes what it printed.
    pub(crate) fn call<T: DeserializeOwned>(
        &self,
        op: Operation,
        progress: Option<&dyn Progress>,
    ) -> Result<T, ProviderError> {
        self.call_with(op, progress, true)
    }

    /// `capabilities` without a target: what the plugin can do in general.
    pub(crate) fn call_untargeted_capabilities(&self) -> Result<Capabilities, ProviderError> {
        self.call_with(Operation::Capabilities, None, false)
    }

    fn call_with<T: DeserializeOwned>(
        &self,
        op: Operation,
        progress: Option<&dyn Progress>,
        targeted: bool,
    ) -> Result<T, ProviderError> {
        let mut slot = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slot.as_mut()
            && !s.alive(&self.label)
        {
            tracing::debug!(
                "{} exited since the last call; starting it again",
                self.label
            );
            *slot = None;
        }
        let timeout = match op {
            Operation::Apply { .. } | Operation::ApplyLeased { .. } | Operation::Disable { .. } => {
                self.spec.apply_timeout
            }
            _ => self.spec.timeout,
        };
        let deadline = Instant::now() + timeout;
        if slot.is_none() {
            *slot = Some(self.start(deadline)?);
        }
        let Some(session) = slot.as_mut() else {
            return Err(self.fail("the plugin is not running".into()));
        };
        let kind = op.kind();
        let request = Request {
            v: session.version,
            op,
            target: targeted.then(|| self.spec.target.clone()),
        };
        match self.exchange(session, &request, kind, deadline, timeout, progress) {
            Ok(r) => r,
            Err(Fatal(e)) => {
                // The protocol state is unknown now: end this process; the next call starts
                // a new one.
                if let Some(mut s) = slot.take() {
                    s.kill();
                }
                Err(e)
            }
        }
    }

    fn exchange<T: DeserializeOwned>(
        &self,
        s: &mut Session,
        request: &Request,
        kind: &str,
        deadline: Instant,
        timeout: Duration,
        progress: Option<&dyn Progress>,
    ) -> Result<Result<T, ProviderError>, Fatal> {
        let mut line = serde_json::to_vec(request)
            .map_err(|e| Fatal(self.fail(format!("cannot encode the `{kind}` request: {e}"))))?;
        line.push(b'\n');
        let written = match s.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&line).and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin is closed")),
        };
        if let Err(e) = written {
            let status = s.exit_status();
            return Err(Fatal(self.fail(format!(
                "cannot send the `{kind}` request ({e}); the plugin {status}; {}",
                s.stderr_text()
            ))));
        }
        loop {
            let text = self.next_line(s, kind, deadline, timeout)?;
            let reply: Reply<serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
                Fatal(self.fail(format!(
                    "answered `{kind}` with something that is not a protocol reply ({e}): {}",
                    quote(&text)
                )))
            })?;
            match reply {
                Reply::Progress(msg) => {
                    if let Some(p) = progress {
                        p.message(&msg);
                    }
                }
                Reply::Err(e) => return Ok(Err(e)),
                Reply::Ok(v) => {
                    return serde_json::from_value::<T>(v).map(Ok).map_err(|e| {
                        Fatal(self.fail(format!(
                            "answered `{kind}` with a reply that does not read ({e}): {}",
                            quote(&text)
                        )))
                    });
                }
            }
        }
    }

    /// The next stdout line, or a fatal error (timeout, exit, overlong line).
    fn next_line(
        &self,
        s: &mut Session,
        kind: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<String, Fatal> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match s.lines.recv_timeout(wait) {
            Ok(Line::Text(t)) => Ok(t),
            Ok(Line::TooLong(head)) => Err(Fatal(self.fail(format!(
                "printed a line longer than {} bytes while answering `{kind}`; it begins: {}",
                self.spec.max_line,
                quote(&head)
            )))),
            Ok(Line::Failed(e)) => Err(Fatal(self.fail(format!(
                "cannot read its stdout while answering `{kind}`: {e}"
            )))),
            Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                let status = s.exit_status();
                Err(Fatal(self.fail(format!(
                    "exited ({status}) without answering `{kind}`; {}",
                    s.stderr_text()
                ))))
            }
            Err(RecvTimeoutError::Timeout) => Err(Fatal(ProviderError::Transient(format!(
                "{}: no answer to `{kind}` within {timeout:?}; killed it",
                self.label
            )))),
        }
    }

    fn fail(&self, msg: String) -> ProviderError {
        ProviderError::Other(format!("{}: {msg}", self.label))
    }

    /// Start the plugin in its own process group and read its hello.
    fn start(&self, deadline: Instant) -> Result<Session, ProviderError> {
        use std::os::unix::process::CommandExt;
        self.starts.fetch_add(1, Ordering::SeqCst);
        let mut cmd = Command::new(&self.spec.exe);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &self.spec.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| self.fail(format!("cannot be started: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(self.fail("started without pipes".into()));
        };
        let (tx, lines) = sync_channel(16);
        let max = self.spec.max_line;
        let tail: Tail = Arc::default();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f)
        };
        let target = if self.spec.target.name.is_empty() {
            self.spec.provider.clone()
        } else {
            self.spec.target.name.clone()
        };
        let tail2 = tail.clone();
        let threads = spawn(
            "rangekeeper-plugin-stdout",
            Box::new(move || read_lines(stdout, &tx, max)),
        )
        .and_then(|_| {
            spawn(
                "rangekeeper-plugin-stderr",
                Box::new(move || forward_stderr(stderr, &target, &tail2)),
            )
        });
        let mut session = Session {
            child,
            stdin: Some(stdin),
            lines,
            stderr: tail,
            stderr_thread: None,
            version: 0,
        };
        match threads {
            Ok(t) => session.stderr_thread = Some(t),
            Err(e) => return Err(self.fail(format!("cannot start its reader threads: {e}"))),
        }
        let text = self
            .next_line(&mut session, "hello", deadline, self.spec.timeout)
            .map_err(|Fatal(e)| e)?;
        let hello: Hello = serde_json::from_str(&text).map_err(|e| {
            self.fail(format!(
                "did not start with a protocol hello such as {{\"v\":[1]}} ({e}): {}",
                quote(&text)
            ))
        })?;
        session.version = protocol::negotiate(protocol::VERSIONS, &hello.v)
            .map_err(|e| ProviderError::Config(format!("{}: {e}", self.label)))?;
        Ok(session)
    }
}

/// A call failure after which the plugin's protocol state is unknown.
struct Fatal(ProviderError);

/// Send stdout lines to the session, each at most `max` bytes; stop at an overlong line so
/// memory stays bounded whatever the plugin prints.
fn read_lines(stdout: impl Read, tx: &SyncSender<Line>, max: usize) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Line::Failed(e.to_string()));
                return;
            }
        };
        if buf.is_empty() {
            if !line.is_empty() {
                let _ = tx.send(Line::Text(String::from_utf8_lossy(&line).into_owned()));
            }
            let _ = tx.send(Line::Eof);
            return;
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            let mut head = line;
            head.extend_from_slice(&buf[..take.min(QUOTE_BYTES)]);
            let _ = tx.send(Line::TooLong(String::from_utf8_lossy(&head).into_owned()));
            return;
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(if end { take + 1 } else { take });
        if end {
            let text = String::from_utf8_lossy(&line).into_owned();
            line.clear();
            if text.trim().is_empty() {
                continue;
            }
            if tx.send(Line::Text(text)).is_err() {
                return;
            }
        }
    }
}

/// Forward the plugin's stderr lines to the log with the target's name; keep the last few
/// for error messages.
fn forward_stderr(stderr: impl Read, target: &str, tail: &Tail) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read at most MAX_STDERR_LINE bytes of a line, then skip the rest of it.
        match (&mut r)
            .take(MAX_STDERR_LINE as u64)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() != Some(&b'\n') {
            let mut skip = Vec::new();
            loop {
                skip.clear();
                match (&mut r).take(64 * 1024).read_until(b'\n', &mut skip) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if skip.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        tracing::info!(target: "rangekeeper::plugin", "{target}: {text}");
        let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(text);
    }
}

/// What a plugin printed, cut to a sane length, quoted.
fn quote(text: &str) -> String {
    let text = text.trim();
    if text.len() <= QUOTE_BYTES {
        return format!("`{}`", text.escape_debug());
    }
    let mut end = QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "`{}` ... ({} bytes in all)",
        text[..end].escape_debug(),
        text.len()
    )
}
