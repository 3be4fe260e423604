//! A fast path for the `Signature-Input` every agent actually sends:
//!
//! ```text
//! sig=("@method" "@authority" "@path" "signature-key");created=1730217600
//! ```
//!
//! one label, an inner list of plain strings without parameters, and integer, string or
//! boolean signature parameters, all in canonical RFC 9651 form (no optional spaces, no
//! leading zeros, no escapes, no repeated parameter). For such an input the strict
//! re-serialisation that becomes `@signature-params` is the input itself, so it can be
//! sliced instead of rebuilt, and nothing needs the general parser's allocations.
//!
//! Anything else returns `None` and goes through `sfv` as before. The fast path therefore
//! never decides a refusal the general path would not make: for every input it accepts,
//! it returns exactly what the general path returns (a property test below checks this
//! against `sfv` on generated and mutated inputs).

use super::{
    Component, CoveredComponent, Derived, ParamValue, ParsedInput, bare_component, check_field_name, label_of,
    signature_params_from,
};
use crate::error::Error;

/// Largest integer RFC 9651 allows: 15 digits.
const MAX_INTEGER_DIGITS: usize = 15;

/// Most covered components and signature parameters the fast path holds (on the stack);
/// more go to the general parser.
const MAX_FAST_COMPONENTS: usize = 16;
const MAX_FAST_PARAMETERS: usize = 12;

/// The one component parameter the fast path reads (Web Bot Auth's `Signature-Agent`
/// member), in its canonical form up to the opening quote of its String.
const KEY_PARAMETER: &str = ";key=\"";

/// A covered component as written: its name and, for `"name";key="member"`, the member and
/// the whole identifier.
#[derive(Clone, Copy)]
struct Name<'a> {
    name: &'a str,
    member: Option<(&'a str, &'a str)>,
}

/// Parses a canonical single-member `Signature-Input`, or `None` to use the general
/// parser.
pub(super) fn parse(field: &str, max_components: usize) -> Option<Result<ParsedInput, Error>> {
    let bytes = field.as_bytes();
    let label_end = key_end(bytes, 0)?;
    if bytes.get(label_end) != Some(&b'=') || bytes.get(label_end + 1) != Some(&b'(') {
        return None;
    }
    let value_start = label_end + 1;

    // The inner list: `"a" "b" …` with single spaces, then `)`; a field may carry one
    // `;key="member"` parameter.
    let mut names = [Name { name: "", member: None }; MAX_FAST_COMPONENTS];
    let mut name_count = 0;
    let mut at = value_start + 1;
    if bytes.get(at) == Some(&b')') {
        at += 1;
    } else {
        loop {
            if bytes.get(at) != Some(&b'"') {
                return None;
            }
            let start = at + 1;
            let end = plain_string_end(bytes, start)?;
            let name = &field[start..end];
            at = end + 1;
            let member = match bytes.get(at..at + KEY_PARAMETER.len()) {
                Some(parameter) if parameter == KEY_PARAMETER.as_bytes() && !name.starts_with('@') => {
                    let member_start = at + KEY_PARAMETER.len();
                    let member_end = plain_string_end(bytes, member_start)?;
                    at = member_end + 1;
                    Some((&field[member_start..member_end], &field[start - 1..at]))
                }
                _ => None,
            };
            *names.get_mut(name_count)? = Name { name, member };
            name_count += 1;
            match bytes.get(at) {
                // One space, then the next string (the loop's first check wants its `"`).
                Some(b' ') => at += 1,
                Some(b')') => {
                    at += 1;
                    break;
                }
                // Item parameters, extra spaces or garbage.
                _ => return None,
            }
        }
    }

    // Signature parameters: `;key=integer`, `;key="string"` or `;key` (true).
    let mut params = [("", ParamValue::Other); MAX_FAST_PARAMETERS];
    let mut param_count = 0;
    while at < bytes.len() {
        if bytes[at] != b';' {
            return None;
        }
        let key_start = at + 1;
        let key_stop = key_end(bytes, key_start)?;
        let key = &field[key_start..key_stop];
        if params[..param_count].iter().any(|(seen, _)| *seen == key) {
            return None;
        }
        at = key_stop;
        if bytes.get(at) != Some(&b'=') {
            *params.get_mut(param_count)? = (key, ParamValue::Other);
            param_count += 1;
            continue;
        }
        at += 1;
        match bytes.get(at) {
            Some(b'"') => {
                let start = at + 1;
                let end = plain_string_end(bytes, start)?;
                *params.get_mut(param_count)? = (key, ParamValue::String(&field[start..end]));
                param_count += 1;
                at = end + 1;
            }
            Some(b'0'..=b'9') => {
                let start = at;
                while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                let digits = &field[start..at];
                if digits.len() > MAX_INTEGER_DIGITS || (digits.len() > 1 && digits.starts_with('0')) {
                    return None;
                }
                // A decimal point would make it a Decimal.
                if bytes.get(at) == Some(&b'.') {
                    return None;
                }
                *params.get_mut(param_count)? = (key, ParamValue::Integer(digits.parse().ok()?));
                param_count += 1;
            }
            // Negative numbers, tokens, byte sequences, booleans written out: general path.
            _ => return None,
        }
    }

    Some(build(
        field,
        label_end,
        value_start,
        &names[..name_count],
        &params[..param_count],
        max_components,
    ))
}

