//! The fuzz target for node response heads (`h1_response_head`): the
//! client's head weir writes from a node's, checked against `httparse`.

use weir_http::fields::{classify, Field};
use weir_http::RawResponseHead;

use super::super::request::{parse_length, trim, MAX_HEADERS};
use super::super::response::{self, ResponseHead};
use super::super::BodyFraming;
use super::{cuts, eq, harness, is_hop_by_hop, show, ConnectionRef};
use crate::plugin_run::ResponsePlugins;

/// Parses `data` as a node's response head with [`response::parse`] (as the
/// answer to a GET and to a HEAD, with and without `Via`, the client asking
/// to close or not, with and without a route's response edits) and checks
/// that an accepted head:
///
/// - is exactly the head `httparse` reads, every shorter prefix being
///   `Partial`, and not a `101`;
/// - is framed as RFC 9112 §6.3 says (no body for HEAD, 1xx, 204 and 304;
///   else `chunked` last in `Transfer-Encoding`, else until close; else one
///   valid `Content-Length` or equal ones; else until close), a
///   `Connection: close` (or HTTP/1.0 without `keep-alive`) making the node
///   connection not reusable;
///
/// and that the client's head weir writes parses with `httparse` to its
/// last byte, keeps the status, has at most one framing field and it
/// announces weir's framing (none and `Connection: close` when the body runs
/// until close), no hop-by-hop field but weir's own `Connection: close`, no
/// field named by the node's `Connection`, and no field that is neither the
/// node's nor weir's own.
pub fn response_head(data: &[u8]) {
    let h = harness();
    // A route with plugins whose request phases left response edits.
    let req = &h.plugin_request;
    let (Some(route), Some(run)) = (req.route.as_deref(), req.plugins.as_deref()) else {
        unreachable!("checked in harness()");
    };
    let plugins = run.response(route);
    for (head_request, close_client, via, plugins) in [
        (false, false, false, None),
        (true, false, true, None),
        (false, true, false, Some(&plugins)),
        (true, false, false, Some(&plugins)),
    ] {
        check_response(data, head_request, close_client, via, plugins);
    }
}

