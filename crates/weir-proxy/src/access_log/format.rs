//! Access log lines: the text format (nginx "combined" plus the gateway's
//! fields) and JSON, formatted straight into the worker's buffer.
//!
//! Text lines escape what nginx escapes: `"`, `\` and bytes outside printable
//! ASCII become `\xHH`, so a header can never forge a field or a line.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::record::{AccessRecord, Field};

/// A duration as seconds with millisecond precision (`0.012`), formatted
/// with integer arithmetic: float formatting showed in profiles.
pub(super) struct Seconds(pub(super) Duration);

impl Seconds {
    fn push(&self, out: &mut Vec<u8>) {
        // u64 arithmetic: `as_micros` is a u128 and its division showed in
        // profiles. Saturates after half a million years.
        let micros = self
            .0
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(self.0.subsec_micros()));
        let ms = micros.saturating_add(500) / 1000;
        push_int(out, ms / 1000);
        out.push(b'.');
        let frac = (ms % 1000) as u16;
        out.extend_from_slice(&[
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

fn push_int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_int(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `bytes`, `-` when empty, escaping like nginx's `escape=default`.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        out.push(b'-');
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
}

/// The Host a line shows: as received, without its port.
fn host(rec: &AccessRecord) -> &[u8] {
    crate::router::strip_port_bytes(rec.field(Field::Host))
}

fn request_time(rec: &AccessRecord) -> Duration {
    rec.request_time
        .or_else(|| rec.start.map(|s| s.elapsed()))
        .unwrap_or_default()
}

/// Formats one text line (with its newline) into `out`.
pub(super) fn text(rec: &AccessRecord, out: &mut Vec<u8>) {
    match rec.remote {
        Some(r) => push_ip(out, r.ip()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    if let Some(start) = rec.start {
        push_time(start, out);
    }
    out.extend_from_slice(b"] \"");
    push_escaped(out, rec.field(Field::Method));
    out.push(b' ');
    push_escaped(out, rec.field(Field::Target));
    out.push(b' ');
    if rec.version.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(rec.version.as_bytes());
    }
    out.extend_from_slice(b"\" ");
    push_int(out, rec.status);
    out.push(b' ');
    push_int(out, rec.body_bytes);
    out.extend_from_slice(b" \"");
    push_escaped(out, rec.field(Field::Referer));
    out.extend_from_slice(b"\" \"");
    push_escaped(out, rec.field(Field::UserAgent));
    out.extend_from_slice(b"\" host=");
    push_escaped(out, host(rec));
    out.extend_from_slice(b" rt=");
    Seconds(request_time(rec)).push(out);
    out.extend_from_slice(b" upstream=");
    if rec.attempts.is_empty() {
        out.extend_from_slice(b"- ustatus=- urt=-");
    } else {
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(a.node.as_bytes());
        }
        out.extend_from_slice(b" ustatus=");
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            match a.status {
                Some(s) => push_int(out, s),
                None => out.push(b'-'),
            }
        }
        out.extend_from_slice(b" urt=");
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            Seconds(a.elapsed).push(out);
        }
    }
    out.extend_from_slice(b" route=");
    push_escaped(out, rec.route_id.as_deref().unwrap_or("").as_bytes());
    if let Some(c) = &rec.consumer {
        out.extend_from_slice(b" consumer=");
        push_escaped(out, c.as_bytes());
    }
    if let Some(id) = &rec.request_id {
        out.extend_from_slice(b" request_id=");
        push_escaped(out, id.as_bytes());
    }
    if let Some(id) = &rec.trace_id {
        out.extend_from_slice(b" trace_id=");
        out.extend_from_slice(&hex32(id));
    }
    if let Some(why) = rec.abort {
        out.extend_from_slice(b" abort=");
        out.extend_from_slice(why.as_bytes());
    }
    out.push(b'\n');
}

/// One JSON line: the same fields under nginx-like names; `time` is the
/// request's arrival in UTC with milliseconds (RFC 3339,
/// `2026-11-22T03:15:26.042Z`). A request field weir does not know (a head
/// it could not read) is an empty string.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: Option<String>,
    remote_addr: Option<String>,
    method: Cow<'a, str>,
    uri: Cow<'a, str>,
    protocol: &'a str,
    status: u16,
    body_bytes_sent: u64,
    referer: Cow<'a, str>,
    user_agent: Cow<'a, str>,
    host: Cow<'a, str>,
    request_time: f64,
    upstream_addr: String,
    upstream_status: String,
    upstream_response_time: String,
    route_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abort: Option<&'a str>,
}

