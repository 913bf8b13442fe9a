//! Admin API writes with `config_provider: etcd`: planned and checked as
//! with the state file, then written with a compare-and-swap transaction:
//! a create only if the key does not exist, a replace, PATCH or DELETE
//! only if the key's `mod_revision` is still the one read. A PATCH (and a
//! POST, whose id is new) that loses the race is planned again on what etcd
//! now holds, a bounded number of times; any other loser gets 409. Nothing
//! is ever overwritten silently.
//!
//! The answer comes once the change is in etcd and this replica's watch has
//! applied it (or after the timeout: it is in etcd, the watch will apply
//! it); other replicas apply it through their own watches. This replica's
//! watch reuses what the write's check compiled when nothing else changed
//! meanwhile ([`super::own`]).

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::apply::decode_entry;
use super::client::{Compare, EtcdError, Op};
use super::own::OwnWrite;
use super::EtcdSource;
use crate::error::AdminError;
use crate::hub::{ConfigHub, Engine, View, Written};
use crate::kind::Kind;
use crate::ops::{self, Write};

/// How many times a PATCH or POST that lost a race is tried again.
const RETRIES: usize = 16;

fn unavailable(e: EtcdError) -> AdminError {
    AdminError::Unavailable(format!("etcd: {e}"))
}

/// Writes `w` to etcd (see the module docs).
pub(crate) async fn write<E: Engine>(
    hub: &ConfigHub,
    src: &EtcdSource,
    engine: &E,
    w: Write,
    ttl: Option<u64>,
) -> Result<Written, AdminError> {
    let lease = match ttl {
        Some(ttl)
            if w.method == Method::PUT || w.method == Method::POST || w.method == Method::PATCH =>
        {
            src.client.lease(ttl).await.map_err(unavailable)?
        }
        _ => 0,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let serial = hub.writes.lock().await;
        let view = hub.view.load_full();
        // The key: from the path, else from planning on what is served.
        let key0 = match &w.id {
            Some(id) if w.method != Method::POST => w.kind.key(w.owner.as_deref(), id),
            _ => ops::plan(&view, w.clone(), ops::now())?.key,
        };
        let (header, fresh) = src
            .client
            .get(&src.etcd_key(&key0))
            .await
            .map_err(unavailable)?;
        let stored = fresh
            .as_ref()
            .map(|kv| u64::try_from(kv.mod_revision).unwrap_or(0));
        // Planned on what etcd holds for that key (this replica's watch may
        // be a moment behind), with the index at etcd's revision (a POST's
        // new id follows it).
        let mut state = (*view.state).clone();
        match fresh.as_ref().and_then(|kv| decode_entry(src, kv)) {
            Some((key, entry)) => {
                state.entries.insert(key, entry);
            }
            None => {
                state.entries.remove(&key0);
            }
        }
        state.index = state.index.max(u64::try_from(header.revision).unwrap_or(0));
        let used = View {
            file: view.file.clone(),
            items: view.items.clone(),
            state: Arc::new(state),
            left_out: view.left_out.clone(),
        };
        let plan = ops::plan(&used, w.clone(), ops::now())?;
        let (left_out, prepared) = ConfigHub::check(&used, &plan.state, &plan.key, engine)?;
        let key = src.etcd_key(&plan.key);
        let compare = if plan.key != key0 {
            Compare::Absent
        } else {
            fresh
                .as_ref()
                .map_or(Compare::Absent, |kv| Compare::ModRevision(kv.mod_revision))
        };
        let mut txn = Vec::new();
        match plan.state.entries.get(&plan.key) {
            Some(e) => {
                let bytes = serde_json::to_vec(&*e.value)
                    .map_err(|e| AdminError::BadRequest(format!("invalid configuration: {e}")))?;
                txn.push(Op::Put(key.clone(), bytes, lease));
            }
            None => {
                txn.push(Op::Delete(key.clone()));
                if w.kind == Kind::Consumer {
                    // A consumer's credentials go with it, as APISIX's rmdir.
                    txn.push(Op::DeletePrefix(format!("{key}/credentials/")));
                }
            }
        }
        let (ok, header) = src.client.txn(&key, compare, &txn).await.map_err(|e| {
            AdminError::Unavailable(format!(
                "etcd: {e}; the change was not confirmed: read it back before trying again"
            ))
        })?;
        if ok {
            // Before the watch can apply it (it waits for `serial`): the
            // watch reuses this compile when it arrives at this very state.
            let own = OwnWrite::new(view.clone(), &plan.state, left_out, prepared);
            *hub.own_write.lock().unwrap_or_else(|e| e.into_inner()) = Some(own);
        }
        drop(serial);
        if ok {
            let wait = src.client.timeout().min(Duration::from_secs(10));
            if !src.wait_applied(header.revision, wait).await {
                tracing::warn!(key = %key, revision = header.revision, "Admin API change is in etcd but not applied here yet");
            }
            return Ok(Written {
                status: plan.status,
                body: plan.body,
            });
        }
        let retry = w.method == Method::PATCH || w.method == Method::POST;
        if !retry || tries > RETRIES {
            return Err(AdminError::Conflict(format!(
                "{} was changed by another writer since it was read (modifiedIndex {}): nothing was changed; read it again and retry",
                plan.key,
                stored.unwrap_or(0)
            )));
        }
        tracing::debug!(key = %key, tries, "Admin API write lost a race in etcd: planned again");
        let pause = Duration::from_millis(1 + rand::random::<u64>() % (2 * tries as u64).max(2));
        tokio::time::sleep(pause).await;
    }
}
