//! Admin API writes with `config_provider: etcd`: planned and checked as
//! with the state file, then written with a compare-and-swap transaction:
//! a create only if the key does not exist, a replace, PATCH or DELETE
//! only if the key's `mod_revision` is still the one read. A PATCH (and a
//! POST, whose id is new) that loses the race is planned again on what etcd
//! now holds, a bounded number of times; any other loser gets 409. Nothing
//! is ever overwritten silently.
//!
//! The first try plans on what this replica serves, with no read from
//! etcd: one round trip, the transaction. Its compare-and-swap fails when
//! the replica is behind for that key (or the plan is refused on what it
//! serves), and the write is then planned on the key as read from etcd.
//!
//! When the transaction's revision directly follows the one this replica
//! has applied everything up to, etcd holds exactly the state that was
//! checked: it is swapped in at once and the answer comes then; the watch's
//! event for that revision later changes nothing. Otherwise (another write
//! came in between) the answer comes once this replica's watch has applied
//! the change (or after the timeout: it is in etcd, the watch will apply
//! it), and the watch reuses what the write's check compiled when nothing
//! else changed meanwhile ([`super::own`]). Other replicas apply it through
//! their own watches.

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
use crate::merge::LeftOut;
use crate::ops::{self, Write};
use crate::state::AdminState;

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
    // The first try plans on what this replica serves, without reading
    // the key from etcd: its compare-and-swap fails if the replica is
    // behind for that key, and the key is then read (below).
    let mut direct = true;
    loop {
        let serial = hub.writes.lock().await;
        let view = hub.view.load_full();
        // The revision this replica has applied everything up to (the
        // watch applies under `serial`, so it holds while this write runs).
        let applied = src.status().revision;
        direct = direct
            && src.is_synced()
            && src.status().stale.is_none()
            && view.state.index == u64::try_from(applied).unwrap_or(0);
        if !direct {
            tries += 1;
        }
        // The key: from the path, else from planning on what is served.
        let key0 = match &w.id {
            Some(id) if w.method != Method::POST => w.kind.key(w.owner.as_deref(), id),
            _ => ops::plan(&view, w.clone(), ops::now())?.key,
        };
        // What the plan stands on: what is served (`direct`), or what etcd
        // holds for that key now, at etcd's revision `read_at`.
        let (used, compare_with, read_at) = if direct {
            let served = view.state.entries.get(&key0).map(|e| e.modified);
            (
                view.clone(),
                served.map(|m| i64::try_from(m).unwrap_or(0)),
                applied,
            )
        } else {
            let (header, fresh) = src
                .client
                .get(&src.etcd_key(&key0))
                .await
                .map_err(unavailable)?;
            // Planned on what etcd holds for that key (this replica's watch
            // may be a moment behind), with the index at etcd's revision (a
            // POST's new id follows it).
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
            let used = Arc::new(View {
                file: view.file.clone(),
                items: view.items.clone(),
                state: Arc::new(state),
                left_out: view.left_out.clone(),
            });
            (used, fresh.map(|kv| kv.mod_revision), header.revision)
        };
        let stored = compare_with.map(|m| u64::try_from(m).unwrap_or(0));
        let planned = ops::plan(&used, w.clone(), ops::now()).and_then(|plan| {
            let (left_out, prepared) = ConfigHub::check(&used, &plan.state, &plan.key, engine)?;
            Ok((plan, left_out, prepared))
        });
        let (plan, left_out, prepared) = match planned {
            Ok(planned) => planned,
            // Refused on what this replica serves: judged again on what
            // etcd holds for the key (the replica may be behind for it).
            Err(_) if direct => {
                direct = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        let key = src.etcd_key(&plan.key);
        let compare = match compare_with {
            Some(m) if plan.key == key0 => Compare::ModRevision(m),
            _ => Compare::Absent,
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
        let revision = header.revision;
        if ok && read_at == applied && revision == applied + 1 {
            // etcd holds exactly the checked state (nothing else was
            // written since what this replica serves): served at once,
            // and the watch's event for this revision changes nothing.
            match install_now(
                hub, src, engine, &view, plan.state, &plan.key, revision, left_out, prepared,
            ) {
                Ok(()) => {
                    drop(serial);
                    return Ok(Written {
                        status: plan.status,
                        body: plan.body,
                    });
                }
                // The watch compiles it again and keeps the last
                // configuration if that fails too.
                Err(e) => {
                    tracing::error!(key = %key, revision, error = %e, "Admin API change is in etcd but could not be swapped in here");
                }
            }
        } else if ok {
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
        if direct {
            // This replica was behind for that key: read it from etcd.
            direct = false;
            tracing::debug!(key = %key, "Admin API write planned on a stale key: read from etcd and planned again");
            continue;
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

/// Swaps in `state` (checked and compiled to `prepared`), which etcd holds
/// at `revision`, as the watch would once that revision arrives.
#[allow(clippy::too_many_arguments)]
fn install_now<E: Engine>(
    hub: &ConfigHub,
    src: &EtcdSource,
    engine: &E,
    view: &View,
    mut state: AdminState,
    key: &str,
    revision: i64,
    left_out: LeftOut,
    prepared: E::Prepared,
) -> Result<(), crate::error::EngineError> {
    engine.install(prepared)?;
    crate::hub::log_left_out(&view.left_out, &left_out);
    state.index = state.index.max(u64::try_from(revision).unwrap_or(0));
    hub.view.store(Arc::new(View {
        file: view.file.clone(),
        items: view.items.clone(),
        state: Arc::new(state),
        left_out,
    }));
    let mut invalid = src.status().invalid_keys;
    invalid.retain(|k| k != key);
    src.set_invalid(invalid);
    src.applied(revision, false);
    Ok(())
}
