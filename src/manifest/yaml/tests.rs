use serde_json::{Value, json};

use super::*;

fn read(text: &str) -> Value {
    let documents = documents(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
    assert_eq!(documents.len(), 1, "{text:?}");
    documents[0].value.clone().unwrap_or(Value::Null)
}

/// Each scalar after `v: ` and the JSON value kubectl sends for it. The meanings are
/// those of go-yaml v2 as sigs.k8s.io/yaml vendors it (goyaml.v2/decode_test.go, the
/// `map[string]interface{}` cases, and goyaml.v2/resolve.go), then of sigs.k8s.io/yaml's
/// own YAMLToJSON tests (yaml_test.go) for what JSON makes of them.
const SCALARS: &[(&str, &str)] = &[
    // Booleans, every case form (resolve.go `resolveMapList`; decode_test "Bools from spec").
    ("y", "true"),
    ("Y", "true"),
    ("yes", "true"),
    ("Yes", "true"),
    ("YES", "true"),
    ("on", "true"),
    ("On", "true"),
    ("ON", "true"),
    ("true", "true"),
    ("True", "true"),
    ("TRUE", "true"),
    ("n", "false"),
    ("N", "false"),
    ("no", "false"),
    ("No", "false"),
    ("NO", "false"),
    ("off", "false"),
    ("Off", "false"),
    ("OFF", "false"),
    ("false", "false"),
    ("False", "false"),
    ("FALSE", "false"),
    // Not booleans: other case mixes and longer words.
    ("yEs", r#""yEs""#),
    ("oN", r#""oN""#),
    ("nope", r#""nope""#),
    // Null (decode_test "Nulls from spec"; yaml_test `t: ` and `t: null`).
    ("~", "null"),
    ("null", "null"),
    ("Null", "null"),
    ("NULL", "null"),
    ("", "null"),
    // Integers (decode_test "Ints from spec" and the `v:` cases).
    ("10", "10"),
    ("-10", "-10"),
    ("+685_230", "685230"),
    ("02472256", "685230"),
    ("0400", "256"),
    ("0o17", "15"),
    ("0x_0A_74_AE", "685230"),
    ("0xA", "10"),
    ("0b10", "2"),
    ("-0b101010", "-42"),
    ("0", "0"),
    ("9223372036854775807", "9223372036854775807"),
    ("-9223372036854775808", "-9223372036854775808"),
    ("18446744073709551615", "18446744073709551615"),
    // Not octal, so a float, which JSON writes whole (resolve.go `yamlStyleFloat`).
    ("08", "8"),
    ("09", "9"),
    // Floats (decode_test "Floats from spec").
    ("0.1", "0.1"),
    (".1", "0.1"),
    ("-.1", "-0.1"),
    ("6.8523e+5", "685230"),
    ("685.230_15e+03", "685230.15"),
    ("685_230.15", "685230.15"),
    ("123456e1", "1234560"),
    ("1.0", "1"),
    // Strings that look like something else (decode_test bug 1243827, issue #24, base 60).
    ("-b_c", r#""-b_c""#),
    ("+b_c", r#""+b_c""#),
    ("50cent_of_dollar", r#""50cent_of_dollar""#),
    ("<foo>", r#""<foo>""#),
    ("1:1", r#""1:1""#),
    ("3s", r#""3s""#),
    ("1.2.3.4", r#""1.2.3.4""#),
    ("0x", r#""0x""#),
    ("+", r#""+""#),
    // Timestamps stay strings in an untyped value (decode_test "implicit timestamp tag into
    // interface", "explicit timestamp tag into interface").
    ("2015-01-01", r#""2015-01-01""#),
    ("2015-02-24T18:19:39Z", r#""2015-02-24T18:19:39Z""#),
    ("2015-02-24 18:19:39", r#""2015-02-24 18:19:39""#),
    ("!!timestamp \"2015-01-01\"", r#""2015-01-01""#),
    // Quoted and block scalars are strings (decode_test "Quoted values").
    ("'0400'", r#""0400""#),
    ("\"yes\"", r#""yes""#),
    ("'NO'", r#""NO""#),
    ("'on'", r#""on""#),
    ("\"10\"", r#""10""#),
    ("|\n  yes\n", r#""yes\n""#),
    // Explicit tags (decode_test "Explicit tags", "Non-specific tag").
    ("!!str 0400", r#""0400""#),
    ("!!str yes", r#""yes""#),
    ("!!float '1.1'", "1.1"),
    ("!!float 0", "0"),
    ("!!int '12'", "12"),
    ("!!null ''", "null"),
    ("! test", r#""test""#),
    ("!custom 10", r#""10""#),
];

#[test]
fn scalars_mean_what_they_mean_to_kubectl() {
    for (scalar, expected) in SCALARS {
        let text = format!("v: {scalar}\n");
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(read(&text)["v"], expected, "v: {scalar}");
    }
}

#[test]
fn numbers_that_json_cannot_hold_are_errors_as_in_kubectl() {
    for scalar in [".inf", ".Inf", "-.INF", "+.inf", ".nan", ".NaN"] {
        let error = documents(&format!("v: {scalar}\n")).unwrap_err();
        assert!(error.message.contains("JSON has no such number"), "{error}");
    }
    assert!(documents("v: !!binary gIGC\n").is_err());
    assert!(documents("v: !!int abc\n").is_err());
}

#[test]
fn keys_become_strings_as_sigs_yaml_makes_them() {
    // yaml_test.go TestYAMLToJSON: `1: a`, the big integer and `1e+36` keys.
    assert_eq!(read("1: a\n"), json!({"1": "a"}));
    assert_eq!(
        read("1000000000000000000000000000000000000: a\n"),
        json!({"1e+36": "a"})
    );
    assert_eq!(read("1e+36: a\n"), json!({"1e+36": "a"}));
    assert_eq!(read("\"1.2\": a\n"), json!({"1.2": "a"}));
    assert_eq!(read("1.5: a\n"), json!({"1.5": "a"}));
    assert_eq!(read("yes: a\nOff: b\n"), json!({"true": "a", "false": "b"}));
    assert_eq!(read("0x10: a\n"), json!({"16": "a"}));
    // yaml_test.go: `~: a` is an error.
    assert!(documents("~: a\n").is_err());
}

#[test]
fn anchors_aliases_and_merge_keys_are_followed() {
    // decode_test: anchors and aliases, and yaml-test-suite 3GZX (an anchor redefined).
    assert_eq!(
        read("a: &x 1\nb: &y [2]\nc: *x\nd: *y\n"),
        json!({"a": 1, "b": [2], "c": 1, "d": [2]})
    );
    assert_eq!(
        read("f: &anchor Foo\ns: *anchor\no: &anchor Bar\nr: *anchor\n"),
        json!({"f": "Foo", "s": "Foo", "o": "Bar", "r": "Bar"})
    );
    // `<<` merges: later keys override, the first of a list wins.
    let text = "base: &base {a: 1, b: 2}\nother: &other {b: 3, c: 4}\n\
                one: {<<: *base, b: 9}\nlist: {<<: [*base, *other]}\n";
    let value = read(text);
    assert_eq!(value["one"], json!({"a": 1, "b": 9}));
    assert_eq!(value["list"], json!({"a": 1, "b": 2, "c": 4}));
    // A quoted `<<` is an ordinary key.
    assert_eq!(read("'<<': {a: 1}\n"), json!({"<<": {"a": 1}}));
}

#[test]
fn an_alias_bomb_is_refused_as_kubectl_refuses_it_and_aliases_in_measure_are_not() {
    // Found by tests/fuzz.rs's kind of input: nine levels of ten aliases each would copy
    // 10^9 nodes; go-yaml v2 (decode.go, allowedAliasRatio) refuses the document.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
    }
    let error = documents(&text).expect_err("a bomb");
    assert!(error.message.contains("excessive aliasing"), "{error}");
    // A thousand aliases of a small map: a large share of the document, well allowed.
    let mut text = String::from("base: &base {a: 1, b: 2}\nitems:\n");
    text.push_str(&"- *base\n".repeat(1000));
    let value = read(&text);
    assert_eq!(value["items"].as_array().map(Vec::len), Some(1000));
    assert_eq!(value["items"][999], json!({"a": 1, "b": 2}));
}

#[test]
fn collections_nested_past_the_limit_are_refused_not_a_stack_overflow() {
    // Found by tests/fuzz.rs: deep nesting overflowed the stack. The parser limits flow
    // collections itself; block ones are counted here.
    let deep = |levels: usize| format!("{}{}\n", "[".repeat(levels), "]".repeat(levels));
    let error = documents(&deep(100_000)).expect_err("too deep");
    assert!(error.message.contains("recursion limit"), "{error}");
    let error = documents(&"- ".repeat(100_000)).expect_err("too deep");
    assert!(error.message.contains("deeper than 1000"), "{error}");
    let error = documents(&"- ".repeat(MAX_NESTING + 1)).expect_err("too deep");
    assert!(error.message.contains("deeper than 1000"), "{error}");
    let mut value = &read(&format!("{}x\n", "- ".repeat(MAX_NESTING)));
    for _ in 0..MAX_NESTING {
        value = &value[0];
    }
    assert_eq!(value, &json!("x"));
}

#[test]
fn duplicate_keys_keep_the_last_as_kubectl_does() {
    // yaml_test.go TestYAMLToJSONStrict: not strict, so no error.
    assert_eq!(read("foo: bar\nfoo: baz\n"), json!({"foo": "baz"}));
}

#[test]
fn documents_are_cut_at_their_markers_and_cover_the_stream() {
    let text = "# leading comment\n---\na: 1\n---\n---\n# only a comment\n--- {b: 2}\n...\nc: 3\n";
    let documents = documents(text).unwrap();
    let values: Vec<Option<Value>> = documents.iter().map(|d| d.value.clone()).collect();
    assert_eq!(
        values,
        [
            Some(json!({"a": 1})),
            None,
            None,
            Some(json!({"b": 2})),
            Some(json!({"c": 3}))
        ]
    );
    assert_eq!(documents[0].span.start, 0);
    for pair in documents.windows(2) {
        assert_eq!(pair[0].span.end, pair[1].span.start);
    }
    assert_eq!(documents.last().unwrap().span.end, text.len());
    assert_eq!(&text[documents[3].span.clone()], "--- {b: 2}\n...\n");
}

#[test]
fn a_marker_is_a_whole_word_at_the_start_of_a_line() {
    let text = "a: |\n  ---\n---x: 1\n";
    assert_eq!(read(text), json!({"a": "---\n", "---x": 1}));
    let text = "a: |\n  --- not a marker\nb: 1\n";
    assert_eq!(read(text), json!({"a": "--- not a marker\n", "b": 1}));
}

#[test]
fn an_error_names_its_line_in_the_stream() {
    let error = documents("a: 1\n---\nb: [unclosed\n").unwrap_err();
    assert!(error.line >= 3, "{error}");
}

#[test]
fn json_streams_keep_their_spans() {
    let text = "{\"a\": 1}\n{\"b\": \"yes\"}\n";
    assert!(is_json(text));
    assert!(!is_json("a: 1\n"));
    let documents = json_documents(text).unwrap();
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[1].value, Some(json!({"b": "yes"})));
    assert_eq!(documents[1].span.end, text.len());
}

/// Strings that YAML 1.1 would read as something else come out quoted, and every value
/// reads back as itself.
#[test]
fn written_yaml_reads_back_as_the_same_value() {
    let mut strings: Vec<String> = SCALARS
        .iter()
        .map(|(scalar, _)| scalar.trim_matches(['\'', '"']).to_owned())
        .collect();
    strings.extend(
        [
            "nginx:1.25",
            "a: b",
            "a #b",
            " lead",
            "trail ",
            "line\nbreak",
            "tab\there",
            "-",
            "- item",
            "?",
            "*star",
            "&amp",
            "!bang",
            "%pct",
            "@at",
            "`tick",
            "{a}",
            "[a]",
            "<<",
            "=",
            "'",
            "\"",
            "é",
            "http://example.com/a?b=c",
        ]
        .map(String::from),
    );
    let value = json!({
        "strings": strings,
        "numbers": [0, -1, 256, 1.5, 18446744073709551615u64],
        "flags": [true, false, null],
        "empty": {"list": [], "map": {}},
        "nested": [[1, [2]], {"a": [{"b": "yes"}]}],
        "keys": {"yes": 1, "0400": 2, "": 3, "a b": 4},
    });
    let text = to_yaml(&value);
    assert_eq!(read(&text), value, "{text}");
    for word in ["yes", "NO", "on", "0400", "08", "1.0", "~", "null"] {
        assert_eq!(string_scalar(word), format!("'{word}'"));
    }
    assert_eq!(string_scalar("nginx:1.25"), "nginx:1.25");
    assert_eq!(string_scalar("web"), "web");
    assert_eq!(string_scalar("it's"), "'it''s'");
    assert_eq!(string_scalar("a\nb"), "\"a\\nb\"");
}
