//! YAML as kubectl reads it, and written so that kubectl reads it back the same.
//!
//! Why this reader: kubectl turns YAML into JSON with sigs.k8s.io/yaml, which decodes
//! into an untyped value with its fork of go-yaml v2, a YAML 1.1 reader. YAML 1.2
//! libraries (serde_yaml and its forks) read the same text differently: `0400` is octal
//! 256 to kubectl and a string or 400 to them; `yes`, `On`, `N` are booleans to kubectl
//! and strings to them. A preview that reads otherwise than kubectl changes manifests it
//! only meant to pass through. No Rust crate resolves scalars as go-yaml v2 does, so this
//! module takes the syntax (events, with scalar styles, tags, anchors and aliases) from
//! `yaml-rust2`'s parser and resolves each scalar by go-yaml v2's rules itself. The rules,
//! each with its source, are listed in [`resolve_plain`] and tested in `yaml/tests.rs`.
//!
//! Documents are cut at their `---` and `...` lines, whose bytes are kept, so that a
//! document graceful does not change is printed exactly as it was read. YAML forbids
//! those two markers at the start of a line inside any scalar, so cutting there is exact.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// One document of a stream: where its bytes are and what kubectl reads in them.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The document's bytes in the stream, its `---` line included. The spans of a
    /// stream's documents follow each other and cover all of it.
    pub span: Range<usize>,
    /// `None` for a document with no node (only comments, or an empty `---`).
    pub value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    /// 1-based, in the whole stream.
    pub line: usize,
    pub message: String,
}

/// Whether kubectl reads the stream as JSON: its decoder takes a stream that starts with
/// `{` (after white space) for JSON.
pub fn is_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// The documents of a YAML stream, as kubectl reads them.
pub fn documents(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut out: Vec<Document> = Vec::new();
    // Comments before the first `---` belong to the document after them.
    let mut leading: Option<usize> = None;
    // Lines before the current chunk, counted as the chunks go by.
    let mut lines_before = 0;
    for (span, explicit) in cut(text) {
        let chunk = &text[span.clone()];
        let value = read_one(chunk).map_err(|mut error| {
            error.line += lines_before;
            error
        })?;
        lines_before += chunk.matches('\n').count();
        // A document of only `null` holds no object, as an empty one.
        let value = value.filter(|value| !value.is_null());
        if value.is_none() && !explicit && out.is_empty() {
            leading = Some(leading.unwrap_or(span.start));
            continue;
        }
        let start = leading.take().unwrap_or(span.start);
        out.push(Document {
            span: start..span.end,
            value,
        });
    }
    if let Some(start) = leading {
        out.push(Document {
            span: start..text.len(),
            value: None,
        });
    }
    Ok(out)
}

/// The documents of a JSON stream (one or more values one after the other).
pub fn json_documents(text: &str) -> Result<Vec<Document>, serde_json::Error> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut out: Vec<Document> = Vec::new();
    let mut start = 0;
    while let Some(value) = stream.next() {
        let value = value?;
        let end = stream.byte_offset();
        out.push(Document {
            span: start..end,
            value: Some(value),
        });
        start = end;
    }
    match out.last_mut() {
        Some(last) => last.span.end = text.len(),
        None => out.push(Document {
            span: 0..text.len(),
            value: None,
        }),
    }
    Ok(out)
}

/// Cuts a stream at its document markers: each span starts at a `---` line (`true`) or at
/// the start of the stream (`false`), and ends after a `...` line or where the next
/// starts.
fn cut(text: &str) -> Vec<(Range<usize>, bool)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut explicit = false;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let end = at + line.len();
        if is_marker(line, "---") && at > start {
            spans.push((start..at, explicit));
            start = at;
        }
        if is_marker(line, "---") {
            explicit = true;
        }
        if is_marker(line, "...") {
            spans.push((start..end, explicit));
            start = end;
            explicit = false;
        }
        at = end;
    }
    if start < text.len() || spans.is_empty() {
        spans.push((start..text.len(), explicit));
    }
    spans
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// How deep collections may nest. No manifest comes near; past it the values built would
/// be dropped, copied and skipped by recursion deep enough to overflow a thread's stack
/// (serde_json reads JSON only to 128).
const MAX_NESTING: usize = 1000;

/// A node being built: a sequence, or a mapping with the key it waits a value for; each
/// with its anchor and the [`Aliasing::decoded`] count where it opened.
enum Open {
    Sequence(Vec<Value>, usize, u64),
    Mapping(Map<String, Value>, Option<Key>, usize, u64),
}

