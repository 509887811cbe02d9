use serde::de::IgnoredAny;
use serde_json::Value;

use super::*;
use proptest::prelude::*;

fn read(text: &str) -> Result<Value, Error> {
    Reader::read_all(text)
}

/// Whether two values are the same JSON, floats within a few steps of the last bit
/// (serde_json's float reader is not always correctly rounded; the standard library's
/// is).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y
                        || (x.is_sign_negative() == y.is_sign_negative()
                            && x.to_bits().abs_diff(y.to_bits()) <= 4)
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, x), (l, y))| k == l && same(x, y))
        }
        _ => a == b,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no infinities or NaN", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
        "[\"\\\\/a-z\u{0}-\u{1f}\u{7f}-\u{a0}é😀]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((".{0,12}", inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A document with one change to its text, which most often makes it invalid JSON.
fn damaged() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just(""),
        Just("\""),
        Just("\\"),
        Just("\\u"),
        Just("\\ud800"),
        Just("\\udc00"),
        Just("\\ud83d\\ude00"),
        Just(","),
        Just(":"),
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just("-"),
        Just("0"),
        Just("01"),
        Just("."),
        Just("e"),
        Just("E+"),
        Just("1e400"),
        Just("18446744073709551616"),
        Just("-9223372036854775809"),
        Just("-0"),
        Just("tru"),
        Just("null"),
        Just(" \t\r\n"),
        Just("\u{1}"),
        Just("é"),
    ];
    (any_json(), any::<prop::sample::Index>(), 0..4usize, pieces).prop_map(
        |(value, at, cut, piece)| {
            let text = serde_json::to_string_pretty(&value).unwrap();
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            format!("{}{piece}{}", &text[..at], &text[end..])
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn reads_what_serde_json_writes(value in any_json()) {
        let compact = serde_json::to_string(&value).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        for text in [compact, pretty] {
            let read = read(&text).unwrap();
            prop_assert!(same(&read, &value), "{text}: {read}");
            prop_assert_eq!(Reader::new(&text).skip().unwrap(), text.as_str());
        }
    }

    #[test]
    fn takes_and_refuses_what_serde_json_does(text in damaged()) {
        let ours = read(&text);
        let theirs = serde_json::from_str::<Value>(&text);
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => prop_assert!(same(ours, theirs), "{text}"),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{text:?}: ours {ours:?}, serde_json's {theirs:?}"),
        }
        // Skipping checks what serde_json's skipping checks (numbers as written, not
        // their range), and the surrogates of the strings it skips besides.
        let ours = Reader::read_all::<IgnoredAny>(&text);
        let theirs = serde_json::from_str::<IgnoredAny>(&text);
        match (&ours, &theirs) {
            (Err(error), Ok(_)) => prop_assert!(error.to_string().contains("surrogate"), "{text:?}: {error}"),
            _ => prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: {:?}", text, theirs),
        }
    }
}

#[test]
fn strings_are_borrowed_unless_they_hold_an_escape() {
    let plain = "plain text that is longer than sixteen bytes";
    let text = format!("\"{plain}\"");
    assert!(matches!(Reader::new(&text).string(), Ok(Cow::Borrowed(s)) if s == plain));
    let text = r#""a\"b\u00e9\ud83d\ude00 and more text after the escapes""#;
    assert!(matches!(
        Reader::new(text).string(),
        Ok(Cow::Owned(s)) if s == "a\"bé😀 and more text after the escapes"
    ));
    let borrowed: Vec<&str> = Reader::read_all(r#"["a", "bc"]"#).unwrap();
    assert_eq!(borrowed, ["a", "bc"]);
}

#[test]
fn says_what_is_wrong_and_where() {
    let cases = [
        ("", "EOF while parsing a value at line 1 column 0"),
        ("{\"a\": 1,}", "key must be a string at line 1 column 8"),
        ("[1, 2", "EOF while parsing a list at line 1 column 5"),
        ("{\n  \"a\": tru\n}", "expected value at line 2 column 7"),
        (
            "\"a\u{1}\"",
            "control character in a string at line 1 column 2",
        ),
        ("\"\\x\"", "invalid escape at line 1 column 2"),
        (
            "\"\\ud800\"",
            "lone leading surrogate in hex escape at line 1 column 7",
        ),
        ("01", "trailing characters at line 1 column 1"),
        ("1e400", "number out of range at line 1 column 0"),
        ("[1] 2", "trailing characters at line 1 column 4"),
    ];
    for (text, message) in cases {
        assert_eq!(read(text).unwrap_err().to_string(), message, "{text:?}");
    }
}

#[test]
fn a_wrong_type_names_both_and_where() {
    let error = Reader::read_all::<Vec<String>>("[\"a\", 7]").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid type: number, expected a string at line 1 column 6"
    );
    let error = Reader::read_all::<u8>("300").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid value: integer `300`, expected u8 at line 1 column 3"
    );
}

