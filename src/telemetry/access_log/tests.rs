use std::sync::{Arc, Mutex};

use super::*;

/// Everything a writer received, one entry per `write` call (= one message from
/// the log thread's point of view when fed by `NonBlocking`).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
    }
    fn writes(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn sample<'a>(path: &'a str, user: &'a str) -> AccessLine<'a> {
    AccessLine {
        method: "GET",
        host: "jira.example.com",
        path,
        status: 200,
        bytes: 1024,
        duration_us: 1234,
        upstream: "jira",
        request_id: "0123456789abcdef0123456789abcdef",
        user,
    }
}

/// What tracing-subscriber itself prints for the same line, in `format`.
fn subscriber_line(format: LogFormat, line: &AccessLine<'_>) -> String {
    let out = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_ansi(false)
        .with_target(true);
    match format {
        LogFormat::Text => {
            tracing::subscriber::with_default(builder.finish(), || via_tracing(line))
        }
        LogFormat::Json => {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), || {
                via_tracing(line)
            })
        }
    }
    out.text()
}

fn ours(format: LogFormat, line: &AccessLine<'_>) -> String {
    let mut buf = Vec::new();
    let ts = Batch {
        buf: Vec::new(),
        batching: false,
        second: u64::MAX,
        prefix: [0; 20],
    }
    .timestamp(SystemTime::now());
    match format {
        LogFormat::Text => format_text(&mut buf, &ts, line),
        LogFormat::Json => format_json(&mut buf, &ts, line),
    }
    String::from_utf8(buf).unwrap()
}

/// Replaces the 27-byte RFC 3339 timestamp so two lines can be compared.
fn without_timestamp(line: &str) -> String {
    let start = line.find("20").expect("a timestamp");
    let ts = &line[start..start + 27];
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    format!("{}<ts>{}", &line[..start], &line[start + 27..])
}

#[test]
fn text_lines_are_the_subscribers_own_shape() {
    for line in [sample("/browse/ABC-1", "alice"), sample("/", "-")] {
        let theirs = subscriber_line(LogFormat::Text, &line);
        assert_eq!(
            without_timestamp(&ours(LogFormat::Text, &line)),
            without_timestamp(&theirs)
        );
    }
}

#[test]
fn json_lines_are_the_subscribers_own_shape() {
    for line in [sample("/browse/ABC-1", "alice"), sample("/a\"b\\c", "-")] {
        let theirs = subscriber_line(LogFormat::Json, &line);
        let mine = ours(LogFormat::Json, &line);
        assert_eq!(without_timestamp(&mine), without_timestamp(&theirs));
        let v: serde_json::Value = serde_json::from_str(&mine).unwrap();
        assert_eq!(v["path"], line.path);
        assert_eq!(v["status"], 200);
        assert_eq!(v["target"], "usher::access");
    }
}

#[test]
fn json_values_are_escaped() {
    let hostile = "/x\"y\\z\u{1}\u{7f}";
    let line = sample(hostile, "bob\"}");
    let v: serde_json::Value = serde_json::from_str(&ours(LogFormat::Json, &line)).unwrap();
    assert_eq!(v["path"], hostile);
    assert_eq!(v["user"], "bob\"}");
}

#[test]
fn timestamps_match_rfc3339_with_microseconds() {
    let mut batch = Batch {
        buf: Vec::new(),
        batching: false,
        second: u64::MAX,
        prefix: [0; 20],
    };
    // Same second twice (cached prefix), the next second, a leap day, far future.
    let cases = [
        1_764_392_043_000_001u64,
        1_764_392_043_999_999,
        1_764_392_044_000_000,
        951_782_400_123_456, // 2000-02-29T00:00:00.123456Z
        4_102_444_799_999_999,
    ];
    for micros in cases {
        let t = UNIX_EPOCH + Duration::from_micros(micros);
        let ours = batch.timestamp(t);
        assert_eq!(
            std::str::from_utf8(&ours).unwrap(),
            humantime::format_rfc3339_micros(t).to_string()
        );
    }
}

fn sink(format: LogFormat) -> (Sink, Captured, tracing_appender::non_blocking::WorkerGuard) {
    let out = Captured::default();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(out.clone());
    (Sink { writer, format }, out, guard)
}

/// Waits (bounded) until the log thread has passed on `n` messages.
fn wait_for(out: &Captured, n: usize) {
    for _ in 0..200 {
        if out.writes() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_batching_thread_holds_lines_until_it_flushes() {
    let (sink, out, _guard) = sink(LogFormat::Text);
    std::thread::spawn(move || {
        batch_on_this_thread();
        for i in 0..10 {
            let path = format!("/held/{i}");
            write_with(&sink, &sample(&path, "alice"), SystemTime::now());
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(out.writes(), 0, "nothing handed over before the flush");
        BATCH.with(|c| hand_over(&sink, &mut c.borrow_mut().buf));
        wait_for(&out, 1);
        assert_eq!(out.writes(), 1, "ten lines, one message");
        let text = out.text();
        assert_eq!(text.lines().count(), 10);
        for i in 0..10 {
            assert!(text.contains(&format!(" path=/held/{i} ")), "{text}");
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_full_batch_is_handed_over_without_waiting_for_the_timer() {
    let (sink, out, _guard) = sink(LogFormat::Text);
    std::thread::spawn(move || {
        batch_on_this_thread();
        let long = format!("/{}", "p".repeat(500));
        let mut written = 0;
        while written < BATCH_BYTES {
            write_with(&sink, &sample(&long, "alice"), SystemTime::now());
            written += 650;
        }
        wait_for(&out, 1);
        assert!(
            out.writes() >= 1,
            "a batch over {BATCH_BYTES} bytes leaves at once"
        );
        assert!(out.text().len() >= BATCH_BYTES);
    })
    .join()
    .unwrap();
}

#[test]
fn other_threads_hand_over_every_line_at_once() {
    let (sink, out, _guard) = sink(LogFormat::Json);
    std::thread::spawn(move || {
        write_with(&sink, &sample("/now", "-"), SystemTime::now());
        wait_for(&out, 1);
        let v: serde_json::Value = serde_json::from_str(out.text().trim_end()).unwrap();
        assert_eq!(v["path"], "/now");
    })
    .join()
    .unwrap();
}

/// Writes one line from its destructor: registered before the batch on its
/// thread, it is torn down after it.
struct LateWriter(Option<Sink>);

impl Drop for LateWriter {
    fn drop(&mut self) {
        if let Some(sink) = &self.0 {
            write_with(sink, &sample("/late", "-"), SystemTime::now());
        }
    }
}

thread_local! {
    static LATE: RefCell<LateWriter> = const { RefCell::new(LateWriter(None)) };
}

#[test]
fn a_line_written_after_the_batch_is_gone_does_not_panic() {
    let (sink, _out, _guard) = sink(LogFormat::Text);
    std::thread::spawn(move || {
        // LATE first, then the batch: destructors run in reverse, so the batch
        // is gone when LATE writes (with `with` instead of `try_with` this
        // aborts the test binary).
        LATE.with(|l| l.borrow_mut().0 = Some(sink));
        batch_on_this_thread();
    })
    .join()
    .unwrap();
}
