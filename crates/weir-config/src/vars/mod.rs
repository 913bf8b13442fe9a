//! APISIX's `vars` expressions (lua-resty-expr), parsed into a typed tree when
//! the configuration is loaded and evaluated against a request by the engine.
//!
//! A `vars` value is a list of expressions that must all hold, or a group
//! that starts with a logical operator:
//!
//! ```yaml
//! vars:
//!   - ["arg_name", "==", "json"]             # var, operator, value
//!   - ["http_x_env", "!", "~~", "^test"]     # "!" negates the operator
//!   - ["OR", ["arg_a", ">", 10], ["cookie_b", "in", ["x", "y"]]]
//! ```
//!
//! Operators: `==`, `~=`, `>`, `>=`, `<`, `<=`, `~~` (regex search), `~*`
//! (case-insensitive regex search), `in`, `has`, `ipmatch`; groups `AND`,
//! `OR`, `!AND`, `!OR` (at least two members), and nested lists (all must
//! hold). Names are request variables ([`names::is_known_var`]); the engine
//! supplies their values through [`VarLookup`].
//!
//! ```
//! use std::borrow::Cow;
//! use std::collections::HashMap;
//! use weir_config::vars::{VarLookup, Vars};
//!
//! struct Req(HashMap<&'static str, &'static str>);
//! impl VarLookup for Req {
//!     fn var(&self, name: &str) -> Option<Cow<'_, str>> {
//!         self.0.get(name).map(|v| Cow::Borrowed(*v))
//!     }
//! }
//!
//! let vars = Vars::from_value(&serde_json::json!([["arg_v", ">=", 2]])).unwrap();
//! assert!(vars.eval(&Req(HashMap::from([("arg_v", "3")]))));
//! assert!(!vars.eval(&Req(HashMap::new())));
//! ```

use std::borrow::Cow;
use std::net::IpAddr;

use regex::Regex;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use crate::error::FieldError;
use crate::ip_match::IpMatcher;

pub mod names;
mod parse;
#[cfg(test)]
mod tests;

pub use names::{is_known_var, VarsTemplate, VAR_NAMES, VAR_PREFIXES};

/// Gives the value of a request variable, by its nginx/APISIX name:
/// `uri`, `host`, `remote_addr`, `request_method`, `server_port`,
/// `arg_NAME` (query argument), `http_NAME` (header, `_` for `-`, any case),
/// `cookie_NAME`, ... ([`VAR_NAMES`], [`VAR_PREFIXES`]). `None` when the
/// request has no such value.
pub trait VarLookup {
    /// The variable's value (the first one when there are several).
    fn var(&self, name: &str) -> Option<Cow<'_, str>>;

    /// Every value of the variable, for `has`. The default is the single
    /// value of [`VarLookup::var`]; an engine may list every header or
    /// query argument of that name.
    fn var_values(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.var(name).into_iter().collect()
    }
}

/// A parsed `vars` list. The empty list matches every request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars {
    root: Option<Expr>,
}

/// One node of an expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A list of expressions, or a group with a logical operator.
    Group(Logic, Vec<Expr>),
    /// `[var, op, value]` or `[var, "!", op, value]`.
    Compare(Comparison),
}

/// How the members of a group combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    /// Every member holds (a plain nested list, or `AND`).
    And,
    /// One member holds (`OR`).
    Or,
    /// Not every member holds (`!AND`).
    NotAnd,
    /// No member holds (`!OR`).
    NotOr,
}

/// One comparison of a request variable with a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Variable name (`arg_x`, `http_user_agent`, `uri`...).
    pub var: String,
    /// Written with `"!"` before the operator: the result is inverted.
    pub negate: bool,
    /// Operator and its value.
    pub op: Op,
}

/// An operator with its already-parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `==`: strings compare as strings; against a number, the variable is
    /// read as a number; against `null`, true when the variable is absent.
    Eq(Operand),
    /// `~=`: the negation of `==` (an absent variable differs from any value).
    Ne(Operand),
    /// `>`: both sides read as numbers; false when the variable is not one.
    Gt(f64),
    /// `>=`.
    Ge(f64),
    /// `<`.
    Lt(f64),
    /// `<=`.
    Le(f64),
    /// `~~` (or `~*`, case-insensitive): the regex matches somewhere in the value.
    Regex(Pattern),
    /// `in`: the value equals one of the list's items (as `==` compares).
    In(Vec<Operand>),
    /// `has`: one of the variable's values ([`VarLookup::var_values`]) equals the operand.
    Has(Operand),
    /// `ipmatch`: the value is an IP address inside one of the blocks.
    IpMatch(IpMatcher),
}

/// A literal value in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A string.
    Str(String),
    /// A number (JSON/YAML number).
    Num(f64),
    /// `null`: stands for an absent variable.
    Null,
}

/// A compiled regular expression (Rust `regex` syntax).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    case_insensitive: bool,
    re: Regex,
}

impl Pattern {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `~*` rather than `~~`.
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// Whether the expression matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.case_insensitive == other.case_insensitive
    }
}

