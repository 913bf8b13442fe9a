use super::*;

/// Re-frames `parts` (the body as it arrives, read by read) the way the
/// fast path does: what is not stepped over stays for the next read.
fn reframe_parts(parts: &[&[u8]]) -> Result<(Vec<u8>, bool), ReframeError> {
    let mut r = Reframer::default();
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        pending.extend_from_slice(p);
        loop {
            match r.step(&pending)? {
                Step::Pass(n) => {
                    out.extend_from_slice(&pending[..n]);
                    pending.drain(..n);
                }
                Step::Replace { consumed, with } => {
                    out.extend_from_slice(with.as_bytes());
                    pending.drain(..consumed);
                }
                Step::NeedMore | Step::Done => break,
            }
        }
    }
    Ok((out, r.is_done()))
}

fn reframe(body: &[u8]) -> Result<Vec<u8>, ReframeError> {
    let (out, done) = reframe_parts(&[body])?;
    assert!(done, "not complete: {:?}", String::from_utf8_lossy(body));
    Ok(out)
}

#[test]
fn a_canonical_body_passes_whole_in_one_step() {
    let body = b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
    let mut r = Reframer::default();
    let n = body.len() - 4;
    assert_eq!(r.step(body), Ok(Step::Pass(n)));
    assert!(r.is_done());
    assert_eq!(r.step(&body[n..]), Ok(Step::Done));
}

#[test]
fn heads_are_rewritten_and_extensions_dropped() {
    let body = b"005;ext=1\r\nhello\r\n1 ; a=b ;c\r\nx\r\n0000;last\r\n\r\n";
    assert_eq!(
        reframe(body).unwrap(),
        b"5\r\nhello\r\n1\r\nx\r\n0\r\n\r\n".to_vec()
    );
}

#[test]
fn forbidden_trailers_are_dropped_and_others_kept() {
    let body = b"0\r\nContent-Length: 5\r\nX-A: 1\r\ntransfer-encoding: chunked\r\nHost: evil\r\nTrailer: x\r\nX-B: 2\r\n\r\n";
    assert_eq!(
        reframe(body).unwrap(),
        b"0\r\nX-A: 1\r\nX-B: 2\r\n\r\n".to_vec()
    );
}

#[test]
fn malformed_framing_is_refused() {
    use ReframeError::*;
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(64 * 1024));
    let cases: Vec<(&[u8], ReframeError)> = vec![
        (&b"5 \r\nhello\r\n0\r\n\r\n"[..], BadSize),
        (&b"5\t\r\nhello\r\n0\r\n\r\n"[..], BadSize),
        (&b"5\r;a\r\nhello\r\n0\r\n\r\n"[..], BadSize),
        (&b"00000000000000005\r\nhello\r\n0\r\n\r\n"[..], SizeTooLong),
        (&b"11111111111111111\r\n"[..], SizeTooLong),
        (&b"5;a=\x00\r\nhello\r\n0\r\n\r\n"[..], BadExtension),
        (long_ext.as_bytes(), LineTooLong),
        (&b"x\r\n"[..], BadSize),
        (&b"\r\n"[..], BadSize),
        (&b"5\nhello\r\n0\r\n\r\n"[..], MissingCrlf),
        (&b"5\r\nhelloX\r\n0\r\n\r\n"[..], MissingCrlf),
        (&b"0\r\nbad\r\n\r\n"[..], BadTrailer),
        (&b"0\r\nX-A: 1\r\n b\r\n\r\n"[..], FoldedTrailer),
        (&b"0\r\nX A: 1\r\n\r\n"[..], BadTrailer),
        (&b"0\r\n: 1\r\n\r\n"[..], BadTrailer),
        (&b"0\r\nX-A: a\rb\r\n\r\n"[..], BadTrailer),
        (&b"0\r\nX-A: 1\n\r\n"[..], MissingCrlf),
    ];
    for (body, want) in cases {
        assert_eq!(
            reframe_parts(&[body]).map(|_| ()),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    let big = format!("0\r\nX-A: {}\r\n\r\n", "v".repeat(MAX_TRAILERS));
    assert_eq!(
        reframe_parts(&[big.as_bytes()]).map(|_| ()),
        Err(TrailersTooLarge)
    );
}

#[test]
fn every_split_gives_the_same_output() {
    let body = b"0a;x=y\r\n0123456789\r\n3 ;z\r\nabc\r\n0\r\nHost: x\r\nX-T: 1\r\n\r\n";
    let whole = reframe(body).unwrap();
    assert_eq!(
        whole,
        b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n".to_vec()
    );
    for cut in 0..=body.len() {
        let (out, done) = reframe_parts(&[&body[..cut], &body[cut..]]).unwrap();
        assert!(done, "cut at {cut}");
        assert_eq!(out, whole, "cut at {cut}");
    }
    for cut in 0..body.len() {
        let (_, done) = reframe_parts(&[&body[..cut]]).unwrap();
        assert!(!done, "done too early at {cut}");
    }
}

#[test]
fn a_chunk_over_31_bits_is_split() {
    // 0x1_0000_0005 bytes declared: a node reading 32 bits would see 5.
    let mut r = Reframer::default();
    let head = b"100000005\r\n";
    let step = r.step(head).unwrap();
    let Step::Replace { consumed, with } = step else {
        panic!("{step:?}");
    };
    assert_eq!(consumed, head.len());
    assert_eq!(with.as_bytes(), b"7fffffff\r\n");
    // After 0x7fffffff bytes, the chunk goes on as a new one.
    let data = vec![b'x'; 1 << 20];
    let mut sent: u64 = 0;
    while sent < MAX_OUT_CHUNK {
        let n = (MAX_OUT_CHUNK - sent).min(data.len() as u64) as usize;
        assert_eq!(r.step(&data[..n]), Ok(Step::Pass(n)));
        sent += n as u64;
    }
    let Ok(Step::Replace { consumed: 0, with }) = r.step(&data[..10]) else {
        panic!("no split");
    };
    assert_eq!(with.as_bytes(), b"\r\n7fffffff\r\n");
}

#[test]
fn check_and_reframe_into_stop_where_more_is_needed() {
    let raw = b"005\r\nhello\r\n00";
    let (used, r) = check(raw).unwrap();
    assert_eq!(used, 12);
    assert!(!r.is_done());
    let mut out = Vec::new();
    reframe_into(raw, &mut out).unwrap();
    assert_eq!(out, b"5\r\nhello\r\n".to_vec());
}