/// The same checks, in the same order, as the general path's `from_inner_list`.
fn build(
    field: &str,
    label_end: usize,
    value_start: usize,
    names: &[Name<'_>],
    params: &[(&str, ParamValue<'_>)],
    max_components: usize,
) -> Result<ParsedInput, Error> {
    if names.len() > max_components {
        return Err(Error::invalid_signature("too many covered components"));
    }
    let mut components: Vec<CoveredComponent> = Vec::with_capacity(names.len());
    for &Name { name, member } in names {
        let (field_name, mut identifier) = bare_component(name);
        let component = if name.starts_with('@') {
            Component::Derived(Derived::from_name(name).ok_or(Error::invalid_signature("unknown derived component"))?)
        } else {
            check_field_name(name)?;
            let key = member.map(|(member, written)| {
                // Canonical as written: a plain String parameter serialises as itself.
                identifier = written.to_owned().into();
                member.to_owned()
            });
            Component::Field {
                name: field_name,
                sf: false,
                key,
            }
        };
        if components.iter().any(|c| c.identifier == identifier) {
            return Err(Error::invalid_signature("a component is covered twice"));
        }
        components.push(CoveredComponent { component, identifier });
    }
    let params = signature_params_from(params.iter().copied())?;
    Ok(ParsedInput {
        label: label_of(&field[..label_end]),
        components,
        params,
        signature_params: field[value_start..].to_owned(),
    })
}

/// Most members [`string_member`] reads before leaving the field to the general parser.
const MAX_FAST_MEMBERS: usize = 8;

/// The content of member `key` of a Dictionary written canonically with String members
/// only (`a="x", b="y"`: a comma and one space between members, no parameters, plain
/// Strings, no key twice), `Some(None)` when it has no such member. `None` for any other
/// shape, which the general parser decides: so a field is refused or read exactly as the
/// general parser would.
pub(crate) fn string_member<'a>(field: &'a str, key: &str) -> Option<Option<&'a str>> {
    let bytes = field.as_bytes();
    let mut keys = [""; MAX_FAST_MEMBERS];
    let mut count = 0;
    let mut found = None;
    let mut at = 0;
    loop {
        let key_stop = key_end(bytes, at)?;
        let name = &field[at..key_stop];
        if bytes.get(key_stop..key_stop + 2) != Some(b"=\"")
            || count == MAX_FAST_MEMBERS
            || keys[..count].contains(&name)
        {
            return None;
        }
        keys[count] = name;
        count += 1;
        let start = key_stop + 2;
        let end = plain_string_end(bytes, start)?;
        if name == key {
            found = Some(&field[start..end]);
        }
        at = end + 1;
        if at == bytes.len() {
            return Some(found);
        }
        if bytes.get(at..at + 2) != Some(b", ") {
            return None;
        }
        at += 2;
    }
}

/// The index of the closing quote of an sf-string whose content starts at `start`, when
/// the content needs no unescaping: escapes and anything outside visible ASCII are the
/// general parser's job (`None`).
pub(crate) fn plain_string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    loop {
        match *bytes.get(end)? {
            b'"' => return Some(end),
            b'\\' => return None,
            b if !(0x20..=0x7e).contains(&b) => return None,
            _ => end += 1,
        }
    }
}