impl Vars {
    /// Parses a `vars` value given as JSON (e.g. a plugin's `_meta.filter`).
    /// The error's path is relative to the value (`[1][2]`).
    pub fn from_value(value: &serde_json::Value) -> Result<Vars, FieldError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = crate::path::from_serde("", e.path());
            FieldError::new(path, e.into_inner().to_string())
        })
    }

    /// [`Vars::from_value`] for variables other than a request's (a
    /// response's): names are not checked against the request variables;
    /// the caller checks [`Vars::var_names`] against its own list.
    pub fn from_value_any_names(value: &serde_json::Value) -> Result<Vars, FieldError> {
        parse::without_name_check(|| Vars::from_value(value))
    }

    /// The expression tree; `None` for the empty list.
    pub fn root(&self) -> Option<&Expr> {
        self.root.as_ref()
    }

    /// True for the empty list (matches every request).
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Whether the request described by `vars` satisfies the expressions.
    pub fn eval<L: VarLookup + ?Sized>(&self, vars: &L) -> bool {
        self.root.as_ref().is_none_or(|e| e.eval(vars))
    }

    /// Every variable name the expressions read (for engines that
    /// precompute what they need).
    pub fn var_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some(e) = &self.root {
            e.collect_names(&mut out);
        }
        out
    }
}

impl Expr {
    /// Evaluates this node.
    pub fn eval<L: VarLookup + ?Sized>(&self, vars: &L) -> bool {
        match self {
            Expr::Compare(c) => c.eval(vars),
            Expr::Group(Logic::And, members) => members.iter().all(|m| m.eval(vars)),
            Expr::Group(Logic::Or, members) => members.iter().any(|m| m.eval(vars)),
            Expr::Group(Logic::NotAnd, members) => !members.iter().all(|m| m.eval(vars)),
            Expr::Group(Logic::NotOr, members) => !members.iter().any(|m| m.eval(vars)),
        }
    }

    fn collect_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Compare(c) => {
                if !out.contains(&c.var.as_str()) {
                    out.push(&c.var);
                }
            }
            Expr::Group(_, members) => members.iter().for_each(|m| m.collect_names(out)),
        }
    }
}

impl Comparison {
    /// Evaluates the comparison (with its `!`).
    pub fn eval<L: VarLookup + ?Sized>(&self, vars: &L) -> bool {
        let value = || vars.var(&self.var);
        let number = || value().and_then(|v| lua_number(&v));
        let result = match &self.op {
            Op::Eq(o) => equals(value().as_deref(), o),
            Op::Ne(o) => !equals(value().as_deref(), o),
            Op::Gt(n) => number().is_some_and(|v| v > *n),
            Op::Ge(n) => number().is_some_and(|v| v >= *n),
            Op::Lt(n) => number().is_some_and(|v| v < *n),
            Op::Le(n) => number().is_some_and(|v| v <= *n),
            Op::Regex(p) => value().is_some_and(|v| p.is_match(&v)),
            Op::In(list) => value().is_some_and(|v| list.iter().any(|o| equals(Some(&v), o))),
            Op::Has(o) => vars
                .var_values(&self.var)
                .iter()
                .any(|v| equals(Some(v), o)),
            Op::IpMatch(m) => value()
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| m.contains(ip)),
        };
        result != self.negate
    }
}

/// `==` as lua-resty-expr: a number operand reads the value as a number.
fn equals(value: Option<&str>, operand: &Operand) -> bool {
    match operand {
        Operand::Null => value.is_none(),
        Operand::Str(s) => value == Some(s.as_str()),
        Operand::Num(n) => value.and_then(lua_number) == Some(*n),
    }
}

/// Lua's `tonumber` on a string: decimal (with exponent) or `0x` hex,
/// surrounding spaces allowed; `inf`/`nan` are not numbers.
pub(crate) fn lua_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        let v = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    let plain = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !plain {
        return None;
    }
    t.parse::<f64>().ok()
}

impl Serialize for Vars {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.root {
            None => s.serialize_seq(Some(0))?.end(),
            Some(root) => root.serialize(s),
        }
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expr::Group(logic, members) => {
                let head = match logic {
                    Logic::And => None,
                    Logic::Or => Some("OR"),
                    Logic::NotAnd => Some("!AND"),
                    Logic::NotOr => Some("!OR"),
                };
                let mut seq = s.serialize_seq(Some(members.len() + usize::from(head.is_some())))?;
                if let Some(h) = head {
                    seq.serialize_element(h)?;
                }
                for m in members {
                    seq.serialize_element(m)?;
                }
                seq.end()
            }
            Expr::Compare(c) => {
                let mut seq = s.serialize_seq(Some(3 + usize::from(c.negate)))?;
                seq.serialize_element(&c.var)?;
                if c.negate {
                    seq.serialize_element("!")?;
                }
                seq.serialize_element(c.op.name())?;
                match &c.op {
                    Op::Eq(o) | Op::Ne(o) | Op::Has(o) => seq.serialize_element(o)?,
                    Op::Gt(n) | Op::Ge(n) | Op::Lt(n) | Op::Le(n) => {
                        seq.serialize_element(&Operand::Num(*n))?
                    }
                    Op::Regex(p) => seq.serialize_element(p.as_str())?,
                    Op::In(list) => seq.serialize_element(list)?,
                    Op::IpMatch(m) => seq.serialize_element(m.blocks())?,
                }
                seq.end()
            }
        }
    }
}

impl Serialize for Operand {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Operand::Str(v) => s.serialize_str(v),
            Operand::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => s.serialize_i64(*n as i64),
            Operand::Num(n) => s.serialize_f64(*n),
            Operand::Null => s.serialize_unit(),
        }
    }
}

impl Op {
    /// The operator as written in configurations.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "==",
            Op::Ne(_) => "~=",
            Op::Gt(_) => ">",
            Op::Ge(_) => ">=",
            Op::Lt(_) => "<",
            Op::Le(_) => "<=",
            Op::Regex(p) if p.case_insensitive => "~*",
            Op::Regex(_) => "~~",
            Op::In(_) => "in",
            Op::Has(_) => "has",
            Op::IpMatch(_) => "ipmatch",
        }
    }
}