#[test]
fn nests_as_deep_as_serde_json_and_no_deeper() {
    for depth in [126, 127, 128, 100_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let theirs = serde_json::from_str::<Value>(&text).is_ok();
        assert_eq!(read(&text).is_ok(), theirs, "depth {depth}");
        assert_eq!(Reader::new(&text).skip().is_ok(), theirs, "depth {depth}");
        if !theirs {
            assert!(
                read(&text)
                    .unwrap_err()
                    .to_string()
                    .starts_with("recursion limit exceeded")
            );
        }
    }
}

#[test]
fn numbers_are_read_as_serde_json_reads_them() {
    for text in [
        "0",
        "-0",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1.5",
        "-1e-7",
        "2E+3",
    ] {
        let theirs: Value = serde_json::from_str(text).unwrap();
        let ours = read(text).unwrap();
        assert_eq!(ours, theirs, "{text}");
        assert_eq!(
            (ours.is_u64(), ours.is_i64(), ours.is_f64()),
            (theirs.is_u64(), theirs.is_i64(), theirs.is_f64()),
            "{text}"
        );
    }
}

#[test]
fn entries_walk_an_object_and_skip_returns_the_text() {
    let mut reader = Reader::new(r#" {"a": [1, {"b": null}], "c": "d", "e": {}} "#);
    let mut seen = Vec::new();
    reader
        .entries(|reader, key| {
            seen.push((key.into_owned(), reader.skip()?.to_owned()));
            Ok::<_, Error>(())
        })
        .unwrap();
    reader.end().unwrap();
    assert_eq!(
        seen,
        [
            ("a".to_owned(), r#"[1, {"b": null}]"#.to_owned()),
            ("c".to_owned(), r#""d""#.to_owned()),
            ("e".to_owned(), "{}".to_owned()),
        ]
    );
    assert!(
        Reader::new("[]")
            .entries(|_, _| Ok::<_, Error>(()))
            .is_err()
    );
}

/// A pod with some of its fields set to any JSON at all.
fn any_pod() -> impl Strategy<Value = String> {
    let paths: &[&[&str]] = &[
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "labels"],
        &["metadata", "labels", "app"],
        &["metadata", "annotations", "graceful.dev/policy"],
        &["metadata", "ownerReferences"],
        &["spec"],
        &["spec", "containers"],
        &["spec", "terminationGracePeriodSeconds"],
        &["spec", "initContainers"],
        &["spec", "os"],
    ];
    let container: &[&str] = &[
        "name",
        "image",
        "restartPolicy",
        "lifecycle",
        "readinessProbe",
        "ports",
        "env",
        "envFrom",
    ];
    let edits = prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(paths).prop_map(|p| p.to_vec()),
                prop::sample::select(container).prop_map(|f| vec!["spec", "containers", "0", f]),
            ],
            any_json(),
        ),
        0..3,
    );
    edits.prop_map(|edits| {
        let mut pod = serde_json::json!({
            "metadata": {"name": "web-1", "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "web-1", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "app:1",
                                     "ports": [{"containerPort": 8080}],
                                     "env": [{"name": "A", "value": "b"}],
                                     "readinessProbe": {"periodSeconds": 5, "httpGet": {"port": 8080}},
                                     "lifecycle": {"preStop": {"sleep": {"seconds": 3}}}}]}
        });
        for (path, value) in edits {
            let pointer: String = path.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect();
            if let Some(slot) = pod.pointer_mut(&pointer) {
                *slot = value;
            }
        }
        serde_json::to_string(&pod).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The webhook reads pods with this reader, `graceful mutate` with serde_json.
    #[test]
    fn reads_a_pod_as_serde_json_does(text in any_pod()) {
        use crate::mutate::PodView;
        let ours = Reader::read_all::<PodView>(&text);
        let theirs = serde_json::from_str::<PodView>(&text);
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours, theirs),
            (Err(_), Err(_)) => {}
            // serde_json reads a struct from a list of its fields in order, which no
            // apiserver sends; this reader wants an object.
            (Err(error), Ok(_)) => prop_assert!(
                error.to_string().starts_with("invalid type: sequence"),
                "{text}: {error}"
            ),
            (Ok(_), Err(error)) => prop_assert!(false, "{text}: serde_json refused: {error}"),
        }
    }
}
