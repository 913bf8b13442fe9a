//! A replica's own write, compiled once: an Admin API write is checked
//! (merged, validated, compiled by the engine) before it goes to etcd, and
//! the same change comes back through this replica's watch a moment later.
//! Compiling it again there would double the cost of every write, so the
//! write leaves what it compiled here ([`OwnWrite`]), and the watch uses it
//! instead of compiling, but only when the configuration the watch arrives
//! at is exactly the one that was compiled:
//!
//! - nothing was applied in between (the hub's view is the very one the
//!   write was checked against), and
//! - the resources after the watch's events equal the checked ones key by
//!   key: every key the write changed holds the value written (or is gone,
//!   for a delete), and no other key changed (another replica's write in
//!   the same watch answer, a value refused as invalid...).
//!
//! Otherwise the watch compiles as always. Either way the record is used
//! at most once: the first change set applied after the write takes it.

use std::any::Any;
use std::sync::Arc;

use serde_json::Value;

use crate::hub::View;
use crate::merge::LeftOut;
use crate::state::{AdminState, Entry};

/// A write sent to etcd with what its check compiled.
pub(crate) struct OwnWrite {
    /// The view the write was checked against.
    base: Arc<View>,
    /// The keys whose value the checked state changes from the base's:
    /// the value written, or `None` for a key it removes.
    changes: Vec<(String, Option<Arc<Value>>)>,
    left_out: LeftOut,
    prepared: Box<dyn Any + Send>,
}

impl OwnWrite {
    /// Records that `checked` (the state after the write, planned on
    /// `base`) compiled to `prepared`, with `left_out`.
    pub(crate) fn new<P: Send + 'static>(
        base: Arc<View>,
        checked: &AdminState,
        left_out: LeftOut,
        prepared: P,
    ) -> OwnWrite {
        let changes = diff(&base.state, checked)
            .map(|(k, e)| (k.to_owned(), e.map(|e| e.value.clone())))
            .collect();
        OwnWrite {
            base,
            changes,
            left_out,
            prepared: Box::new(prepared),
        }
    }

    /// What was compiled, when the watch arrives at the state compiled:
    /// `view` is the hub's view the change set applies to, `entries` the
    /// resources after it.
    pub(crate) fn reuse<P: 'static>(
        self,
        view: &Arc<View>,
        after: &AdminState,
    ) -> Option<(LeftOut, P)> {
        if !Arc::ptr_eq(&self.base, view) {
            return None;
        }
        let mut changed = 0;
        for (key, entry) in diff(&view.state, after) {
            changed += 1;
            let written = self.changes.iter().find(|(k, _)| k == key)?;
            let same = match (&written.1, entry) {
                (Some(v), Some(e)) => **v == *e.value,
                (None, None) => true,
                _ => false,
            };
            if !same {
                return None;
            }
        }
        if changed != self.changes.len() {
            return None;
        }
        let prepared = self.prepared.downcast::<P>().ok()?;
        Some((self.left_out, *prepared))
    }
}

