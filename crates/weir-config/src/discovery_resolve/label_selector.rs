//! Kubernetes label-selector syntax (`a=b,c!=d,e in (f,g),!h`).

/// Checks a Kubernetes label selector and drops double quotes around values
/// (the APISIX page writes `first="a"`, which the API server would refuse).
pub fn normalize_label_selector(sel: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for req in split_requirements(sel)? {
        let req = req.trim();
        if req.is_empty() {
            return Err("empty requirement".to_owned());
        }
        out.push(normalize_requirement(req)?);
    }
    Ok(out.join(","))
}

/// Splits on commas outside parentheses.
fn split_requirements(sel: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut parts) = (0i32, 0usize, Vec::new());
    for (i, ch) in sel.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".to_owned());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".to_owned());
    }
    parts.push(&sel[start..]);
    Ok(parts)
}

fn normalize_requirement(req: &str) -> Result<String, String> {
    if let Some(key) = req.strip_prefix('!') {
        check_label_key(key.trim())?;
        return Ok(format!("!{}", key.trim()));
    }
    for op in ["!=", "==", "="] {
        if let Some((k, v)) = req.split_once(op) {
            let (k, v) = (k.trim(), unquote(v.trim()));
            check_label_key(k)?;
            check_label_value(v)?;
            return Ok(format!("{k}{op}{v}"));
        }
    }
    let words: Vec<&str> = req.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim();
        for op in ["notin", "in"] {
            if let Some(list) = rest.strip_prefix(op) {
                let list = list.trim();
                let inner = list
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .ok_or_else(|| format!("{req:?}: expected ({op} (v1,v2))"))?;
                check_label_key(key)?;
                let values = inner
                    .split(',')
                    .map(|v| {
                        let v = unquote(v.trim());
                        check_label_value(v).map(|_| v.to_owned())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(format!("{key} {op} ({})", values.join(",")));
            }
        }
        return Err(format!("{req:?}: unknown operator"));
    }
    check_label_key(req)?;
    Ok(req.to_owned())
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

fn is_label_name(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    s.len() <= 63
        && s.chars().all(ok_char)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_label_key(k: &str) -> Result<(), String> {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            let dns =
                !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_label_name);
            if !dns {
                return Err(format!("{k:?}: invalid label key prefix"));
            }
            name
        }
        None => k,
    };
    if is_label_name(name) {
        Ok(())
    } else {
        Err(format!("{k:?}: invalid label key"))
    }
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_label_name(v) {
        Ok(())
    } else {
        Err(format!("{v:?}: invalid label value"))
    }
}
