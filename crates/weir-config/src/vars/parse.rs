//! Reading `vars` with serde, element by element, so that every error carries
//! the exact position (`routes[0].vars[1][2]: invalid regular expression`):
//! the path tracker sees each nested list and element as it is read.
//!
//! The rules are lua-resty-expr's (apisix's `vars`):
//! - the top level is a list of expressions (all must hold) or a group whose
//!   first item is `AND`, `OR`, `!AND` or `!OR` (any case) with at least two
//!   members;
//! - an expression is `[var, op, value]`, `[var, "!", op, value]`, a nested
//!   group, or the legacy `[var, value]` (meaning `==` against the value
//!   lower-cased, as lua-resty-expr reads it);
//! - operator names are case-insensitive.

use std::fmt;

use regex::RegexBuilder;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::names::{is_known_var, unknown_var};
use super::{lua_number, Comparison, Expr, Logic, Op, Operand, Pattern, Vars};
use crate::ip_match::{IpCidr, IpMatcher};

/// Deepest nesting of groups accepted.
const MAX_DEPTH: usize = 16;

/// Largest compiled regex accepted (bytes).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

thread_local! {
    /// False while [`Vars::from_value_any_names`] parses: the caller checks
    /// the names against its own list.
    static CHECK_NAMES: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `parse` with the check of variable names against the request
/// variables off.
pub(super) fn without_name_check<T>(parse: impl FnOnce() -> T) -> T {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            CHECK_NAMES.set(true);
        }
    }
    CHECK_NAMES.set(false);
    let _restore = Restore;
    parse()
}

const OPERATORS: &str = "==, ~=, >, >=, <, <=, ~~, ~*, in, has, ipmatch";

impl<'de> Deserialize<'de> for Vars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Vars;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a list of expressions, e.g. [["arg_name", "==", "json"]]"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vars, A::Error> {
        let head = seq.next_element_seed(HeadSeed {
            depth: 1,
            var: false,
        })?;
        let root = match head {
            None => return Ok(Vars { root: None }),
            Some(Head::Expr(first)) => group_rest(Logic::And, vec![first], &mut seq, 1)?,
            Some(Head::Logic(logic)) => group_rest(logic, Vec::new(), &mut seq, 1)?,
            Some(Head::Var(_)) => {
                return Err(de::Error::custom(
                    r#"each expression must be a list of its own: write [["arg_x", "==", "1"]], not ["arg_x", "==", "1"]"#,
                ))
            }
        };
        Ok(Vars { root: Some(root) })
    }
}

/// Reads the remaining members of a group at `depth` (members one level
/// deeper); explicit `AND`/`OR` groups need two.
fn group_rest<'de, A: SeqAccess<'de>>(
    logic: Logic,
    mut members: Vec<Expr>,
    seq: &mut A,
    depth: usize,
) -> Result<Expr, A::Error> {
    let explicit = members.is_empty();
    while let Some(e) = seq.next_element_seed(ExprSeed { depth: depth + 1 })? {
        members.push(e);
    }
    if explicit && members.len() < 2 {
        return Err(de::Error::custom(
            "a group (AND, OR, !AND, !OR) needs at least two expressions",
        ));
    }
    Ok(Expr::Group(logic, members))
}

/// The first item of a list: a variable name, a logical operator, or a
/// nested expression.
enum Head {
    Var(String),
    Logic(Logic),
    Expr(Expr),
}

struct HeadSeed {
    depth: usize,
    /// Check a plain string as a variable name (not at the top level, where
    /// it means the expression was not wrapped in a list).
    var: bool,
}

impl<'de> DeserializeSeed<'de> for HeadSeed {
    type Value = Head;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Head, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeadSeed {
    type Value = Head;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a variable name, AND / OR / !AND / !OR, or a nested expression list")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Head, E> {
        let logic = match v.to_ascii_uppercase().as_str() {
            "AND" => Some(Logic::And),
            "OR" => Some(Logic::Or),
            "!AND" => Some(Logic::NotAnd),
            "!OR" => Some(Logic::NotOr),
            _ => None,
        };
        match logic {
            Some(l) => Ok(Head::Logic(l)),
            None if self.var && CHECK_NAMES.get() && !is_known_var(v) => {
                Err(E::custom(unknown_var(v)))
            }
            None => Ok(Head::Var(v.to_owned())),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Head, A::Error> {
        ExprSeed {
            depth: self.depth + 1,
        }
        .visit_seq(seq)
        .map(Head::Expr)
    }
}

/// One expression: a list.
struct ExprSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ExprSeed {
    type Value = Expr;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Expr, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExprSeed {
    type Value = Expr;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an expression list such as ["arg_name", "==", "json"]"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Expr, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "expressions nested more than {MAX_DEPTH} levels deep"
            )));
        }
        let len = seq.size_hint();
        match seq.next_element_seed(HeadSeed {
            depth: self.depth,
            var: true,
        })? {
            None => Err(de::Error::custom("empty expression")),
            Some(Head::Expr(first)) => group_rest(Logic::And, vec![first], &mut seq, self.depth),
            Some(Head::Logic(logic)) => group_rest(logic, Vec::new(), &mut seq, self.depth),
            Some(Head::Var(var)) => comparison(var, len, seq).map(Expr::Compare),
        }
    }
}

