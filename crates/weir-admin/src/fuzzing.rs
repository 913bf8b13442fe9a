//! What the `admin_body` fuzz target does with one input, shared by the
//! target (`fuzz/fuzz_targets/admin_body.rs`) and the regular tests that
//! replay its corpus (`tests/fuzz_regressions.rs`).
//!
//! An input is two selector bytes and a request body: the first picks the
//! resource type, the second the method, the id and the PATCH sub-path. The
//! body goes through what an Admin API write does before it is stored:
//! JSON decoding, APISIX's write rules ([`ops::plan`]), the merge with the
//! file's resources and the configuration's validation, and
//! `schema/validate`. Any of them may refuse the input; none may panic.

use std::sync::{Arc, OnceLock};

use http::Method;
use serde_json::{json, Value};

use crate::error::EngineError;
use crate::hub::{ConfigHub, Engine};
use crate::kind::{Kind, KINDS};
use crate::ops::{self, Write};
use crate::{merge, View};

/// The file the fuzzed writes meet: resources to refer to, and one of
/// each kind that an id in [`IDS`] collides with.
const FILE: &str = r#"
routes:
  - id: file-route
    uri: /file
    upstream_id: file-up
upstreams:
  - id: file-up
    type: roundrobin
    nodes: {"127.0.0.1:1980": 1}
consumers:
  - username: alice
    plugins: {key-auth: {key: alice-key}}
"#;

const METHODS: [Method; 4] = [Method::PUT, Method::POST, Method::PATCH, Method::DELETE];
const IDS: [Option<&str>; 6] = [
    None,
    Some("1"),
    Some("file-route"),
    Some("alice"),
    Some(""),
    Some("a/b"),
];
const SUB_PATHS: [Option<&str>; 4] = [
    None,
    Some("plugins"),
    Some("plugins/key-auth"),
    Some("upstream/nodes"),
];

/// An engine that accepts every configuration (the data plane's own checks
/// are not under test here; the configuration model's are).
struct AcceptAll;

impl Engine for AcceptAll {
    type Prepared = ();
    fn prepare(&self, _config: weir_config::Config) -> Result<(), EngineError> {
        Ok(())
    }
    fn install(&self, _prepared: ()) -> Result<(), EngineError> {
        Ok(())
    }
    fn plugin_names(&self) -> Vec<String> {
        vec!["key-auth".into(), "limit-count".into()]
    }
}

/// The hub `schema/validate` runs against (the [`FILE`]), and the view
/// writes are planned against: the hub's, plus Admin API resources with id
/// `1` (and the consumer `bob`) for PATCH and DELETE to find.
fn fixture() -> Option<&'static (ConfigHub, View)> {
    static FIXTURE: OnceLock<Option<(ConfigHub, View)>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let file = weir_config::load_str(FILE, "fuzz").ok()?;
            let (hub, _) = ConfigHub::open(file).ok()?;
            let served = hub.view();
            let mut state = (*served.state).clone();
            let entries = [
                (Kind::Upstream, "1", json!({"id": "1", "type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}})),
                (Kind::Service, "1", json!({"id": "1", "upstream_id": "1"})),
                (Kind::Route, "1", json!({"id": "1", "uri": "/one", "service_id": "1", "plugins": {"limit-count": {"count": 1, "time_window": 60}}})),
                (Kind::PluginConfig, "1", json!({"id": "1", "plugins": {}})),
                (Kind::GlobalRule, "1", json!({"id": "1", "plugins": {}})),
                (Kind::Consumer, "bob", json!({"username": "bob"})),
            ];
            for (kind, id, value) in entries {
                ops::insert_unchecked(&mut state, kind, None, id, value).ok()?;
            }
            let view = View {
                file: served.file.clone(),
                items: served.items.clone(),
                state: Arc::new(state),
                left_out: Vec::new(),
            };
            Some((hub, view))
        })
        .as_ref()
}

/// Whether the fixture every input meets loaded (the replay tests assert
/// it, so a fixture that drifted from the schema cannot turn every input
/// into a no-op).
pub fn fixture_ready() -> bool {
    fixture().is_some()
}

/// Runs one input (see the module's documentation).
pub fn admin_body(data: &[u8]) {
    let [kind, select, body @ ..] = data else {
        return;
    };
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let select = usize::from(*select);
    let method = METHODS[select % METHODS.len()].clone();
    let id = IDS[(select / 4) % IDS.len()].map(str::to_owned);
    let sub_path = SUB_PATHS[(select / 24) % SUB_PATHS.len()].map(str::to_owned);
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some((hub, view)) = fixture() else {
        return;
    };
    let owner = (kind == Kind::Credential).then(|| "alice".to_owned());
    let write = Write {
        method,
        kind,
        owner,
        id,
        sub_path,
        body: Some(body.clone()),
        force: select & 0x80 != 0,
    };
    if let Ok(plan) = ops::plan(view, write, 1) {
        check(view, &plan.state, &plan.key);
    }
    let _ = hub.validate(&AcceptAll, kind, Some(body));
}

/// The merge and the validation a planned write goes through.
fn check(view: &View, state: &crate::state::AdminState, key: &str) {
    if let Ok(merged) = merge::merge(&view.file, &view.items, state, Some(key)) {
        if let Err(errors) = weir_config::validate_config(&merged.config, &weir_config::AnyPlugin) {
            let _ = merge::describe(&errors, &merged.places, key);
        }
    }
}
