//! Header changes decided by plugins, applied where a head is written.
//!
//! On the fast path no header map exists: the writer copies the received
//! fields, skipping those an edit replaces or removes ([`HeaderEdits::drops`]),
//! then writes the edits' values ([`HeaderEdits::additions`]). On the
//! general path the same list is applied to hyper's map
//! ([`HeaderEdits::apply`]). Both give what applying the operations in order
//! to a map would give. An empty list costs nothing: no allocation until a
//! plugin edits.

use http::{HeaderMap, HeaderName, HeaderValue};

/// One header operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Replace every value of the field with this one.
    Set,
    /// Add a value, keeping the others.
    Append,
    /// Remove the field.
    Remove,
}

/// An ordered list of header operations.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    ops: Vec<(Op, HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.ops.push((Op::Set, name, value));
    }

    /// Adds a value of `name`.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.ops.push((Op::Append, name, value));
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: HeaderName) {
        self.ops
            .push((Op::Remove, name, HeaderValue::from_static("")));
    }

    /// True when nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// True when the received values of `name` must not be written (a set
    /// or remove names it).
    pub fn drops(&self, name: &str) -> bool {
        self.ops
            .iter()
            .any(|(op, n, _)| *op != Op::Append && n.as_str().eq_ignore_ascii_case(name))
    }

    /// The values to write after the received fields: every set or append
    /// not undone by a later set or remove of the same name.
    pub fn additions(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.ops.iter().enumerate().filter_map(|(i, (op, n, v))| {
            if *op == Op::Remove {
                return None;
            }
            let superseded = self.ops[i + 1..]
                .iter()
                .any(|(later, ln, _)| *later != Op::Append && ln == n);
            (!superseded).then_some((n, v))
        })
    }

    /// The edited state of `name`: `None` when no edit touches it; else the
    /// last value written (`Some(None)`: removed).
    pub fn lookup(&self, name: &str) -> Option<Option<&HeaderValue>> {
        let (op, _, v) = self
            .ops
            .iter()
            .rev()
            .find(|(_, n, _)| n.as_str().eq_ignore_ascii_case(name))?;
        Some((*op != Op::Remove).then_some(v))
    }

    /// Applies the operations, in order, to a header map.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (op, name, value) in &self.ops {
            match op {
                Op::Set => {
                    headers.insert(name.clone(), value.clone());
                }
                Op::Append => {
                    headers.append(name.clone(), value.clone());
                }
                Op::Remove => {
                    headers.remove(name);
                }
            }
        }
    }

    /// Appends another list's operations after these.
    pub fn extend(&mut self, other: &HeaderEdits) {
        self.ops.extend(other.ops.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }
    fn val(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    /// Writing the received fields minus `drops`, then `additions`, equals
    /// applying the operations in order to a map.
    #[test]
    fn raw_writing_and_map_application_agree() {
        let received = [("x-a", "0"), ("x-b", "0"), ("x-c", "0")];
        let mut e = HeaderEdits::default();
        e.set(name("x-a"), val("1"));
        e.append(name("x-a"), val("2"));
        e.append(name("x-b"), val("1"));
        e.remove(name("x-c"));
        e.append(name("x-d"), val("1"));
        e.set(name("x-d"), val("2"));
        e.remove(name("x-e"));
        e.append(name("x-e"), val("1"));

        let mut map = HeaderMap::new();
        for (n, v) in received {
            map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        e.apply(&mut map);

        let mut raw = HeaderMap::new();
        for (n, v) in received {
            if !e.drops(n) {
                raw.append(HeaderName::from_static(n), HeaderValue::from_static(v));
            }
        }
        for (n, v) in e.additions() {
            raw.append(n.clone(), v.clone());
        }
        for n in ["x-a", "x-b", "x-c", "x-d", "x-e"] {
            let a: Vec<_> = map.get_all(n).iter().collect();
            let b: Vec<_> = raw.get_all(n).iter().collect();
            assert_eq!(a, b, "{n}");
        }
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        assert!(map.get("x-c").is_none());
        assert_eq!(e.lookup("x-d"), Some(Some(&val("2"))));
        assert_eq!(e.lookup("x-c"), Some(None));
        assert_eq!(e.lookup("x-z"), None);
    }
}