/// go-yaml v2's guard against alias bombs ("billion laughs"), which kubectl applies: a
/// document may not be made mostly of aliases' copies, the share allowed falling from
/// 99 % to 10 % as it grows from 400,000 to 4,000,000 nodes. An alias counts the nodes
/// it copies, checked before they are copied.
#[derive(Default)]
struct Aliasing {
    decoded: u64,
    aliased: u64,
}

impl Aliasing {
    const LOW: u64 = 400_000;
    const HIGH: u64 = 4_000_000;

    /// One node read, copying `copied` more from an alias.
    fn count(&mut self, copied: u64) -> Result<(), String> {
        self.decoded += 1 + copied;
        self.aliased += copied;
        let ratio = self.aliased as f64 / self.decoded as f64;
        if self.aliased > 100 && self.decoded > 1000 && ratio > Self::allowed(self.decoded) {
            return Err("the document contains excessive aliasing".to_owned());
        }
        Ok(())
    }

    fn allowed(decoded: u64) -> f64 {
        match decoded {
            ..=Self::LOW => 0.99,
            Self::HIGH.. => 0.10,
            _ => 0.99 - 0.89 * ((decoded - Self::LOW) as f64 / (Self::HIGH - Self::LOW) as f64),
        }
    }
}

/// A mapping key as read, before it becomes a JSON string.
enum Key {
    Merge,
    Text(String),
}

fn read_one(chunk: &str) -> Result<Option<Value>, YamlError> {
    let mut parser = Parser::new_from_str(chunk);
    let mut stack: Vec<Open> = Vec::new();
    // Each anchored value with the nodes it holds.
    let mut anchors: HashMap<usize, (Value, u64)> = HashMap::new();
    let mut aliasing = Aliasing::default();
    let mut root = None;
    loop {
        let (event, mark) = parser.next_token().map_err(|error| YamlError {
            line: error.marker().line(),
            message: error.info().to_owned(),
        })?;
        let error = |message: String| YamlError {
            line: mark.line(),
            message,
        };
        let opened = aliasing.decoded;
        let (value, anchor, merge_key, nodes) = match event {
            Event::StreamEnd => return Ok(root),
            Event::Scalar(text, style, anchor, tag) => {
                let merge = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
                let value = scalar(&text, style, tag.as_ref()).map_err(error)?;
                aliasing.count(0).map_err(error)?;
                (value, anchor, merge, 1)
            }
            Event::Alias(id) => {
                let (value, nodes) = anchors
                    .get(&id)
                    .ok_or_else(|| error("an alias to an unknown anchor".to_owned()))?;
                aliasing.count(*nodes).map_err(error)?;
                (value.clone(), 0, false, *nodes)
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() == MAX_NESTING => {
                return Err(error(format!(
                    "collections nest deeper than {MAX_NESTING} levels"
                )));
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Sequence(Vec::new(), anchor, opened));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Mapping(Map::new(), None, anchor, opened));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                aliasing.count(0).map_err(error)?;
                match stack.pop() {
                    Some(Open::Sequence(items, anchor, opened)) => (
                        Value::Array(items),
                        anchor,
                        false,
                        aliasing.decoded - opened,
                    ),
                    Some(Open::Mapping(map, _, anchor, opened)) => {
                        (Value::Object(map), anchor, false, aliasing.decoded - opened)
                    }
                    None => return Err(error("an unbalanced collection".to_owned())),
                }
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, (value.clone(), nodes));
        }
        match stack.last_mut() {
            None => root = Some(value),
            Some(Open::Sequence(items, ..)) => items.push(value),
            Some(Open::Mapping(_, key @ None, ..)) => {
                *key = Some(if merge_key {
                    Key::Merge
                } else {
                    Key::Text(key_text(value).map_err(error)?)
                });
            }
            Some(Open::Mapping(map, key @ Some(_), ..)) => match key.take() {
                Some(Key::Text(key)) => {
                    map.insert(key, value);
                }
                Some(Key::Merge) => merge(map, value).map_err(error)?,
                None => {}
            },
        }
    }
}