fn check_response(
    data: &[u8],
    head_request: bool,
    close_client: bool,
    via: bool,
    plugins: Option<&ResponsePlugins<'_>>,
) {
    let mut out = Vec::new();
    let parsed = response::parse(data, head_request, close_client, via, plugins, &mut out);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut node = httparse::Response::new(&mut storage);
    let reference = node.parse(data);
    let resp = match parsed {
        ResponseHead::Partial => {
            assert!(
                matches!(reference, Ok(httparse::Status::Partial)),
                "weir waits for more of a head httparse reads as {reference:?}: {}",
                show(data)
            );
            return;
        }
        ResponseHead::Invalid(_) => return,
        ResponseHead::Ready(r) => r,
    };
    let flags = format!(
        "(HEAD {head_request}, close {close_client}, via {via}, plugins {})",
        plugins.is_some()
    );
    let ctx = || format!("{flags} {}", show(&data[..resp.head_len.min(data.len())]));
    let show_all = || format!("client head {}\nfor {}", show(&out), ctx());
    assert_eq!(
        reference,
        Ok(httparse::Status::Complete(resp.head_len)),
        "head length: {}",
        ctx()
    );
    for cut in cuts(resp.head_len) {
        let mut scratch = Vec::new();
        assert!(
            matches!(
                response::parse(
                    &data[..cut],
                    head_request,
                    close_client,
                    via,
                    plugins,
                    &mut scratch
                ),
                ResponseHead::Partial
            ),
            "the first {cut} bytes of an accepted head are not Partial: {}",
            ctx()
        );
    }
    let status = node.code.expect("complete");
    assert_eq!(resp.status, status);
    assert_ne!(status, 101, "a 101 is accepted: {}", ctx());
    let version = node.version.expect("complete");

    // Framing, per RFC 9112 §6.3.
    let interim = (100..200).contains(&status);
    let no_body = head_request || interim || status == 204 || status == 304;
    let te: Vec<&[u8]> = node
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::TransferEncoding)
        .map(|h| h.value)
        .collect();
    let lengths: Vec<Option<u64>> = node
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::ContentLength)
        .map(|h| parse_length(h.value))
        .collect();
    let want = if no_body {
        BodyFraming::Length(0)
    } else if let Some(last) = te.last() {
        // The final coding of the last field (as hyper).
        let last = trim(last).rsplit(|b| *b == b',').next().map(trim);
        if last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else if lengths.is_empty() {
        BodyFraming::UntilClose
    } else {
        let first = lengths[0];
        assert!(
            first.is_some() && lengths.iter().all(|l| *l == first),
            "accepted with invalid or conflicting Content-Length: {}",
            ctx()
        );
        BodyFraming::Length(first.unwrap_or_default())
    };
    assert_eq!(resp.body, want, "framing: {}", ctx());
    let connection = ConnectionRef::of(node.headers);
    let node_close = connection.close || (version == 0 && !connection.keep_alive);
    assert!(
        !(node_close || want == BodyFraming::UntilClose) || !resp.node_keeps_alive,
        "the node connection is kept after it said close: {}",
        ctx()
    );
    assert_eq!(
        resp.close_client,
        close_client || want == BodyFraming::UntilClose,
        "{}",
        ctx()
    );

    // The client's head.
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS + 64];
    let mut client = httparse::Response::new(&mut storage);
    match client.parse(&out) {
        Ok(httparse::Status::Complete(n)) if n == out.len() => {}
        other => panic!("{other:?}: {}", show_all()),
    }
    assert_eq!(client.version, Some(1), "{}", show_all());
    assert_eq!(client.code, Some(status), "{}", show_all());
    let out_te: Vec<&[u8]> = client
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::TransferEncoding)
        .map(|h| h.value)
        .collect();
    let out_cl: Vec<&[u8]> = client
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::ContentLength)
        .map(|h| h.value)
        .collect();
    assert!(
        out_te.len() + out_cl.len() <= 1,
        "several framing fields: {}",
        show_all()
    );
    for v in &out_te {
        assert_eq!(*v, b"chunked", "{}", show_all());
    }
    for v in &out_cl {
        assert!(parse_length(v).is_some(), "{}", show_all());
    }
    let close_sent = client
        .headers
        .iter()
        .any(|h| classify(h.name) == Field::Connection);
    if !no_body {
        let announced = match (out_te.as_slice(), out_cl.as_slice()) {
            ([_], []) => BodyFraming::Chunked,
            ([], [v]) => BodyFraming::Length(parse_length(v).unwrap_or_default()),
            _ => BodyFraming::UntilClose,
        };
        assert_eq!(announced, resp.body, "announced framing: {}", show_all());
    }
    if !interim {
        assert_eq!(close_sent, resp.close_client, "{}", show_all());
    }

    // Fields: the node's minus hop-by-hop ones, plus weir's own.
    let additions: Vec<String> = plugins
        .filter(|_| !interim)
        .map(|p| {
            let view = RawResponseHead {
                status,
                fields: node.headers,
            };
            p.decide(&view, true)
                .edits
                .additions()
                .map(|(n, _)| n.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    for h in client.headers.iter() {
        let class = classify(h.name);
        let own = match class {
            Field::Connection => {
                assert_eq!(h.value, b"close", "{}", show_all());
                true
            }
            Field::TransferEncoding | Field::Date => true,
            Field::ContentLength => true,
            _ => {
                (via && eq(h.name, "via") && h.value == b"1.1 weir")
                    || additions.iter().any(|a| eq(a, h.name))
            }
        };
        assert!(
            class == Field::Connection || !is_hop_by_hop(h.name),
            "hop-by-hop {}: {}",
            h.name,
            show_all()
        );
        let from_node = node
            .headers
            .iter()
            .any(|n| n.name == h.name && n.value == h.value);
        if !own {
            assert!(
                from_node,
                "{} is neither the node's nor weir's: {}",
                h.name,
                show_all()
            );
            assert!(
                !connection.names(h.name),
                "{}, named by Connection, passed on: {}",
                h.name,
                show_all()
            );
        }
    }
}
