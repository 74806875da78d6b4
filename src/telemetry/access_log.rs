//! The access log's own fast path. One line per request is the hottest log call
//! usher has: through `tracing-subscriber` it cost ≈ 3 µs of CPU per request
//! (field visitors, `fmt` machinery, a timestamp formatted from scratch, one
//! channel message and often one thread wake-up per line) — a fifth of a proxied
//! request. Here a line is written straight into a per-thread batch in the same
//! text or JSON shape the subscriber prints, and a worker hands the batch to the
//! log thread at most every [`FLUSH_EVERY`] or [`BATCH_BYTES`], like nginx's
//! `access_log ... buffer= flush=`. `RUST_LOG` still decides whether lines are
//! written (`usher::access=off` silences them). Must not: format anything that
//! could hold a secret (the record has no cookie, token or query string).

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::NonBlocking;

use super::LogFormat;

/// The longest an access-log line waits in a worker's batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A batch this large is handed over at once.
pub const BATCH_BYTES: usize = 32 * 1024;

/// One request, as the access log reports it.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration_us: u64,
    pub upstream: &'a str,
    pub request_id: &'a str,
    pub user: &'a str,
}

/// Where batches go: the same non-blocking writer (and so the same log thread and
/// output) as every other log line. Unset until [`super::init`] installs it, and
/// never set when the output is a terminal (coloured lines stay with the
/// subscriber): then lines go through `tracing` as before.
struct Sink {
    writer: NonBlocking,
    format: LogFormat,
}

static SINK: OnceLock<Sink> = OnceLock::new();

pub(super) fn install(writer: NonBlocking, format: LogFormat) {
    let _ = SINK.set(Sink { writer, format });
}

/// A thread's pending lines and its cached timestamp prefix.
struct Batch {
    buf: Vec<u8>,
    /// Set on threads that flush on a timer (proxy workers); elsewhere every line
    /// is handed over at once, so nothing waits on a thread that never flushes.
    batching: bool,
    /// Unix second of `prefix`, and `YYYY-MM-DDTHH:MM:SS.` for it.
    second: u64,
    prefix: [u8; 20],
}

thread_local! {
    static BATCH: RefCell<Batch> = const {
        RefCell::new(Batch { buf: Vec::new(), batching: false, second: u64::MAX, prefix: [0; 20] })
    };
}

impl Drop for Batch {
    /// Lines written while a worker shuts down (connections dropped with their
    /// runtime) leave with the thread instead of being lost.
    fn drop(&mut self) {
        if let Some(sink) = SINK.get() {
            hand_over(sink, &mut self.buf);
        }
    }
}

/// Writes one access-log line stamped `now` (if `RUST_LOG` lets `usher::access`
/// through). The caller passes the time it already has: a clock read costs.
pub fn write(now: SystemTime, line: &AccessLine<'_>) {
    if !tracing::enabled!(target: "usher::access", tracing::Level::INFO) {
        return;
    }
    match SINK.get() {
        Some(sink) => write_with(sink, line, now),
        None => via_tracing(line),
    }
}

fn write_with(sink: &Sink, line: &AccessLine<'_>, now: SystemTime) {
    // `try_with`: a body dropped while this thread is being torn down (after its
    // batch is gone) still gets its line, through the subscriber.
    let batched = BATCH.try_with(|cell| {
        let Ok(mut batch) = cell.try_borrow_mut() else {
            return via_tracing(line);
        };
        let batch = &mut *batch;
        let ts = batch.timestamp(now);
        match sink.format {
            LogFormat::Text => format_text(&mut batch.buf, &ts, line),
            LogFormat::Json => format_json(&mut batch.buf, &ts, line),
        }
        if !batch.batching || batch.buf.len() >= BATCH_BYTES {
            hand_over(sink, &mut batch.buf);
        }
    });
    if batched.is_err() {
        via_tracing(line);
    }
}

/// Makes this thread batch its lines; the caller must then call [`flush`] at
/// least every [`FLUSH_EVERY`] (see [`run_flusher`]) and once when it stops.
pub fn batch_on_this_thread() {
    let _ = BATCH.try_with(|cell| {
        if let Ok(mut b) = cell.try_borrow_mut() {
            b.batching = true;
        }
    });
}

/// Hands this thread's pending lines to the log thread.
pub fn flush() {
    let Some(sink) = SINK.get() else { return };
    let _ = BATCH.try_with(|cell| {
        if let Ok(mut b) = cell.try_borrow_mut() {
            hand_over(sink, &mut b.buf);
        }
    });
}