/// Formats one JSON line (with its newline) into `out`.
pub(super) fn json(rec: &AccessRecord, out: &mut Vec<u8>) {
    let join = |f: &dyn Fn(&super::Attempt, &mut Vec<u8>)| {
        let mut s = Vec::new();
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                s.extend_from_slice(b", ");
            }
            f(a, &mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    };
    let line = JsonLine {
        time: rec.start.map(|s| format_time_ms(wall_clock(s))),
        remote_addr: rec.remote.map(|r| r.ip().to_string()),
        method: String::from_utf8_lossy(rec.field(Field::Method)),
        uri: String::from_utf8_lossy(rec.field(Field::Target)),
        protocol: rec.version,
        status: rec.status,
        body_bytes_sent: rec.body_bytes,
        referer: String::from_utf8_lossy(rec.field(Field::Referer)),
        user_agent: String::from_utf8_lossy(rec.field(Field::UserAgent)),
        host: String::from_utf8_lossy(host(rec)),
        request_time: request_time(rec).as_millis() as f64 / 1000.0,
        upstream_addr: join(&|a, s| s.extend_from_slice(a.node.as_bytes())),
        upstream_status: join(&|a, s| match a.status {
            Some(st) => push_int(s, st),
            None => s.push(b'-'),
        }),
        upstream_response_time: join(&|a, s| Seconds(a.elapsed).push(s)),
        route_id: rec.route_id.as_deref().unwrap_or(""),
        consumer: rec.consumer.as_deref(),
        request_id: rec
            .request_id
            .as_ref()
            .map(|id| String::from_utf8_lossy(id.as_bytes())),
        trace_id: rec
            .trace_id
            .map(|id| String::from_utf8_lossy(&hex32(&id)).into_owned()),
        abort: rec.abort,
    };
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

/// A trace id as W3C writes it: 32 lower-case hex digits.
fn hex32(id: &[u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in id.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// The wall-clock time of `at`, from a per-thread reading of both clocks
/// taken at most a second earlier: one clock read per request instead of two.
fn wall_clock(at: Instant) -> SystemTime {
    thread_local! {
        static BASE: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    BASE.with(|base| {
        let (mono, wall) = match base.get() {
            Some((mono, wall)) if at >= mono && at - mono < Duration::from_secs(1) => (mono, wall),
            _ => {
                let fresh = (Instant::now(), SystemTime::now());
                base.set(Some(fresh));
                fresh
            }
        };
        if at >= mono {
            wall + (at - mono)
        } else {
            wall - (mono - at)
        }
    })
}

/// Writes `$time_local` for a request that started at `at`. The formatted
/// second is cached per thread together with the span of the monotonic clock
/// it covers, so most lines cost one comparison.
fn push_time(at: Instant, out: &mut Vec<u8>) {
    struct Second {
        from: Instant,
        until: Instant,
        text: String,
    }
    thread_local! {
        static CACHE: RefCell<Option<Second>> = const { RefCell::new(None) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let cached = c.as_ref().filter(|s| s.from <= at && at < s.until);
        if let Some(second) = cached {
            out.extend_from_slice(second.text.as_bytes());
            return;
        }
        let wall = wall_clock(at);
        let into_second = wall.duration_since(UNIX_EPOCH).map_or(Duration::ZERO, |d| {
            Duration::from_nanos(u64::from(d.subsec_nanos()))
        });
        let from = at.checked_sub(into_second).unwrap_or(at);
        let second = Second {
            from,
            until: from + Duration::from_secs(1),
            text: format_time(wall),
        };
        out.extend_from_slice(second.text.as_bytes());
        *c = Some(second);
    });
}

/// `22/Nov/2026:03:00:00 +0000` (UTC), as nginx's `$time_local` in UTC.
pub fn format_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `2026-11-22T03:00:00.042Z`: RFC 3339 in UTC, with milliseconds.
pub fn format_time_ms(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::super::record::RequestFields;
    use super::*;
    use std::sync::Arc;

    #[test]
    fn time_is_formatted_like_nginx() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_316_400); // 2026-11-22T03:00:00Z
        assert_eq!(format_time(t), "22/Nov/2026:03:00:00 +0000");
    }

    #[test]
    fn json_time_is_rfc3339_utc_with_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_316_400_042); // 2026-11-22T03:00:00.042Z
        assert_eq!(format_time_ms(t), "2026-11-22T03:00:00.042Z");
        // Truncated, not rounded: the millisecond the instant falls in.
        let t = UNIX_EPOCH + Duration::from_nanos(1_772_323_199_999_999_999);
        assert_eq!(format_time_ms(t), "2026-02-28T23:59:59.999Z");
        assert_eq!(format_time_ms(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    fn seconds(d: Duration) -> String {
        let mut out = Vec::new();
        Seconds(d).push(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn durations_print_as_rounded_seconds() {
        assert_eq!(seconds(Duration::from_micros(12_345)), "0.012");
        assert_eq!(seconds(Duration::from_micros(12_500)), "0.013");
        assert_eq!(seconds(Duration::from_millis(61_005)), "61.005");
        assert_eq!(seconds(Duration::ZERO), "0.000");
    }

    #[test]
    fn the_derived_wall_clock_matches_the_system_clock() {
        // On a thread of its own, so `wall_clock` reads both clocks afresh
        // after `at`. Its answer must lie between a system-clock reading
        // taken before `at` and one taken after it returns: exact, however
        // long the thread is descheduled anywhere in between. The sleep
        // puts `at` well before the clock reads inside, so an offset applied
        // the wrong way would land past `after`.
        std::thread::spawn(|| {
            let before = SystemTime::now();
            let at = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            let derived = wall_clock(at);
            let after = SystemTime::now();
            assert!(
                before <= derived && derived <= after,
                "{derived:?} not within [{before:?}, {after:?}]"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn cached_seconds_match_the_wall_clock() {
        let at = Instant::now();
        for later in [0, 10, 400, 999, 1_000, 1_500, 2_001, 60_000] {
            let t = at + Duration::from_millis(later);
            let mut out = Vec::new();
            push_time(t, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format_time(wall_clock(t)),
                "{later} ms later"
            );
        }
    }

    fn sample() -> AccessRecord {
        let mut r = AccessRecord::recycled();
        r.remote = Some("10.1.2.3:5555".parse().unwrap());
        r.version = "HTTP/1.1";
        r.status = 200;
        r.body_bytes = 12;
        r.route_id = Some(Arc::from("shop"));
        r.set_request(RequestFields {
            method: b"GET",
            target: b"/a?b=\"c\"",
            referer: None,
            user_agent: Some(b"ua\xff\x01"),
            host: Some(b"shop.test:8080"),
        });
        let node: Arc<str> = Arc::from("10.0.0.7:80");
        r.push_attempt(&node, None, Duration::from_millis(3));
        r.push_attempt(&node, Some(200), Duration::from_micros(1_400));
        r
    }

    #[test]
    fn a_text_line_has_every_field_and_escapes_what_could_forge_one() {
        let mut out = Vec::new();
        text(&sample(), &mut out);
        let line = String::from_utf8(out).unwrap();
        let (head, rest) = line.split_once(" - - [").unwrap();
        assert_eq!(head, "10.1.2.3");
        let (_, rest) = rest.split_once("] ").unwrap();
        assert_eq!(
            rest,
            "\"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 12 \"-\" \"ua\\xFF\\x01\" host=shop.test rt=0.000 \
             upstream=10.0.0.7:80, 10.0.0.7:80 ustatus=-, 200 urt=0.003, 0.001 route=shop\n"
        );
    }

    #[test]
    fn a_json_line_carries_the_same_fields() {
        let mut rec = sample();
        rec.start = Some(Instant::now());
        let mut out = Vec::new();
        json(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["remote_addr"], "10.1.2.3");
        assert_eq!(v["uri"], "/a?b=\"c\"");
        assert_eq!(v["host"], "shop.test");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream_addr"], "10.0.0.7:80, 10.0.0.7:80");
        assert_eq!(v["upstream_status"], "-, 200");
        assert_eq!(v["upstream_response_time"], "0.003, 0.001");
        assert_eq!(v["route_id"], "shop");
        let at = rec.start.unwrap();
        assert_eq!(v["time"], format_time_ms(wall_clock(at)));
    }

    #[test]
    fn an_aborted_exchange_says_why_last_in_text_and_in_json() {
        let mut rec = sample();
        rec.abort = Some("send_timeout");
        let mut out = Vec::new();
        text(&rec, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with(" route=shop abort=send_timeout\n"), "{line}");
        let mut out = Vec::new();
        json(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["abort"], "send_timeout");
        let mut out = Vec::new();
        json(&sample(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("abort").is_none(), "{v}");
    }

    #[test]
    fn a_request_weir_could_not_read_shows_dashes_in_text_and_empty_strings_in_json() {
        let mut rec = AccessRecord::recycled();
        rec.remote = Some("10.1.2.3:5555".parse().unwrap());
        rec.status = 408;
        rec.body_bytes = 7;
        rec.set_unread_request(b"GE");
        let mut out = Vec::new();
        text(&rec, &mut out);
        let line = String::from_utf8(out).unwrap();
        let (_, rest) = line.split_once("] ").unwrap();
        assert_eq!(
            rest,
            "\"- - -\" 408 7 \"-\" \"-\" host=- rt=0.000 upstream=- ustatus=- urt=- route=-\n"
        );
        let mut out = Vec::new();
        json(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["method"], "");
        assert_eq!(v["uri"], "");
        assert_eq!(v["protocol"], "");
        assert_eq!(v["status"], 408);
    }
}