/// The keys whose entry differs between `from` and `to` (`to`'s entry, or
/// `None` where `to` has none), in key order. Unchanged entries are
/// shared (`Arc`), so this is one walk over both maps in step, comparing
/// pointers (values only where the pointers differ).
fn diff<'a>(
    from: &'a AdminState,
    to: &'a AdminState,
) -> impl Iterator<Item = (&'a str, Option<&'a Arc<Entry>>)> {
    let mut a = from.entries.iter().peekable();
    let mut b = to.entries.iter().peekable();
    std::iter::from_fn(move || loop {
        match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some((ka, _)), None) => {
                let k = ka.as_str();
                a.next();
                return Some((k, None));
            }
            (None, Some((kb, eb))) => {
                let item = (kb.as_str(), Some(*eb));
                b.next();
                return Some(item);
            }
            (Some((ka, ea)), Some((kb, eb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    let k = ka.as_str();
                    a.next();
                    return Some((k, None));
                }
                std::cmp::Ordering::Greater => {
                    let item = (kb.as_str(), Some(*eb));
                    b.next();
                    return Some(item);
                }
                std::cmp::Ordering::Equal => {
                    let changed = !Arc::ptr_eq(ea, eb) && ea.value != eb.value;
                    let item = (kb.as_str(), Some(*eb));
                    a.next();
                    b.next();
                    if changed {
                        return Some(item);
                    }
                }
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;
    use crate::state::Resource;

    fn entry(id: &str, uri: &str) -> Arc<Entry> {
        let value =
            serde_json::json!({"id": id, "uri": uri, "upstream": {"nodes": {"127.0.0.1:1": 1}}});
        Arc::new(Entry {
            kind: Kind::Route,
            owner: None,
            id: id.into(),
            resource: Arc::new(Resource::decode(Kind::Route, None, &value).expect("route")),
            value: Arc::new(value),
            created: 1,
            modified: 1,
        })
    }

    fn state(items: &[(&str, &Arc<Entry>)]) -> AdminState {
        AdminState {
            entries: items
                .iter()
                .map(|(k, e)| (k.to_string(), (*e).clone()))
                .collect(),
            index: 0,
        }
    }

    #[test]
    fn diff_names_removed_added_and_changed_keys_in_order() {
        let (a, b, c, b2, d) = (
            entry("a", "/a"),
            entry("b", "/b"),
            entry("c", "/c"),
            entry("b", "/b2"),
            entry("d", "/d"),
        );
        let same_b = entry("b", "/b");
        let from = state(&[("a", &a), ("b", &b), ("c", &c)]);
        let to = state(&[("b", &b2), ("c", &c), ("d", &d)]);
        let got: Vec<(&str, bool)> = diff(&from, &to).map(|(k, e)| (k, e.is_some())).collect();
        assert_eq!(got, [("a", false), ("b", true), ("d", true)]);
        // Another Arc with the same value is no change.
        let to = state(&[("a", &a), ("b", &same_b), ("c", &c)]);
        assert_eq!(diff(&from, &to).count(), 0);
    }

    fn view(s: AdminState) -> Arc<View> {
        Arc::new(View {
            file: Arc::new(weir_config::Config::default()),
            items: Arc::new(Default::default()),
            state: Arc::new(s),
            left_out: Vec::new(),
        })
    }

    /// The watch reuses the write's compile only at exactly the state it
    /// compiled: not after another change was applied, not with another
    /// key in the same change set, not with another value.
    #[test]
    fn a_compile_is_reused_only_at_the_state_it_was_built_from() {
        let (a, b, mine, theirs) = (
            entry("a", "/a"),
            entry("b", "/b"),
            entry("m", "/m"),
            entry("t", "/t"),
        );
        let base = view(state(&[("a", &a), ("b", &b)]));
        let checked = state(&[("a", &a), ("b", &b), ("m", &mine)]);
        let own = || OwnWrite::new(base.clone(), &checked, Vec::new(), 7u32);
        // The event arrives as written (a new Arc, same value).
        let echoed = entry("m", "/m");
        let after = state(&[("a", &a), ("b", &b), ("m", &echoed)]);
        assert_eq!(own().reuse::<u32>(&base, &after).map(|r| r.1), Some(7));
        // Another writer's key in the same change set.
        let both = state(&[("a", &a), ("b", &b), ("m", &echoed), ("t", &theirs)]);
        assert!(own().reuse::<u32>(&base, &both).is_none());
        // Something was applied in between (another view).
        let other = view(state(&[("a", &a), ("b", &b), ("t", &theirs)]));
        let after_other = state(&[("a", &a), ("b", &b), ("t", &theirs), ("m", &echoed)]);
        assert!(own().reuse::<u32>(&other, &after_other).is_none());
        // Another value came back for the key.
        let changed = state(&[("a", &a), ("b", &b), ("m", &entry("m", "/other"))]);
        assert!(own().reuse::<u32>(&base, &changed).is_none());
        // The write's key refused (kept absent): not the checked state.
        assert!(own()
            .reuse::<u32>(&base, &state(&[("a", &a), ("b", &b)]))
            .is_none());
    }
}