/// A proxy worker's flush loop: batches this thread's lines and flushes them
/// every [`FLUSH_EVERY`] until the future is dropped (the worker flushes once more
/// when it stops). Runs on the worker's own single-threaded runtime.
pub async fn run_flusher() {
    batch_on_this_thread();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush();
    }
}

fn hand_over(sink: &Sink, buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    // One message for the whole batch; the log thread writes it out in one go.
    let mut writer = sink.writer.clone();
    let _ = writer.write_all(buf);
    buf.clear();
}

impl Batch {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the subscriber's own timestamp shape; the
    /// date part is formatted once per second per thread.
    fn timestamp(&mut self, now: SystemTime) -> [u8; 27] {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if second != self.second {
            let full = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(second))
                .to_string();
            // "YYYY-MM-DDTHH:MM:SSZ": keep the first 19 bytes, add the dot.
            if let Some(date) = full.as_bytes().get(..19) {
                self.prefix[..19].copy_from_slice(date);
                self.prefix[19] = b'.';
                self.second = second;
            }
        }
        let mut out = [0u8; 27];
        out[..20].copy_from_slice(&self.prefix);
        let mut micros = since.subsec_micros();
        for i in (20..26).rev() {
            out[i] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out[26] = b'Z';
        out
    }
}

/// One field's value: text, or a number written with `itoa`.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
}

impl<'a> AccessLine<'a> {
    /// The fields in the order both shapes print them (the subscriber's order),
    /// each keyed as the text line writes it (` name=`: one copy per field
    /// instead of three); [`json_name`] gives the bare name.
    fn fields(&self) -> [(&'static str, Value<'a>); 9] {
        [
            (" method=", Value::Text(self.method)),
            (" host=", Value::Text(self.host)),
            (" path=", Value::Text(self.path)),
            (" status=", Value::Number(u64::from(self.status))),
            (" bytes=", Value::Number(self.bytes)),
            (" duration_us=", Value::Number(self.duration_us)),
            (" upstream=", Value::Text(self.upstream)),
            (" request_id=", Value::Text(self.request_id)),
            (" user=", Value::Text(self.user)),
        ]
    }
}

/// `name` of a ` name=` field key.
fn json_name(key: &'static str) -> &'static str {
    key.strip_prefix(' ')
        .and_then(|k| k.strip_suffix('='))
        .unwrap_or(key)
}

fn format_text(out: &mut Vec<u8>, ts: &[u8], l: &AccessLine<'_>) {
    let mut num = itoa::Buffer::new();
    // One growth check for the line instead of one per piece.
    out.reserve(160 + l.host.len() + l.path.len() + l.request_id.len() + l.user.len());
    out.extend_from_slice(ts);
    out.extend_from_slice(b"  INFO usher::access:");
    for (key, value) in l.fields() {
        out.extend_from_slice(key.as_bytes());
        match value {
            Value::Text(t) => out.extend_from_slice(t.as_bytes()),
            Value::Number(n) => out.extend_from_slice(num.format(n).as_bytes()),
        }
    }
    out.push(b'\n');
}

fn format_json(out: &mut Vec<u8>, ts: &[u8], l: &AccessLine<'_>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(ts);
    out.extend_from_slice(b"\",\"level\":\"INFO\"");
    for (key, value) in l.fields() {
        json_key(out, json_name(key));
        match value {
            Value::Text(t) => json_string(out, t),
            Value::Number(n) => out.extend_from_slice(num.format(n).as_bytes()),
        }
    }
    json_key(out, "target");
    json_string(out, "usher::access");
    out.extend_from_slice(b"}\n");
}

fn json_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_string(out: &mut Vec<u8>, value: &str) {
    // serde_json escapes exactly what JSON requires (quotes, backslashes, controls).
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"\"-\"");
    }
}

/// The subscriber path, for threads and set-ups without the fast path (tests,
/// coloured terminal output).
fn via_tracing(l: &AccessLine<'_>) {
    tracing::info!(
        target: "usher::access",
        method = %l.method,
        host = %l.host,
        path = %l.path,
        status = l.status,
        bytes = l.bytes,
        duration_us = l.duration_us,
        upstream = %l.upstream,
        request_id = %l.request_id,
        user = %l.user,
    );
}

#[cfg(test)]
mod tests;