/// `[var, op, value]`, `[var, "!", op, value]` or `[var, value]`; `len` is
/// the whole list's length when the deserializer knows it (it always does
/// for documents loaded by weir).
fn comparison<'de, A: SeqAccess<'de>>(
    var: String,
    len: Option<usize>,
    mut seq: A,
) -> Result<Comparison, A::Error> {
    let shape = r#"an expression is [var, op, value] or [var, "!", op, value]"#;
    let (negate, op) = match len {
        Some(1) => {
            return Err(de::Error::custom(format!(
                "{shape}: the operator and value are missing"
            )))
        }
        Some(2) => {
            // lua-resty-expr's legacy form: `[var, value]` means `==` against
            // the value as a lower-cased string.
            let value = seq
                .next_element_seed(LegacyValueSeed)?
                .ok_or_else(|| de::Error::custom(shape))?;
            return Ok(Comparison {
                var,
                negate: false,
                op: Op::Eq(Operand::Str(value)),
            });
        }
        Some(3) => (false, seq.next_element_seed(OpSeed)?),
        Some(4) => {
            seq.next_element_seed(BangSeed)?;
            (true, seq.next_element_seed(OpSeed)?)
        }
        Some(n) => {
            return Err(de::Error::custom(format!(
                "{shape}; this one has {n} items"
            )));
        }
        None => {
            // Unknown length: "!" or an operator comes next.
            match seq.next_element_seed(OpOrBangSeed)? {
                Some(OpOrBang::Bang) => (true, seq.next_element_seed(OpSeed)?),
                Some(OpOrBang::Op(k)) => (false, Some(k)),
                None => return Err(de::Error::custom(shape)),
            }
        }
    };
    let kind = op.ok_or_else(|| de::Error::custom(shape))?;
    let op = seq
        .next_element_seed(OperandSeed(kind))?
        .ok_or_else(|| de::Error::custom(format!("{shape}: the value is missing")))?;
    if seq.next_element::<de::IgnoredAny>()?.is_some() {
        return Err(de::Error::custom(format!("{shape}: too many items")));
    }
    Ok(Comparison { var, negate, op })
}

/// Operator kinds before their value is read.
#[derive(Debug, Clone, Copy)]
enum OpKind {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Regex { case_insensitive: bool },
    In,
    Has,
    IpMatch,
}

fn op_kind(s: &str) -> Option<OpKind> {
    Some(match s.to_ascii_lowercase().as_str() {
        "==" => OpKind::Eq,
        "~=" => OpKind::Ne,
        ">" => OpKind::Gt,
        ">=" => OpKind::Ge,
        "<" => OpKind::Lt,
        "<=" => OpKind::Le,
        "~~" => OpKind::Regex {
            case_insensitive: false,
        },
        "~*" => OpKind::Regex {
            case_insensitive: true,
        },
        "in" => OpKind::In,
        "has" => OpKind::Has,
        "ipmatch" => OpKind::IpMatch,
        _ => return None,
    })
}

fn unknown_op(s: &str) -> String {
    if s == "!=" {
        return format!(
            "unknown operator \"!=\": write \"~=\" (or \"!\", \"==\"); operators: {OPERATORS}"
        );
    }
    format!("unknown operator {s:?}, expected one of {OPERATORS}")
}

struct OpSeed;

impl<'de> DeserializeSeed<'de> for OpSeed {
    type Value = OpKind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<OpKind, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for OpSeed {
    type Value = OpKind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an operator ({OPERATORS})")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<OpKind, E> {
        if v == "!" {
            return Err(E::custom(
                r#""!" goes second in a 4-item expression: [var, "!", op, value]"#,
            ));
        }
        op_kind(v).ok_or_else(|| E::custom(unknown_op(v)))
    }
}

struct BangSeed;

impl<'de> DeserializeSeed<'de> for BangSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for BangSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#""!" (a 4-item expression is [var, "!", op, value])"#)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v == "!" {
            Ok(())
        } else {
            Err(E::custom(format!(
                r#"expected "!", found {v:?} (a 4-item expression is [var, "!", op, value])"#
            )))
        }
    }
}

enum OpOrBang {
    Op(OpKind),
    Bang,
}

struct OpOrBangSeed;