/// `<<: *base` or `<<: [*a, *b]`: go-yaml v2 sets the merged keys as it meets them (over
/// keys set before, under keys set after), the first map of a list winning.
fn merge(map: &mut Map<String, Value>, value: Value) -> Result<(), String> {
    let maps = match value {
        Value::Object(merged) => vec![merged],
        Value::Array(items) => items
            .into_iter()
            .rev()
            .map(|item| match item {
                Value::Object(merged) => Ok(merged),
                _ => Err("a merge key (<<) takes maps only".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("a merge key (<<) takes a map or a list of maps".to_owned()),
    };
    for merged in maps {
        map.extend(merged);
    }
    Ok(())
}

/// A key as sigs.k8s.io/yaml makes it a JSON key: numbers and booleans become their text.
fn key_text(key: Value) -> Result<String, String> {
    match key {
        Value::String(text) => Ok(text),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Number(number) if number.is_f64() => {
            Ok(go_float_key(number.as_f64().unwrap_or_default()))
        }
        Value::Number(number) => Ok(number.to_string()),
        Value::Null => Err("a map key that is null cannot become JSON".to_owned()),
        Value::Array(_) | Value::Object(_) => {
            Err("a map key that is a list or a map cannot become JSON".to_owned())
        }
    }
}

/// A float key as Go's `strconv.FormatFloat(f, 'g', -1, 32)` writes it, which
/// sigs.k8s.io/yaml uses: the shortest digits of the 32-bit float, with an exponent of
/// at least two digits (`1e+06`) when it is below -4 or at least 6.
fn go_float_key(value: f64) -> String {
    let single = value as f32;
    let scientific = format!("{single:e}");
    let (digits, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        format!("{single}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{digits}e{sign}{:02}", exponent.abs())
    }
}

const YAML_TAG: &str = "tag:yaml.org,2002:";

/// A scalar's value: quoted and block scalars are strings, plain ones are resolved, and
/// an explicit `!!type` tag is obeyed.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let core = tag
        .filter(|tag| tag.handle == YAML_TAG)
        .map(|tag| tag.suffix.as_str());
    match (core, tag) {
        // A tag of its own (`!foo`): go-yaml keeps the text.
        (None, Some(_)) => Ok(Value::String(text.to_owned())),
        (None, None) if style != TScalarStyle::Plain => Ok(Value::String(text.to_owned())),
        (None, None) => json_value(text, resolve_plain(text)),
        (Some("str" | "timestamp"), _) => Ok(Value::String(text.to_owned())),
        (Some("binary"), _) => Err("kubectl cannot read !!binary values".to_owned()),
        (Some(wanted), _) => {
            let resolved = resolve_plain(text);
            match (wanted, resolved.kind) {
                // JSON writes the float 256.0 as 256, as it writes the integer.
                ("float", ScalarKind::Int) => Ok(resolved.value),
                (wanted, kind) if kind.tag() == wanted => json_value(text, resolved),
                (wanted, kind) => Err(format!(
                    "cannot decode !!{} `{text}` as a !!{wanted}",
                    kind.tag()
                )),
            }
        }
    }
}

/// The JSON value of a resolved scalar: JSON has no infinity and no NaN, and kubectl
/// fails on them.
fn json_value(text: &str, resolved: Resolved) -> Result<Value, String> {
    if resolved.kind == ScalarKind::Float && resolved.value.is_null() {
        return Err(format!(
            "kubectl cannot send `{text}`: JSON has no such number"
        ));
    }
    Ok(resolved.value)
}

/// What a plain scalar resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl ScalarKind {
    fn tag(self) -> &'static str {
        match self {
            ScalarKind::Null => "null",
            ScalarKind::Bool => "bool",
            ScalarKind::Int => "int",
            ScalarKind::Float => "float",
            ScalarKind::Str => "str",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub kind: ScalarKind,
    /// The JSON value kubectl sends for it.
    pub value: Value,
}

/// A plain (unquoted, untagged) scalar as go-yaml v2's `resolve()` reads it, then as
/// sigs.k8s.io/yaml turns it into JSON. The rules, in go-yaml v2's order:
///
/// 1. Exact words (resolve.go, `resolveMapList`): `y Y yes Yes YES true True TRUE on On
///    ON` are true; `n N no No NO false False FALSE off Off OFF` are false; `~ null Null
///    NULL` and the empty scalar are null; `.nan .inf -.inf +.inf` in three cases are
///    floats, which JSON cannot hold (kubectl fails on them; so does this reader).
/// 2. Only a scalar that starts with a digit or a sign goes on (resolve.go,
///    `resolveTable`); one that starts with `.` may still be a float (`.5`).
/// 3. A timestamp (`2001-12-14`, `2001-12-14T21:59:43Z`; resolve.go, `parseTimestamp`)
///    stays a string when decoded into an untyped value, as kubectl does (go-yaml v2
///    decode.go keeps timestamps as strings for interface{} targets). Every timestamp
///    has a `-` after its year, which no number has, so the steps below leave it a
///    string without a check of their own.
/// 4. With every `_` removed, an integer as Go's `strconv.ParseInt(s, 0, 64)` reads it:
///    optional sign, `0x` hex, `0o` or a leading `0` octal, `0b` binary, else decimal;
///    then unsigned 64-bit (`ParseUint`).
/// 5. Else a float of the form `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
///    (resolve.go, `yamlStyleFloat`): so `08` and `09`, not octal, are the floats 8 and 9.
/// 6. Anything else is a string.
///
/// JSON then carries a float with no fraction as an integer (Go's `json.Marshal` writes
/// `1e3` as `1000`).
pub fn resolve_plain(text: &str) -> Resolved {
    let word = match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some((ScalarKind::Bool, Value::Bool(true)))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some((ScalarKind::Bool, Value::Bool(false)))
        }
        "" | "~" | "null" | "Null" | "NULL" => Some((ScalarKind::Null, Value::Null)),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => Some((ScalarKind::Float, Value::Null)),
        _ => None,
    };
    if let Some((kind, value)) = word {
        return Resolved { kind, value };
    }
    let string = || Resolved {
        kind: ScalarKind::Str,
        value: Value::String(text.to_owned()),
    };
    let first = text.as_bytes()[0];
    if first == b'.' {
        return yaml_float(text).map_or_else(string, float);
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return string();
    }
    let plain = text.replace('_', "");
    if let Some(int) = go_parse_int(&plain) {
        return Resolved {
            kind: ScalarKind::Int,
            value: int,
        };
    }
    yaml_float(&plain).map_or_else(string, float)
}

