//! The object store: an MVCC-ish map per resource kind, a global etcd-like revision
//! counter, a bounded event history (the "watch cache") and the watcher registry.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use super::status::{new_uid, now_rfc3339};

/// The resources the fake API server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `v1` `Endpoints` (`/api/v1/endpoints`).
    Endpoints,
    /// `discovery.k8s.io/v1` `EndpointSlice` (`/apis/discovery.k8s.io/v1/endpointslices`).
    EndpointSlices,
}

impl ResourceKind {
    /// Both kinds.
    pub const ALL: [ResourceKind; 2] = [ResourceKind::Endpoints, ResourceKind::EndpointSlices];

    /// The object `kind`, e.g. `EndpointSlice`.
    pub fn kind(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "Endpoints",
            ResourceKind::EndpointSlices => "EndpointSlice",
        }
    }

    /// The list `kind`, e.g. `EndpointSliceList`.
    pub fn list_kind(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "EndpointsList",
            ResourceKind::EndpointSlices => "EndpointSliceList",
        }
    }

    /// The `apiVersion`, e.g. `discovery.k8s.io/v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "v1",
            ResourceKind::EndpointSlices => "discovery.k8s.io/v1",
        }
    }

    /// The API group (`""` for the core group).
    pub fn group(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "",
            ResourceKind::EndpointSlices => "discovery.k8s.io",
        }
    }

    /// The plural resource name used in URLs and RBAC.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "endpoints",
            ResourceKind::EndpointSlices => "endpointslices",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            ResourceKind::Endpoints => 0,
            ResourceKind::EndpointSlices => 1,
        }
    }

    fn qualified_kind(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "Endpoints",
            ResourceKind::EndpointSlices => "EndpointSlice.discovery.k8s.io",
        }
    }
}

/// Type of a stored change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change in the store (or a synthetic ADDED for an initial watch listing).
#[derive(Debug)]
pub(crate) struct StoreEvent {
    pub(crate) rv: u64,
    pub(crate) kind: ResourceKind,
    pub(crate) namespace: String,
    pub(crate) ty: EventType,
    /// New state; for DELETED the last state carrying the deletion resourceVersion.
    pub(crate) object: Arc<Value>,
    /// State before the change (None for ADDED).
    pub(crate) prev: Option<Arc<Value>>,
}

/// What a newly registered watcher gets.
pub(crate) struct WatchRegistration {
    /// Events to send first (history replay, or synthetic ADDED for a fresh watch).
    pub(crate) initial: Vec<Arc<StoreEvent>>,
    /// Every later change of any kind, in revision order.
    pub(crate) rx: mpsc::UnboundedReceiver<Arc<StoreEvent>>,
    /// Revision the watcher is known to be at after `initial`.
    pub(crate) start_rv: u64,
}

pub(crate) type Snapshot = BTreeMap<String, Arc<Value>>;

pub(crate) struct Store {
    rv: u64,
    /// Watches from `R >= floor` and snapshots at `R >= floor` can be served.
    floor: u64,
    objects: [Snapshot; 2],
    history: VecDeque<Arc<StoreEvent>>,
    history_limit: usize,
    watchers: Vec<mpsc::UnboundedSender<Arc<StoreEvent>>>,
    reject_loopback: bool,
    rv_tx: watch::Sender<u64>,
}

/// Etcd key order: `namespace/name`.
pub(crate) fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

