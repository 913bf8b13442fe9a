//! The re-framing of chunked request bodies (`weir_http::reframe`), checked
//! on the `h1_chunked` fuzz target's inputs.

use weir_http::chunked::{self, ChunkedScanner};
use weir_http::reframe::{forbidden_in_trailers, Reframer, Step, MAX_OUT_CHUNK};

use super::show;

/// How a re-framing ended: the output, the input bytes stepped over, and
/// whether the body is complete; or the error.
type Outcome = Result<(Vec<u8>, usize, bool), weir_http::reframe::ReframeError>;

/// Re-frames `parts` read by read, as the fast path does: what a step
/// leaves stays buffered for the next read.
fn run(parts: &[&[u8]]) -> Outcome {
    let mut r = Reframer::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut used = 0;
    for p in parts {
        pending.extend_from_slice(p);
        loop {
            match r.step(&pending)? {
                Step::Pass(n) => {
                    assert!(n > 0 && n <= pending.len(), "pass {n} of {}", pending.len());
                    out.extend_from_slice(&pending[..n]);
                    pending.drain(..n);
                    used += n;
                }
                Step::Replace { consumed, with } => {
                    assert!(consumed <= pending.len());
                    out.extend_from_slice(with.as_bytes());
                    pending.drain(..consumed);
                    used += consumed;
                }
                Step::NeedMore => {
                    assert!(!r.is_done());
                    break;
                }
                Step::Done => {
                    assert!(r.is_done());
                    return Ok((out, used, true));
                }
            }
        }
    }
    Ok((out, used, r.is_done()))
}

/// Checks that every split of `data` re-frames like the whole, and that an
/// accepted body goes out canonical (sizes without leading zeros and at
/// most [`MAX_OUT_CHUNK`], no extension, no forbidden trailer field), with
/// the same data and the same end as weir's lenient scanner reads in the
/// input.
pub fn reframed(data: &[u8]) {
    let ctx = || show(&data[..data.len().min(4096)]);
    let whole = run(&[data]);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "byte by byte: {}", ctx());
    for cut in [data.len() / 3, data.len() / 2] {
        assert_eq!(
            run(&[&data[..cut], &data[cut..]]),
            whole,
            "cut at {cut}: {}",
            ctx()
        );
    }
    let Ok((out, used, true)) = whole else {
        return;
    };
    // The lenient scanner reads the same body in the input...
    let mut scanner = ChunkedScanner::default();
    assert_eq!(scanner.scan(data), Ok(used), "input end: {}", ctx());
    assert!(scanner.is_done(), "{}", ctx());
    // ... and the output is the same data, canonically framed.
    let mut again = ChunkedScanner::default();
    assert_eq!(again.scan(&out), Ok(out.len()), "output: {}", show(&out));
    assert!(again.is_done());
    assert_eq!(
        chunked::decode(&out),
        chunked::decode(&data[..used]),
        "data: {}",
        ctx()
    );
    check_canonical(&out);
}

fn check_canonical(out: &[u8]) {
    let mut i = 0;
    loop {
        let lf = i + out[i..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a complete size line");
        let line = &out[i..lf - 1];
        assert!(
            line.iter().all(u8::is_ascii_hexdigit) && !line.is_empty(),
            "size line {}",
            show(line)
        );
        assert!(
            line == b"0" || line[0] != b'0',
            "leading zero: {}",
            show(line)
        );
        let size =
            u64::from_str_radix(std::str::from_utf8(line).expect("hex"), 16).expect("a size");
        assert!(size <= MAX_OUT_CHUNK, "size {size:#x}");
        i = lf + 1;
        if size == 0 {
            break;
        }
        i += usize::try_from(size).expect("size") + 2;
    }
    while &out[i..i + 2] != b"\r\n" {
        let lf = i + out[i..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a trailer line");
        let line = &out[i..lf - 1];
        let colon = line.iter().position(|&b| b == b':').expect("a colon");
        assert!(
            !forbidden_in_trailers(&line[..colon]),
            "forbidden trailer {}",
            show(line)
        );
        i = lf + 1;
    }
}
