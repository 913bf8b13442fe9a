//! Unit tests of `opentelemetry`.
use super::*;
use crate::testing::{build_error, build_with_metadata, config_error, TestReq};
use serde_json::json;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

#[test]
fn traceparent_parses_as_w3c_writes_it() {
    let p = parse_traceparent(format!("00-{TRACE}-{PARENT}-01").as_bytes()).unwrap();
    assert_eq!(hex(&p.trace_id), TRACE);
    assert_eq!(hex(&p.span_id), PARENT);
    assert!(p.sampled);
    let p = parse_traceparent(format!("00-{TRACE}-{PARENT}-00").as_bytes()).unwrap();
    assert!(!p.sampled);
    // A later version may add fields.
    assert!(parse_traceparent(format!("01-{TRACE}-{PARENT}-01-xyz").as_bytes()).is_some());
    for bad in [
        format!("00-{TRACE}-{PARENT}-01-x"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        format!("00_{TRACE}-{PARENT}-01"),
        "00-abc".into(),
    ] {
        assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn samplers_decide_as_apisix() {
    let id = [0xffu8; 16];
    let low = {
        let mut i = [0u8; 16];
        i[15] = 1;
        i
    };
    let parent = |sampled| Parent {
        trace_id: id,
        span_id: [1; 8],
        sampled,
    };
    let s = |c: Value| sampler(&serde_json::from_value(c).unwrap()).unwrap();
    assert!(!s(json!({})).samples(None, &id));
    assert!(s(json!({"name": "always_on"})).samples(Some(&parent(false)), &id));
    let half = s(json!({"name": "trace_id_ratio", "options": {"fraction": 0.5}}));
    assert!(half.samples(None, &low));
    assert!(!half.samples(None, &id));
    let pb = s(json!({"name": "parent_base", "options": {"root": {"name": "always_on"}}}));
    assert!(pb.samples(None, &id));
    assert!(!pb.samples(Some(&parent(false)), &id));
    assert!(s(json!({"name": "parent_base"})).samples(Some(&parent(true)), &id));
    assert!(!s(json!({"name": "parent_base"})).samples(None, &id));
}

#[test]
fn the_upstream_gets_a_traceparent_naming_the_new_span() {
    let p =
        build_with_metadata(&SPEC, json!({"sampler": {"name": "always_off"}}), json!({})).unwrap();
    let out = TestReq::get("/a")
        .header("traceparent", &format!("00-{TRACE}-{PARENT}-01"))
        .run_parts(|ctx| p.rewrite(ctx)); // the span id is random
    let sent = out.upstream("traceparent").flatten().unwrap();
    assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
    assert!(sent.ends_with("-00"), "unsampled: {sent}");
    assert!(!sent.contains(PARENT), "{sent}");
}

#[test]
fn a_request_id_of_32_hex_digits_becomes_the_trace_id() {
    assert_eq!(
        request_id_trace(TRACE.to_uppercase().as_bytes()).map(|i| hex(&i)),
        Some(TRACE.to_owned())
    );
    assert_eq!(request_id_trace(b"not-an-id"), None);
    assert_eq!(request_id_trace("0".repeat(32).as_bytes()), None);
    let p =
        build_with_metadata(&SPEC, json!({}), json!({"trace_id_source": "x-request-id"})).unwrap();
    let out = TestReq::get("/a")
        .header("x-request-id", TRACE)
        .run_parts(|ctx| p.rewrite(ctx));
    let sent = out.upstream("traceparent").flatten().unwrap();
    assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
}

#[test]
fn bad_configurations_name_the_field() {
    for (conf, path) in [
        (json!({"sampler": {"name": "sometimes"}}), "sampler.name"),
        (
            json!({"sampler": {"name": "trace_id_ratio", "options": {"fraction": 1.5}}}),
            "sampler.options.fraction",
        ),
        (
            json!({"sampler": {"name": "parent_base", "options": {"root": {"name": "trace_id_ratio", "options": {"fraction": -1}}}}}),
            "sampler.options.root.options.fraction",
        ),
        (
            json!({"sampler": {"name": "parent_base", "options": {"root": {"name": "parent_base"}}}}),
            "sampler.options.root.name",
        ),
        (json!({"sampler": {"nme": "always_on"}}), "sampler"),
        (
            json!({"additional_attributes": [""]}),
            "additional_attributes[0]",
        ),
        (json!({"endpoint": "x"}), ""),
    ] {
        let e = config_error(&SPEC, conf.clone());
        assert!(e.path.starts_with(path), "{conf}: {e}");
    }
    for (meta, path) in [
        (
            json!({"collector": {"address": "grpcs://c:4317"}}),
            "collector.address",
        ),
        (json!({"collector": {"address": "c"}}), "collector.address"),
        (json!({"collector": {"adress": "c:1"}}), "collector"),
        (json!({"trace_id_source": "header"}), "trace_id_source"),
        (json!({"resource": {"a": [1]}}), "resource.a"),
        (
            json!({"batch_span_processor": {"max_queue_size": 0}}),
            "batch_span_processor.max_queue_size",
        ),
        (
            json!({"collector": {"request_headers": {"bad name": "x"}}}),
            "collector.request_headers.bad name",
        ),
    ] {
        let e = build_error(build_with_metadata(&SPEC, json!({}), meta.clone()));
        assert!(
            e.contains(&format!("plugin_metadata.opentelemetry.{path}")),
            "{meta}: {e}"
        );
    }
    let e = build_error(build_with_metadata(
        &SPEC,
        json!({}),
        json!({"collector": {"address": "grpcs://c:4317"}}),
    ));
    assert!(e.contains("with TLS is not supported"), "{e}");
    // Plain gRPC is an option.
    assert!(build_with_metadata(
        &SPEC,
        json!({}),
        json!({"collector": {"address": "grpc://c:4317"}})
    )
    .is_ok());
}