impl Store {
    pub(crate) fn new(initial_rv: u64, history_limit: usize, reject_loopback: bool) -> Store {
        Store {
            rv: initial_rv,
            floor: initial_rv,
            objects: [Snapshot::new(), Snapshot::new()],
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            watchers: Vec::new(),
            reject_loopback,
            rv_tx: watch::channel(initial_rv).0,
        }
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn subscribe_rv(&self) -> watch::Receiver<u64> {
        self.rv_tx.subscribe()
    }

    pub(crate) fn get(&self, kind: ResourceKind, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects[kind.index()].get(&key_of(ns, name)).cloned()
    }

    /// Creates or replaces an object; returns its new resourceVersion.
    pub(crate) fn apply(&mut self, kind: ResourceKind, mut obj: Value) -> Result<u64, String> {
        let (Some(ns), Some(name)) = (
            meta_str(&obj, "namespace").map(str::to_string),
            meta_str(&obj, "name").map(str::to_string),
        ) else {
            return Err(format!(
                "{} is invalid: metadata.name and metadata.namespace are required",
                kind.qualified_kind()
            ));
        };
        if ns.is_empty() || name.is_empty() {
            return Err(format!(
                "{} \"{name}\" is invalid: metadata.name/namespace: Required value",
                kind.qualified_kind()
            ));
        }
        normalize(kind, &mut obj);
        if self.reject_loopback {
            if let Some(err) = loopback_error(kind, &obj) {
                return Err(format!(
                    "{} \"{name}\" is invalid: {err}",
                    kind.qualified_kind()
                ));
            }
        }
        let key = key_of(&ns, &name);
        let prev = self.objects[kind.index()].get(&key).cloned();
        let meta = obj
            .as_object_mut()
            .and_then(|o| o.get_mut("metadata"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| "metadata must be an object".to_string())?;
        let prev_meta = prev.as_ref().and_then(|p| p.get("metadata"));
        for field in ["uid", "creationTimestamp"] {
            let inherited = prev_meta.and_then(|m| m.get(field)).cloned();
            match inherited {
                Some(v) => {
                    meta.insert(field.into(), v);
                }
                None if meta.get(field).is_none_or(Value::is_null) => {
                    let v = if field == "uid" {
                        new_uid()
                    } else {
                        now_rfc3339()
                    };
                    meta.insert(field.into(), Value::String(v));
                }
                None => {}
            }
        }
        if kind == ResourceKind::EndpointSlices {
            let prev_gen = prev_meta
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64);
            let spec_changed = prev.as_ref().is_none_or(|p| spec_of(p) != spec_of(&obj));
            let generation = match prev_gen {
                Some(g) if spec_changed => g + 1,
                Some(g) => g,
                None => obj
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
            };
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("generation".into(), generation.into());
            }
        }
        // A no-op update does not bump the revision nor emit an event.
        if let Some(p) = &prev {
            let mut cmp = obj.clone();
            if let Some(m) = cmp.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert(
                    "resourceVersion".into(),
                    p.pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
            if &cmp == p.as_ref() {
                return Ok(self.rv);
            }
        }
        self.rv += 1;
        let rv = self.rv;
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let object = Arc::new(obj);
        self.objects[kind.index()].insert(key, object.clone());
        let ty = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(StoreEvent {
            rv,
            kind,
            namespace: ns,
            ty,
            object,
            prev,
        });
        Ok(rv)
    }

    /// Deletes an object; returns the deletion revision, or None if it did not exist.
    pub(crate) fn delete(&mut self, kind: ResourceKind, ns: &str, name: &str) -> Option<u64> {
        let prev = self.objects[kind.index()].remove(&key_of(ns, name))?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = prev.as_ref().clone();
        if let Some(m) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        self.record(StoreEvent {
            rv,
            kind,
            namespace: ns.to_string(),
            ty: EventType::Deleted,
            object: Arc::new(last),
            prev: Some(prev),
        });
        Some(rv)
    }

    fn record(&mut self, ev: StoreEvent) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        self.watchers.retain(|w| w.send(ev.clone()).is_ok());
        self.rv_tx.send_replace(self.rv);
    }

    /// Forgets all history: older watches get 410 and older continue tokens expire.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }

    /// Moves the revision forward without changes (e.g. other resources were written).
    pub(crate) fn bump(&mut self, by: u64) {
        self.rv += by;
        self.rv_tx.send_replace(self.rv);
    }