/// The end of an RFC 9651 key starting at `start`: `lcalpha / "*"` then
/// `lcalpha / DIGIT / "_" / "-" / "." / "*"`.
pub(crate) fn key_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start) {
        Some(b'a'..=b'z' | b'*') => {}
        _ => return None,
    }
    // The first character's class is part of the rest's, so the scan may start on it.
    let mut end = start;
    while bytes
        .get(end)
        .is_some_and(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'))
    {
        end += 1;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn general(field: &str, max: usize) -> Result<ParsedInput, Error> {
        super::super::parse_input_general(field, max)
    }

    fn same(a: &Result<ParsedInput, Error>, b: &Result<ParsedInput, Error>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                a.label == b.label
                    && a.components == b.components
                    && a.params == b.params
                    && a.signature_params == b.signature_params
            }
            (Err(a), Err(b)) => a.code() == b.code() && a.detail() == b.detail(),
            _ => false,
        }
    }

    fn check(field: &str) {
        for max in [2, 24] {
            if let Some(fast) = parse(field, max) {
                let slow = general(field, max);
                assert!(same(&fast, &slow), "{field:?}: fast {fast:?} vs general {slow:?}");
            }
        }
    }

    #[test]
    fn the_common_shape_takes_the_fast_path_and_matches_the_general_parser() {
        let field = r#"sig=("@method" "@authority" "@path" "signature-key");created=1730217600"#;
        assert!(parse(field, 24).is_some());
        check(field);
        let parsed = parse(field, 24).unwrap().unwrap();
        assert_eq!(parsed.signature_params, &field[4..]);
        assert_eq!(parsed.params.created, Some(1730217600));
    }

    #[test]
    fn non_canonical_forms_fall_back_to_the_general_parser() {
        for field in [
            r#"sig=( "@method");created=1"#,
            r#"sig=("@method"  "@path");created=1"#,
            r#"sig=("@method");created=01"#,
            r#"sig=("@method");created=-1"#,
            r#"sig=("@method");created=1.5"#,
            r#"sig=("@method");created=1;created=2"#,
            r#"sig=("a\"b")"#,
            r#"sig=("@method";req)"#,
            r#"sig=("@method"), other=("@path")"#,
            r#"sig=("@method"); created=1"#,
            r#"sig=("@method");alg=token"#,
            r#"sig=("@method");x=?0"#,
            r#"Sig=("@method")"#,
            r#"sig=("@method");created=1 "#,
        ] {
            assert!(parse(field, 24).is_none(), "{field}");
        }
    }

    #[test]
    fn integers_of_up_to_fifteen_digits_take_the_fast_path() {
        let fifteen = r#"sig=("@method");created=123456789012345"#;
        assert_eq!(
            parse(fifteen, 24).unwrap().unwrap().params.created,
            Some(123_456_789_012_345)
        );
        check(fifteen);
        // A lone zero is canonical; a leading zero before other digits is not.
        assert_eq!(
            parse(r#"sig=("@method");created=0"#, 24)
                .unwrap()
                .unwrap()
                .params
                .created,
            Some(0)
        );
        assert!(parse(r#"sig=("@method");created=00"#, 24).is_none());
        let sixteen = r#"sig=("@method");created=1234567890123456"#;
        assert!(parse(sixteen, 24).is_none());
        assert!(general(sixteen, 24).is_err());
    }

    #[test]
    fn more_components_or_parameters_than_the_stack_holds_go_to_the_general_parser() {
        let names = |n: usize| (0..n).map(|i| format!("\"h{i}\"")).collect::<Vec<_>>().join(" ");
        let params = |n: usize| (0..n).map(|i| format!(";p{i}={i}")).collect::<String>();
        let fits = format!("sig=({}){}", names(MAX_FAST_COMPONENTS), params(MAX_FAST_PARAMETERS));
        assert!(parse(&fits, 64).is_some());
        check(&fits);
        for field in [
            format!("sig=({})", names(MAX_FAST_COMPONENTS + 1)),
            format!("sig=(){}", params(MAX_FAST_PARAMETERS + 1)),
        ] {
            assert!(parse(&field, 64).is_none(), "{field}");
            assert!(general(&field, 64).is_ok(), "{field}");
        }
    }

    #[test]
    fn components_are_separated_by_exactly_one_space() {
        let parsed = parse(r#"sig=("@method" "@path" "x")"#, 24).unwrap().unwrap();
        assert_eq!(parsed.components.len(), 3);
        for field in [
            r#"sig=("@method" )"#,
            r#"sig=("@method"  "@path")"#,
            r#"sig=("@method" x)"#,
        ] {
            assert!(parse(field, 24).is_none(), "{field}");
        }
    }

    #[test]
    fn refusals_match_the_general_parser() {
        for field in [
            r#"sig=("@method" "@method");created=1"#,
            r#"sig=("@foo");created=1"#,
            r#"sig=("Content-Type");created=1"#,
            r#"sig=("");created=1"#,
            r#"sig=("a" "b" "c");created=1"#,
            r#"sig=("@method");created="1""#,
            r#"sig=("@method");keyid=1"#,
            r#"sig=("@method");created"#,
            r#"sig=();created=1"#,
            r#"sig=("@method");expires=1;nonce="n";tag="t";alg="ed25519";keyid="k";x;y=2"#,
        ] {
            assert!(parse(field, 2).is_some(), "{field} should be fast");
            check(field);
        }
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("@method".to_owned()),
            Just("@authority".to_owned()),
            Just("@path".to_owned()),
            Just("@query".to_owned()),
            Just("signature-key".to_owned()),
            Just("content-digest".to_owned()),
            Just("@Method".to_owned()),
            "[ -~]{0,6}",
            // Closed by the generator's own quotes: `"signature-agent";key="agent1"`.
            Just(r#"signature-agent";key="agent1"#.to_owned()),
            Just(r#"@authority";key="a"#.to_owned()),
            Just(r#"x";key="a";sf"#.to_owned()),
            "[ -~]{0,4}".prop_map(|member| format!(r#"signature-agent";key="{member}"#)),
        ]
    }

    fn param() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("created"),
            Just("expires"),
            Just("keyid"),
            Just("alg"),
            Just("nonce"),
            Just("tag"),
            Just("x")
        ];
        let value = prop_oneof![
            (0u64..2_000_000_000).prop_map(|n| format!("={n}")),
            "[ -~]{0,5}".prop_map(|s| format!("=\"{s}\"")),
            Just(String::new()),
            Just("=-5".to_owned()),
            Just("=007".to_owned()),
            Just("=1.5".to_owned()),
            Just("=tok".to_owned()),
        ];
        (key, value).prop_map(|(k, v)| format!(";{k}{v}"))
    }

    fn field() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("sig"), Just("a1"), Just("*x"), Just("Sig")],
            proptest::collection::vec(component(), 0..6),
            proptest::collection::vec(param(), 0..5),
        )
            .prop_map(|(label, names, params)| {
                let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                format!("{label}=({}){}", list.join(" "), params.concat())
            })
    }

    #[test]
    fn a_field_narrowed_to_a_dictionary_member_takes_the_fast_path() {
        let field = r#"sig=("@authority" "signature-agent";key="agent1");created=1;keyid="k";tag="web-bot-auth""#;
        let parsed = parse(field, 24).unwrap().unwrap();
        check(field);
        let agent = &parsed.components[1];
        assert_eq!(agent.identifier, r#""signature-agent";key="agent1""#);
        assert_eq!(
            agent.component,
            Component::Field {
                name: "signature-agent".into(),
                sf: false,
                key: Some("agent1".to_owned())
            }
        );
        for field in [
            r#"sig=("@method";key="a")"#,
            r#"sig=("a";key="m";sf)"#,
            r#"sig=("a";sf)"#,
            r#"sig=("a";key=m)"#,
            r#"sig=("a";key="m\"")"#,
            r#"sig=("a";keys="m")"#,
        ] {
            assert!(parse(field, 24).is_none(), "{field}");
        }
    }

    /// What the general parser reads as member `key` (`None` for a refusal, `Some(None)`
    /// when absent), for the Dictionaries `string_member` reads.
    fn general_member(field: &str, key: &str) -> Option<Option<String>> {
        let dictionary = super::super::parse_dictionary_strict(field)?;
        Some(
            dictionary
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, entry)| match entry {
                    sfv::ListEntry::Item(sfv::Item {
                        bare_item: sfv::BareItem::String(s),
                        ..
                    }) => s.as_str().to_owned(),
                    other => format!("{other:?}"),
                }),
        )
    }

    #[test]
    fn a_canonical_dictionary_of_strings_is_read_without_the_general_parser() {
        let field = r#"agent1="https://bots.example", other="https://evil.example""#;
        assert_eq!(string_member(field, "agent1"), Some(Some("https://bots.example")));
        assert_eq!(string_member(field, "agent2"), Some(None));
        for field in [
            r#"agent1="https://a.example",agent2="https://b.example""#,
            r#"agent1="https://a.example",  agent2="https://b.example""#,
            r#"agent1="https://a.example", agent1="https://b.example""#,
            r#"agent1="https://a.example";p=1"#,
            r#"agent1=?1"#,
            r#"agent1="a\"b""#,
            r#"Agent1="https://a.example""#,
            r#"agent1="https://a.example" "#,
            r#""https://a.example""#,
            "",
        ] {
            assert_eq!(string_member(field, "agent1"), None, "{field}");
        }
    }

    fn dictionary() -> impl Strategy<Value = String> {
        let key = prop_oneof![Just("agent1"), Just("a"), Just("b"), Just("A"), Just("*x")];
        let value = prop_oneof![
            "[ -~]{0,6}".prop_map(|s| format!("\"{s}\"")),
            Just("\"https://bots.example\"".to_owned()),
            Just("?1".to_owned()),
            Just("tok".to_owned()),
            Just("\"x\";p=1".to_owned()),
        ];
        let separator = prop_oneof![Just(", "), Just(","), Just(" , "), Just(",  ")];
        proptest::collection::vec((key, value, separator), 1..10).prop_map(|members| {
            let mut field = String::new();
            for (i, (key, value, separator)) in members.iter().enumerate() {
                if i > 0 {
                    field.push_str(separator);
                }
                field.push_str(&format!("{key}={value}"));
            }
            field
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn whatever_member_the_fast_reader_returns_the_general_parser_returns(
            field in dictionary(),
            key in prop_oneof![Just("agent1"), Just("a"), Just("c")],
        ) {
            if let Some(fast) = string_member(&field, key) {
                prop_assert_eq!(Some(fast.map(str::to_owned)), general_member(&field, key), "{}", field);
            }
        }

        #[test]
        fn single_byte_mutations_never_make_the_member_readers_disagree(
            field in dictionary(),
            at in any::<proptest::sample::Index>(),
            byte in 0x20u8..0x7f,
        ) {
            let mut bytes = field.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let field = String::from_utf8(bytes).unwrap();
            if let Some(fast) = string_member(&field, "agent1") {
                prop_assert_eq!(Some(fast.map(str::to_owned)), general_member(&field, "agent1"), "{}", field);
            }
        }

        #[test]
        fn whatever_the_fast_path_accepts_the_general_parser_decides_identically(field in field()) {
            check(&field);
        }

        #[test]
        fn single_byte_mutations_never_make_the_paths_disagree(
            field in field(),
            at in any::<proptest::sample::Index>(),
            byte in 0x20u8..0x7f,
        ) {
            let mut bytes = field.into_bytes();
            let i = at.index(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
            if !bytes.is_empty() {
                bytes[i] = byte;
            }
            check(&String::from_utf8(bytes).unwrap());
        }
    }
}