impl<'de> DeserializeSeed<'de> for OpOrBangSeed {
    type Value = OpOrBang;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<OpOrBang, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for OpOrBangSeed {
    type Value = OpOrBang;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "\"!\" or an operator ({OPERATORS})")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<OpOrBang, E> {
        if v == "!" {
            return Ok(OpOrBang::Bang);
        }
        op_kind(v)
            .map(OpOrBang::Op)
            .ok_or_else(|| E::custom(unknown_op(v)))
    }
}

/// The value of the legacy `[var, value]` form, as a lower-cased string.
struct LegacyValueSeed;

impl<'de> DeserializeSeed<'de> for LegacyValueSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for LegacyValueSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value (string or number)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if op_kind(v).is_some() {
            return Err(E::custom(format!("the operator {v:?} needs a value")));
        }
        Ok(v.to_lowercase())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// The value of an operator, checked and compiled for that operator.
struct OperandSeed(OpKind);

impl<'de> DeserializeSeed<'de> for OperandSeed {
    type Value = Op;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Op, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OperandSeed {
    type Value = Op;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self.0 {
            OpKind::Eq | OpKind::Ne => "a string, a number or null",
            OpKind::Gt | OpKind::Ge | OpKind::Lt | OpKind::Le => "a number",
            OpKind::Regex { .. } => "a regular expression (string)",
            OpKind::In => "a list of strings or numbers",
            OpKind::Has => "a string or a number",
            OpKind::IpMatch => "an IP address or CIDR block, or a list of them",
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Op, E> {
        match self.0 {
            OpKind::Eq => Ok(Op::Eq(Operand::Str(v.to_owned()))),
            OpKind::Ne => Ok(Op::Ne(Operand::Str(v.to_owned()))),
            OpKind::Has => Ok(Op::Has(Operand::Str(v.to_owned()))),
            OpKind::Gt | OpKind::Ge | OpKind::Lt | OpKind::Le => match lua_number(v) {
                Some(n) => Ok(numeric(self.0, n)),
                None => Err(E::custom(format!("{v:?} is not a number"))),
            },
            OpKind::Regex { case_insensitive } => {
                let re = RegexBuilder::new(v)
                    .case_insensitive(case_insensitive)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid regular expression {v:?} (Rust regex syntax: no look-around or back-references): {}",
                            reason(&e.to_string())
                        ))
                    })?;
                Ok(Op::Regex(Pattern {
                    source: v.to_owned(),
                    case_insensitive,
                    re,
                }))
            }
            OpKind::IpMatch => v
                .parse::<IpCidr>()
                .map(|c| Op::IpMatch(IpMatcher::new(vec![c])))
                .map_err(E::custom),
            OpKind::In => Err(de::Error::invalid_type(de::Unexpected::Str(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Op, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Op, E> {
        self.visit_f64(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Op, E> {
        match self.0 {
            OpKind::Eq => Ok(Op::Eq(Operand::Num(v))),
            OpKind::Ne => Ok(Op::Ne(Operand::Num(v))),
            OpKind::Has => Ok(Op::Has(Operand::Num(v))),
            OpKind::Gt | OpKind::Ge | OpKind::Lt | OpKind::Le => Ok(numeric(self.0, v)),
            _ => Err(de::Error::invalid_type(de::Unexpected::Float(v), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Op, E> {
        match self.0 {
            OpKind::Eq => Ok(Op::Eq(Operand::Null)),
            OpKind::Ne => Ok(Op::Ne(Operand::Null)),
            _ => Err(de::Error::invalid_type(de::Unexpected::Unit, &self)),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Op, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Op, A::Error> {
        match self.0 {
            OpKind::In => {
                let mut items = Vec::new();
                while let Some(o) = seq.next_element_seed(ScalarSeed)? {
                    items.push(o);
                }
                Ok(Op::In(items))
            }
            OpKind::IpMatch => {
                let mut blocks = Vec::new();
                while let Some(c) = seq.next_element::<IpCidr>()? {
                    blocks.push(c);
                }
                if blocks.is_empty() {
                    return Err(de::Error::custom("ipmatch needs at least one address"));
                }
                Ok(Op::IpMatch(IpMatcher::new(blocks)))
            }
            _ => Err(de::Error::invalid_type(de::Unexpected::Seq, &self)),
        }
    }
}

fn numeric(kind: OpKind, n: f64) -> Op {
    match kind {
        OpKind::Gt => Op::Gt(n),
        OpKind::Ge => Op::Ge(n),
        OpKind::Lt => Op::Lt(n),
        _ => Op::Le(n),
    }
}

/// The last non-empty line of a (multi-line) regex error: the reason.
fn reason(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(s)
        .to_owned()
}

/// An item of an `in` list.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Operand;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Operand, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for ScalarSeed {
    type Value = Operand;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Operand, E> {
        Ok(Operand::Str(v.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Operand, E> {
        Ok(Operand::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Operand, E> {
        Ok(Operand::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Operand, E> {
        Ok(Operand::Num(v))
    }
}