    /// Drops every registered watcher channel (their streams end).
    pub(crate) fn drop_watchers(&mut self) {
        self.watchers.clear();
    }

    /// The objects of `kind` as they were at revision `rv`, or None if compacted away.
    pub(crate) fn snapshot_at(&self, kind: ResourceKind, rv: u64) -> Option<Snapshot> {
        if rv < self.floor {
            return None;
        }
        let mut snap = self.objects[kind.index()].clone();
        for ev in self.history.iter().rev() {
            if ev.rv <= rv {
                break;
            }
            if ev.kind != kind {
                continue;
            }
            let (Some(ns), Some(name)) = (
                meta_str(&ev.object, "namespace"),
                meta_str(&ev.object, "name"),
            ) else {
                continue;
            };
            let key = key_of(ns, name);
            match &ev.prev {
                Some(p) => snap.insert(key, p.clone()),
                None => snap.remove(&key),
            };
        }
        Some(snap)
    }

    /// Current objects of `kind`.
    pub(crate) fn current(&self, kind: ResourceKind) -> &Snapshot {
        &self.objects[kind.index()]
    }

    /// Registers a watcher. `from = None` means "start at the current state" (synthetic
    /// ADDED events); `Some(r)` replays every change after `r`. `Err(floor)` if `r` is
    /// older than the retained history.
    pub(crate) fn register_watch(
        &mut self,
        kind: ResourceKind,
        from: Option<u64>,
    ) -> Result<WatchRegistration, u64> {
        let initial = match from {
            None => self.objects[kind.index()]
                .values()
                .map(|o| {
                    Arc::new(StoreEvent {
                        rv: self.rv,
                        kind,
                        namespace: meta_str(o, "namespace").unwrap_or_default().to_string(),
                        ty: EventType::Added,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Some(r) if r < self.floor => return Err(self.floor),
            Some(r) => self.history.iter().filter(|e| e.rv > r).cloned().collect(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(tx);
        Ok(WatchRegistration {
            initial,
            rx,
            start_rv: from.unwrap_or(0).max(self.rv),
        })
    }
}

/// Everything except metadata (what bumps `generation`).
fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
    }
    v
}

fn is_empty_or_null(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Applies the API server's defaulting and serialization rules (`omitempty` etc.).
pub(crate) fn normalize(kind: ResourceKind, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    o.insert("kind".into(), kind.kind().into());
    o.insert("apiVersion".into(), kind.api_version().into());
    if !o.get("metadata").is_some_and(Value::is_object) {
        o.insert("metadata".into(), Value::Object(Map::new()));
    }
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|_, v| !v.is_null());
    }
    match kind {
        ResourceKind::Endpoints => {
            if let Some(Value::Array(subsets)) = o.get_mut("subsets") {
                for ss in subsets.iter_mut().filter_map(Value::as_object_mut) {
                    for f in ["addresses", "notReadyAddresses", "ports"] {
                        if is_empty_or_null(ss.get(f)) {
                            ss.remove(f);
                        }
                    }
                    default_ports(ss.get_mut("ports"), false);
                }
            }
            if is_empty_or_null(o.get("subsets")) {
                o.remove("subsets");
            }
        }
        ResourceKind::EndpointSlices => {
            for f in ["endpoints", "ports"] {
                if is_empty_or_null(o.get(f)) {
                    o.insert(f.into(), Value::Null);
                }
            }
            if let Some(Value::Array(eps)) = o.get_mut("endpoints") {
                for ep in eps.iter_mut().filter_map(Value::as_object_mut) {
                    if !ep.get("conditions").is_some_and(Value::is_object) {
                        ep.insert("conditions".into(), Value::Object(Map::new()));
                    }
                }
            }
            default_ports(o.get_mut("ports"), true);
            if o.get("addressType")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let first = o
                    .get("endpoints")
                    .and_then(|e| e.pointer("/0/addresses/0"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let t = if first.contains(':') { "IPv6" } else { "IPv4" };
                o.insert("addressType".into(), t.into());
            }
        }
    }
}

fn default_ports(ports: Option<&mut Value>, slice: bool) {
    let Some(Value::Array(ports)) = ports else {
        return;
    };
    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
        if p.get("protocol").is_none_or(Value::is_null) {
            p.insert("protocol".into(), "TCP".into());
        }
        // discovery/v1 defaults a nil port name to "" (see `legacy-v6` in the recordings).
        if slice && p.get("name").is_none_or(Value::is_null) {
            p.insert("name".into(), "".into());
        }
    }
}

/// The validation error a real API server gives for loopback addresses, if any.
fn loopback_error(kind: ResourceKind, obj: &Value) -> Option<String> {
    const MSG: &str = "may not be in the loopback range (127.0.0.0/8, ::1/128)";
    let is_loopback = |s: &str| s.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match kind {
        ResourceKind::Endpoints => {
            for (i, ss) in obj.get("subsets")?.as_array()?.iter().enumerate() {
                for f in ["addresses", "notReadyAddresses"] {
                    let addrs = ss.get(f).and_then(Value::as_array);
                    for (j, a) in addrs.into_iter().flatten().enumerate() {
                        let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                        if is_loopback(ip) {
                            return Some(format!(
                                "subsets[{i}].{f}[{j}].ip: Invalid value: \"{ip}\": {MSG}"
                            ));
                        }
                    }
                }
            }
            None
        }
        ResourceKind::EndpointSlices => {
            for (i, ep) in obj.get("endpoints")?.as_array()?.iter().enumerate() {
                let addrs = ep.get("addresses").and_then(Value::as_array);
                for (j, a) in addrs.into_iter().flatten().enumerate() {
                    let ip = a.as_str().unwrap_or("");
                    if is_loopback(ip) {
                        return Some(format!(
                            "endpoints[{i}].addresses[{j}]: Invalid value: \"{ip}\": {MSG}"
                        ));
                    }
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(name: &str, ip: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop"},
               "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}]})
    }

    #[test]
    fn revisions_history_and_snapshots() {
        let mut s = Store::new(100, 10, false);
        assert_eq!(
            s.apply(ResourceKind::Endpoints, ep("a", "10.0.0.1")),
            Ok(101)
        );
        assert_eq!(
            s.apply(ResourceKind::Endpoints, ep("a", "10.0.0.1")),
            Ok(101)
        );
        assert_eq!(
            s.apply(ResourceKind::Endpoints, ep("a", "10.0.0.2")),
            Ok(102)
        );
        assert_eq!(s.delete(ResourceKind::Endpoints, "shop", "a"), Some(103));
        assert!(s
            .snapshot_at(ResourceKind::Endpoints, 103)
            .unwrap()
            .is_empty());
        let at101 = s.snapshot_at(ResourceKind::Endpoints, 101).unwrap();
        assert_eq!(
            at101["shop/a"].pointer("/subsets/0/addresses/0/ip"),
            Some(&json!("10.0.0.1"))
        );
        assert!(s
            .snapshot_at(ResourceKind::Endpoints, 100)
            .unwrap()
            .is_empty());
        assert!(s.snapshot_at(ResourceKind::Endpoints, 99).is_none());
        s.compact();
        assert!(s.snapshot_at(ResourceKind::Endpoints, 102).is_none());
        assert_eq!(
            s.register_watch(ResourceKind::Endpoints, Some(5)).err(),
            Some(103)
        );
    }

    #[test]
    fn loopback_rejected_when_asked() {
        let mut s = Store::new(1, 10, true);
        let err = s
            .apply(ResourceKind::Endpoints, ep("a", "127.0.0.1"))
            .unwrap_err();
        assert!(err.contains("may not be in the loopback range"), "{err}");
        let mut s = Store::new(1, 10, false);
        assert!(s
            .apply(ResourceKind::Endpoints, ep("a", "127.0.0.1"))
            .is_ok());
    }
}
