//! SPEC §1 wire strings, byte for byte.

use super::*;
use proptest::prelude::Strategy;

fn prep(body: &str, tables: &TableSet) -> Result<String, QrError> {
    let b = body.as_bytes().to_vec();
    prepare_event(&b, tables).map(|p| String::from_utf8(p.finish(0xd8833dd3).to_vec()).unwrap())
}

#[test]
fn waiter_call_as_in_the_seed() {
    let t = TableSet::default();
    let body = r#"{"code":"waiter_call","table":1000028,"invoice":null,"order":null,
        "table_repr":{"id":1000028,"name":"6","max_guests":50}}"#;
    assert_eq!(
        prep(body, &t).unwrap(),
        r#"{"hash":"0xd8833dd3","code":"waiter_call","table":1000028,"invoice":null,"order":null,"table_repr":{"id":1000028,"name":"6","max_guests":50}}"#
    );
}

#[test]
fn keys_come_out_in_spec_order_whatever_order_they_came_in() {
    let t = TableSet::default();
    let body =
        r#"{"table_repr":null,"order":{"b":1,"a":"Блюдо"},"code":"save_order","table":null}"#;
    assert_eq!(
        prep(body, &t).unwrap(),
        r#"{"hash":"0xd8833dd3","code":"save_order","table":null,"invoice":null,"order":{"b":1,"a":"Блюдо"},"table_repr":null}"#
    );
}