fn float(value: f64) -> Resolved {
    // Go's json.Marshal writes a whole float below 1e21 without a fraction.
    let value = if value.fract() == 0.0 && value.abs() < 9.2e18 {
        Value::from(value as i64)
    } else {
        Number::from_f64(value).map_or(Value::Null, Value::Number)
    };
    Resolved {
        kind: ScalarKind::Float,
        value,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`.
fn go_parse_int(text: &str) -> Option<Value> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        (8, octal)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        (2, binary)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let value = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Value::from(value))
    } else {
        Some(Value::from(magnitude))
    }
}

/// go-yaml v2's `yamlStyleFloat`, parsed.
fn yaml_float(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut at = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |at: &mut usize| {
        let start = *at;
        while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at - start
    };
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        if digits(&mut at) == 0 {
            return None;
        }
    } else {
        if digits(&mut at) == 0 {
            return None;
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            digits(&mut at);
        }
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        if digits(&mut at) == 0 {
            return None;
        }
    }
    (at == bytes.len()).then(|| text.parse().ok()).flatten()
}

/// A string as a YAML scalar that kubectl reads back as that same string: plain when
/// plain is safe, else single-quoted, or double-quoted (with JSON's escapes, which YAML
/// shares) when it holds a line break or another control character.
pub fn string_scalar(text: &str) -> String {
    if is_safe_plain(text) {
        text.to_owned()
    } else if text.chars().all(|c| !c.is_control()) {
        // Single quotes escape nothing but themselves, as kubectl writes them.
        format!("'{}'", text.replace('\'', "''"))
    } else {
        Value::String(text.to_owned()).to_string()
    }
}

/// Plain only for simple words that resolve to a string: letters, digits and `._/-+@=`,
/// with `:` inside but never before a space; nothing that starts like an indicator.
fn is_safe_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let bytes = text.as_bytes();
    let allowed = text.char_indices().all(|(at, c)| {
        c.is_ascii_alphanumeric()
            || "._/-+@=".contains(c)
            || (c == ':' && at + 1 < bytes.len() && bytes[at + 1] != b' ')
            || (c == ' ' && at > 0 && at + 1 < bytes.len() && bytes[at + 1] != b' ')
    });
    allowed
        && (first.is_ascii_alphanumeric() || first == '/' || first == '.')
        && resolve_plain(text).kind == ScalarKind::Str
}

/// A value as block-style YAML that kubectl reads as the same JSON value; keys keep their
/// order.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_node(&mut out, value, 0, Place::Top);
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Top,
    /// After `key:`.
    Value,
    /// After `- `.
    Item,
}

fn write_node(out: &mut String, value: &Value, indent: usize, place: Place) {
    // The first key or item after `- ` stays on the dash's line.
    let pad = |out: &mut String, index: usize| {
        if !(place == Place::Item && index == 0) {
            out.push_str(&" ".repeat(indent));
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            if place == Place::Value {
                out.push('\n');
            }
            for (index, (key, child)) in map.iter().enumerate() {
                pad(out, index);
                out.push_str(&string_scalar(key));
                out.push(':');
                // Lists sit at their key's indentation, as kubectl writes them.
                let child_indent = match child {
                    Value::Array(items) if !items.is_empty() => indent,
                    _ => indent + 2,
                };
                write_node(out, child, child_indent, Place::Value);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if place == Place::Value {
                out.push('\n');
            }
            for (index, item) in items.iter().enumerate() {
                pad(out, index);
                out.push_str("- ");
                write_node(out, item, indent + 2, Place::Item);
            }
        }
        scalar => {
            if place == Place::Value {
                out.push(' ');
            }
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => string_scalar(text),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

#[cfg(test)]
mod tests;
