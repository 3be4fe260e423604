//! The httpwg structured-field-tests (RFC 8941/9651 parser conformance) through our own
//! parsing entry points. Source and licence: tests/vectors/README.md.
//!
//! What reaches which entry point, and so what is covered:
//!
//! * `dictionary` tests → [`parse_dictionary_strict`], the parser of `Signature-Input`,
//!   `Signature`, `Signature-Key` and `Content-Digest`.
//! * `item` tests (binary, boolean, item, number, string, token, …) → the same parser with
//!   the item as a dictionary member value (`k=<item>`): every item we read (a scheme
//!   token, a key parameter string, a signature byte sequence, `created`) reaches us that way.
//! * `list` tests (list, listlist, param-list, key-generated lists) → the `;sf`
//!   component path of [`SignatureBase::build`], which re-serialises a covered field
//!   strictly; the base line must be the test's canonical form.
//!
//! Every `must_fail` case must be refused. Every valid case must parse to `expected`
//! (dictionaries, items) or serialise to its canonical form (lists). `can_fail` cases may do
//! either, but if they parse the result must be right. The deliberate deviations are listed in
//! [`DEVIATIONS`] with the reason, and each is asserted to still behave as described.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sfv::{BareItem, ListEntry, Parameters};
use tower_aauth::engine::{ParsedInput, RequestTarget, SignatureBase, parse_dictionary_strict};

/// Cases decided differently from the test suite on purpose or by construction, with why.
/// Each is asserted to still behave as described, so the list cannot go stale.
const DEVIATIONS: &[(&str, &str, &str)] = &[
    (
        "dictionary.json",
        "duplicate key dictionary",
        "RFC 9651 keeps the last duplicate member; we refuse the dictionary so that an appended \
         duplicate label or digest cannot silently win (attack catalogue LBL-04, DIG-05)",
    ),
    (
        "key-generated.json",
        "0x2c in dictionary key",
        "`a,a=1` is the key `a` twice: refused as a duplicate, as above",
    ),
    (
        "item.json",
        "trailing space",
        "`1 \\t ` must fail as a top-level item (only SP may trail it), but a dictionary member may \
         be followed by OWS, tab included; as a member value it is valid (and HTTP strips \
         trailing whitespace from field values anyway)",
    ),
    (
        "list.json",
        "empty list",
        "an empty field has no serialisation (RFC 9651 §4.1: the field is not sent); a covered \
         `;sf` field that is empty is refused rather than signed as an empty line",
    ),
    (
        "key-generated.json",
        "0x2c in parameterised list key",
        "`foo;a, a=1` is not a list but is a valid dictionary; the `;sf` path does not know a \
         field's type and takes the first of Dictionary, List, Item that parses",
    ),
];

const DICTIONARY_AND_ITEM_FILES: &[&str] = &[
    "dictionary.json",
    "param-dict.json",
    "binary.json",
    "boolean.json",
    "item.json",
    "number.json",
    "number-generated.json",
    "string.json",
    "string-generated.json",
    "token.json",
    "token-generated.json",
    "key-generated.json",
    "examples.json",
];

const LIST_FILES: &[&str] = &[
    "list.json",
    "listlist.json",
    "param-list.json",
    "param-listlist.json",
    "token.json",
    "key-generated.json",
    "examples.json",
];

fn load(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/tests/vectors/structured-field-tests/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect(file)).expect("JSON")
}

