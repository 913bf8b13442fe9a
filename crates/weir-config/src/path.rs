//! Field-path formatting shared by parsing and validation.

/// Appends `.name` to a path (or just `name` at the root).
pub fn field(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

/// Appends `[index]`.
pub fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// Appends a map key: `.key` when it is a plain identifier, `["key"]` otherwise.
pub fn key(base: &str, k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        field(base, k)
    } else {
        format!("{base}[{k:?}]")
    }
}

/// Renders a `serde_path_to_error` path below `base` in weir's notation.
pub fn from_serde(base: &str, p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = base.to_owned();
    for seg in p.iter() {
        out = match seg {
            Segment::Seq { index: i } => index(&out, *i),
            Segment::Map { key: k } => key(&out, k),
            Segment::Enum { variant } => field(&out, variant),
            Segment::Unknown => out,
        };
    }
    out
}