#[test]
fn table_repr_is_filled_from_the_registered_table_when_omitted() {
    let tables = Tables::new([TableRepr {
        id: 7,
        name: "Терраса 7".into(),
        max_guests: 4,
    }]);
    let snap = tables.snapshot();
    assert_eq!(
        prep(r#"{"code":"waiter_call","table":7}"#, &snap).unwrap(),
        r#"{"hash":"0xd8833dd3","code":"waiter_call","table":7,"invoice":null,"order":null,"table_repr":{"id":7,"name":"Терраса 7","max_guests":4}}"#
    );
    // An explicit null stays null; an unregistered table gets null.
    assert!(prep(
        r#"{"code":"waiter_call","table":7,"table_repr":null}"#,
        &snap
    )
    .unwrap()
    .ends_with("\"table_repr\":null}"));
    assert!(prep(r#"{"code":"waiter_call","table":8}"#, &snap)
        .unwrap()
        .ends_with("\"table_repr\":null}"));
}

#[test]
fn refusals_name_the_problem() {
    let t = TableSet::default();
    let cases: &[(&str, &str)] = &[
        ("{", "invalid JSON"),
        ("[1]", "the body must be a JSON object"),
        (r#"{"table":1}"#, "missing field \"code\""),
        (r#"{"code":"Waiter"}"#, "field \"code\" must match"),
        (r#"{"code":""}"#, "field \"code\" must match"),
        (r#"{"code":7}"#, "field \"code\" must be a string"),
        (
            r#"{"code":"a","table":"1"}"#,
            "field \"table\" must be an integer or null",
        ),
        (
            r#"{"code":"a","table":1.5}"#,
            "field \"table\" must be an integer or null",
        ),
        (
            r#"{"code":"a","invoice":[]}"#,
            "field \"invoice\" must be an object or null",
        ),
        (
            r#"{"code":"a","order":"x"}"#,
            "field \"order\" must be an object or null",
        ),
        (
            r#"{"code":"a","table_repr":{"id":1,"name":"x"}}"#,
            "missing field \"max_guests\"",
        ),
        (
            r#"{"code":"a","table_repr":{"id":1,"name":2,"max_guests":1}}"#,
            "field \"name\" must be a string",
        ),
        (
            r#"{"code":"a","hash":"0x00000000"}"#,
            "unknown field \"hash\"",
        ),
        (r#"{"code":"a","code":"b"}"#, "duplicate field \"code\""),
    ];
    for (body, want) in cases {
        let err = prep(body, &t).unwrap_err().to_string();
        assert!(err.starts_with(want), "{body}: {err}");
    }
    let long = format!(r#"{{"code":"a{}"}}"#, "b".repeat(63));
    assert!(prep(&long, &t).is_ok());
    let too_long = format!(r#"{{"code":"a{}"}}"#, "b".repeat(64));
    assert_eq!(prep(&too_long, &t), Err(QrError::BadCode));
}

#[test]
fn an_event_is_at_most_the_http_body_limit() {
    let t = TableSet::default();
    // A valid event padded with whitespace to exactly the limit, then one
    // byte more: the C ABI has no body limit of its own, and the store takes
    // nothing larger than a log segment.
    let event = r#"{"code":"a","order":{"x":1}}"#;
    let at_limit = format!("{event}{}", " ".repeat(MAX_EVENT_BYTES - event.len()));
    assert!(prep(&at_limit, &t).is_ok());
    let over = format!("{at_limit} ");
    assert_eq!(prep(&over, &t), Err(QrError::TooLarge));
    assert_eq!(
        QrError::TooLarge.to_string(),
        "the event is longer than 1048576 bytes"
    );
}

/// The `code` of the serialized event, quotes included.
fn code_of(body: &str) -> Result<String, QrError> {
    let json = prep(body, &TableSet::default())?;
    let rest = json
        .strip_prefix(r#"{"hash":"0xd8833dd3","code":"#)
        .unwrap();
    Ok(rest[..rest.find(r#","table":"#).unwrap()].to_string())
}

#[test]
fn a_plain_code_is_copied_and_an_escaped_one_decoded_first() {
    // Around the eight-byte words of `valid_code`, and the longest.
    for n in [1, 2, 7, 8, 9, 15, 16, 17, 63, 64] {
        let code: String = "a_1z9".chars().cycle().take(n).collect();
        let body = format!(r#"{{"code":"{code}"}}"#);
        assert_eq!(code_of(&body), Ok(format!("\"{code}\"")), "{code}");
    }
    assert_eq!(code_of(r#"{"code":"\u0061bc"}"#), Ok(r#""abc""#.into()));
    assert_eq!(code_of(r#"{"code":"a\u005fb"}"#), Ok(r#""a_b""#.into()));
    assert_eq!(code_of(r#"{"code": "abc" }"#), Ok(r#""abc""#.into()));
    let long = format!(r#""a{}""#, "b".repeat(64));
    for bad in [
        r#""a\n""#,
        r#""\u0041bc""#,
        r#""Abc""#,
        r#""1a""#,
        r#""_a""#,
        r#""a-b""#,
        r#""a b""#,
        r#""aé""#,
        r#""блюдо""#,
        r#""""#,
        &long,
    ] {
        let body = format!(r#"{{"code":{bad}}}"#);
        assert_eq!(code_of(&body), Err(QrError::BadCode), "{bad}");
    }
    assert!(matches!(
        code_of(r#"{"code":"\ud800"}"#),
        Err(QrError::InvalidJson(_))
    ));
}

#[test]
fn valid_code_is_the_spec_pattern() {
    let pattern = |code: &str| {
        let b = code.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_CODE_LEN
            && b[0].is_ascii_lowercase()
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    };
    let odd = ['é', 'Ж', '€', '😀'];
    for len in 1..=MAX_CODE_LEN + 2 {
        for at in 0..len {
            for c in (0u8..0x80).map(char::from).chain(odd) {
                let mut code: Vec<char> = vec!['a'; len];
                code[at] = c;
                let code: String = code.into_iter().collect();
                assert_eq!(valid_code(&code), pattern(&code), "{code:?}");
            }
        }
    }
    assert!(!valid_code(""));
}

#[test]
fn table_is_written_as_its_integer() {
    let t = TableSet::default();
    let table_of = |value: &str| {
        let json = prep(&format!(r#"{{"code":"a","table":{value}}}"#), &t)?;
        let rest = &json[json.find(r#""table":"#).unwrap() + 8..];
        Ok::<_, QrError>(rest[..rest.find(',').unwrap()].to_string())
    };
    for (value, written) in [
        ("0", "0"),
        ("-0", "0"),
        ("7", "7"),
        ("-5", "-5"),
        (" 42 ", "42"),
        ("null", "null"),
        ("123456789012345678", "123456789012345678"),
        ("1234567890123456789", "1234567890123456789"),
        ("9223372036854775807", "9223372036854775807"),
        ("-9223372036854775808", "-9223372036854775808"),
    ] {
        assert_eq!(table_of(value), Ok(written.to_string()), "{value}");
    }
    for bad in [
        "1.0",
        "-0.0",
        "1e3",
        "9223372036854775808",
        "-9223372036854775809",
        "\"1\"",
        "true",
        "[]",
    ] {
        assert_eq!(
            table_of(bad),
            Err(QrError::WrongType {
                field: "table",
                expected: "an integer or null"
            }),
            "{bad}"
        );
    }
    // `-0` names table 0.
    let tables = Tables::new([TableRepr {
        id: 0,
        name: "bar".into(),
        max_guests: 2,
    }]);
    assert!(prep(r#"{"code":"a","table":-0}"#, &tables.snapshot())
        .unwrap()
        .ends_with(r#""table":0,"invoice":null,"order":null,"table_repr":{"id":0,"name":"bar","max_guests":2}}"#));
}

#[test]
fn invoice_and_order_nest_at_most_128_deep() {
    let t = TableSet::default();
    let nest = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    for field in ["invoice", "order"] {
        let ok = format!(r#"{{"code":"a","{field}": {} }}"#, nest(json::MAX_DEPTH));
        assert!(prep(&ok, &t).unwrap().contains(&nest(json::MAX_DEPTH)));
        let deep = format!(r#"{{"code":"a","{field}":{}}}"#, nest(json::MAX_DEPTH + 1));
        assert_eq!(prep(&deep, &t), Err(QrError::TooDeep(field)));
    }
}

#[test]
fn table_bodies() {
    let b = br#"{"name":"6","max_guests":50}"#.to_vec();
    let t = parse_table_body(1000028, &b).unwrap();
    assert_eq!(
        t,
        TableRepr {
            id: 1000028,
            name: "6".into(),
            max_guests: 50
        }
    );
    assert_eq!(
        String::from_utf8(table_put_json(&t)).unwrap(),
        r#"{"result":true,"data":{"table":{"id":1000028,"name":"6","max_guests":50}}}"#
    );
    let b = br#"{"id":5,"name":"6","max_guests":50}"#.to_vec();
    assert_eq!(
        parse_table_body(1, &b),
        Err(QrError::UnknownField("id".into()))
    );
    let b = br#"{"name":"6","max_guests":-1}"#.to_vec();
    assert!(parse_table_body(1, &b).is_err());
}

#[test]
fn table_list_is_sorted_and_serialized_once() {
    let tables = Tables::new([]);
    assert_eq!(
        &tables.snapshot().list_json()[..],
        br#"{"result":true,"data":{"tables":[]}}"#
    );
    tables.put_all([
        TableRepr {
            id: 9,
            name: "9".into(),
            max_guests: 2,
        },
        TableRepr {
            id: 1,
            name: "1".into(),
            max_guests: 4,
        },
    ]);
    assert_eq!(
        &tables.snapshot().list_json()[..],
        br#"{"result":true,"data":{"tables":[{"id":1,"name":"1","max_guests":4},{"id":9,"name":"9","max_guests":2}]}}"#
    );
}

#[test]
fn answers() {
    assert_eq!(
        published_json(0xa1fb9fc1),
        br#"{"result":true,"data":{"hash":"0xa1fb9fc1"}}"#
    );
    assert_eq!(
        error_json("bad \"x\""),
        br#"{"result":false,"error":"bad \"x\""}"#
    );
    assert_eq!(
        INVALID_TOKEN_JSON,
        br#"{"result":false,"error":"invalid token"}"#
    );
}

proptest::proptest! {
    /// Hostile bodies never panic; what is accepted is valid JSON with the
    /// six keys in order.
    #[test]
    fn any_body_is_refused_or_serialized_validly(body in proptest::prop_oneof![
        proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        "\\{\"code\":\"[a-z]{1,5}\",\"table\":(null|-?[0-9]{1,20}|\"x\"),\"order\":(null|\\{\"a\":\\[1,2\\]\\}|\\[\\])\\}"
            .prop_map(|s: String| s.into_bytes()),
    ]) {
        let b = body.clone();
        if let Ok(p) = prepare_event(&b, &TableSet::default()) {
            let json = p.finish(1);
            let v: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            proptest::prop_assert_eq!(keys.len(), 6);
        }
    }
}