fn raw_lines(test: &Value) -> Vec<String> {
    test["raw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

fn deviation(file: &str, name: &str) -> bool {
    DEVIATIONS.iter().any(|(f, n, _)| *f == file && *n == name)
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut block = [0u8; 5];
        block[..chunk.len()].copy_from_slice(chunk);
        let bits = block.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn bare_json(item: &BareItem) -> Value {
    match item {
        BareItem::Integer(i) => Value::from(i64::from(*i)),
        BareItem::Decimal(d) => Value::from(f64::from(*d)),
        BareItem::String(s) => Value::from(s.as_str()),
        BareItem::ByteSequence(b) => serde_json::json!({"__type": "binary", "value": base32(b)}),
        BareItem::Boolean(b) => Value::from(*b),
        BareItem::Token(t) => serde_json::json!({"__type": "token", "value": t.as_str()}),
        BareItem::Date(d) => serde_json::json!({"__type": "date", "value": i64::from(d.unix_seconds())}),
        BareItem::DisplayString(s) => serde_json::json!({"__type": "displaystring", "value": s.as_str()}),
    }
}

fn params_json(params: &Parameters) -> Value {
    Value::Array(
        params
            .iter()
            .map(|(k, v)| Value::Array(vec![Value::from(k.as_str()), bare_json(v)]))
            .collect(),
    )
}

fn entry_json(entry: &ListEntry) -> Value {
    match entry {
        ListEntry::Item(item) => Value::Array(vec![bare_json(&item.bare_item), params_json(&item.params)]),
        ListEntry::InnerList(list) => Value::Array(vec![
            Value::Array(
                list.items
                    .iter()
                    .map(|i| Value::Array(vec![bare_json(&i.bare_item), params_json(&i.params)]))
                    .collect(),
            ),
            params_json(&list.params),
        ]),
    }
}

/// JSON equality with decimals compared as the RFC's three-digit fractions.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-9
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Parses a test through the dictionary entry point; `None` when refused.
fn parse_as_dictionary(test: &Value) -> Option<Value> {
    let lines = raw_lines(test);
    match test["header_type"].as_str().unwrap() {
        "dictionary" => {
            let dict = parse_dictionary_strict(&lines.join(", "))?;
            Some(Value::Array(
                dict.iter()
                    .map(|(k, v)| Value::Array(vec![Value::from(k.as_str()), entry_json(v)]))
                    .collect(),
            ))
        }
        "item" => {
            // An item is the value of a dictionary member. A top-level parse discards
            // leading spaces (RFC 9651 §4.2); a member value has none to discard.
            let dict = parse_dictionary_strict(&format!("k={}", lines.join(", ").trim_start_matches(' ')))?;
            if dict.len() != 1 {
                return None;
            }
            match dict.get("k")? {
                entry @ ListEntry::Item(_) => Some(entry_json(entry)),
                ListEntry::InnerList(_) => None,
            }
        }
        other => panic!("not a dictionary or item test: {other}"),
    }
}

#[derive(Default, Debug)]
struct Tally {
    must_fail_refused: usize,
    valid_matched: usize,
    can_fail: usize,
}

#[test]
fn dictionary_and_item_tests_through_parse_dictionary_strict() {
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for file in DICTIONARY_AND_ITEM_FILES {
        for test in load(file) {
            let header_type = test["header_type"].as_str().unwrap();
            if header_type == "list" {
                continue;
            }
            let name = test["name"].as_str().unwrap();
            let parsed = parse_as_dictionary(&test);
            if deviation(file, name) {
                assert_eq!(
                    parsed.is_some(),
                    test["must_fail"] == true,
                    "{file}: {name}: the documented deviation no longer holds"
                );
            } else if test["must_fail"] == true {
                if parsed.is_some() {
                    failures.push(format!("{file}: {name}: must fail but parsed"));
                }
                tally.must_fail_refused += 1;
            } else if test["can_fail"] == true {
                if let Some(parsed) = parsed
                    && !same(&parsed, &test["expected"])
                {
                    failures.push(format!(
                        "{file}: {name}: parsed to {parsed}, expected {}",
                        test["expected"]
                    ));
                }
                tally.can_fail += 1;
            } else {
                match parsed {
                    Some(parsed) if same(&parsed, &test["expected"]) => tally.valid_matched += 1,
                    Some(parsed) => failures.push(format!("{file}: {name}: {parsed} != {}", test["expected"])),
                    None => failures.push(format!("{file}: {name}: valid but refused")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The totals are what the vendored files hold; a shrinking count means skipped cases.
    assert_eq!(tally.must_fail_refused, 626, "{tally:?}");
    assert_eq!(tally.valid_matched, 584, "{tally:?}");
}

fn sf_base_line(lines: &[String]) -> Result<String, &'static str> {
    let mut headers = HeaderMap::new();
    let name = HeaderName::from_static("x-sf");
    for line in lines {
        // A value HTTP itself cannot carry never reaches the verifier.
        let value = HeaderValue::from_str(line).map_err(|_| "not a valid HTTP field value")?;
        headers.append(name.clone(), value);
    }
    let input = ParsedInput::parse(r#"sig=("x-sf";sf);created=1"#, 24).unwrap();
    let target = RequestTarget {
        method: "GET",
        scheme: "https",
        authority: "resource.example",
        path: "/",
        query: None,
    };
    let mut base = SignatureBase::new();
    base.build(&input, &target, &headers)
        .map_err(|_| "refused by the ;sf path")?;
    let first = base.as_str().lines().next().unwrap();
    Ok(first.strip_prefix("\"x-sf\";sf: ").unwrap().to_owned())
}

#[test]
fn list_tests_through_the_sf_component_path() {
    let (mut refused, mut matched) = (0, 0);
    let mut failures = Vec::new();
    for file in LIST_FILES {
        for test in load(file) {
            if test["header_type"] != "list" {
                continue;
            }
            let name = test["name"].as_str().unwrap();
            let lines = raw_lines(&test);
            let line = sf_base_line(&lines);
            if deviation(file, name) {
                assert_eq!(
                    line.is_ok(),
                    test["must_fail"] == true,
                    "{file}: {name}: the documented deviation no longer holds"
                );
                if line.is_ok() {
                    assert!(parse_dictionary_strict(&lines.join(", ")).is_some());
                }
                continue;
            }
            if test["must_fail"] == true {
                match line {
                    Err(_) => refused += 1,
                    Ok(line) => failures.push(format!("{file}: {name}: must fail, base line {line:?}")),
                }
                continue;
            }
            // The canonical form, or the raw form when it is already canonical.
            let canonical = match test.get("canonical") {
                Some(Value::Array(lines)) => lines.iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join(", "),
                _ => lines.join(", "),
            };
            match line {
                Ok(line) if line == canonical => matched += 1,
                Ok(line) if test["can_fail"] == true => failures.push(format!("{file}: {name}: {line:?}")),
                Ok(line) => failures.push(format!("{file}: {name}: {line:?} != {canonical:?}")),
                Err(_) if test["can_fail"] == true => {}
                Err(why) => failures.push(format!("{file}: {name}: valid but {why}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(refused, 199);
    assert_eq!(matched, 101);
}
