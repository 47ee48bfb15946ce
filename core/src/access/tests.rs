use super::*;

const T0: i64 = 1_700_000_000_000;

#[test]
fn one_token_per_press() {
    let mut r = TokenRegistry::default();
    assert_eq!(r.generate("a", T0), Err(TokenError::WindowClosed));
    r.press_button(T0);
    let (t, rec) = r.generate("a", T0 + 1).unwrap();
    assert_eq!(t.name, "default");
    assert_eq!(t.hash, hash_token(b"a"));
    assert_eq!(rec, TokenRecord::Put(t.clone()));
    assert_eq!(r.generate("b", T0 + 2), Err(TokenError::WindowClosed));
}

#[test]
fn the_window_lasts_120_seconds() {
    let mut r = TokenRegistry::default();
    r.press_button(T0);
    assert!(r.window_open(T0 + BUTTON_WINDOW_MS - 1));
    assert!(!r.window_open(T0 + BUTTON_WINDOW_MS));
    assert_eq!(
        r.generate("a", T0 + BUTTON_WINDOW_MS).unwrap_err().status(),
        403
    );
}

#[test]
fn names_take_the_lowest_free_number() {
    let mut r = TokenRegistry::default();
    for (i, tok) in ["a", "b", "c"].iter().enumerate() {
        r.press_button(T0 + i as i64);
        r.generate(tok, T0 + i as i64).unwrap();
    }
    let names: Vec<_> = r.list().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["default", "default-2", "default-3"]);
    r.revoke("default-2").unwrap();
    r.press_button(T0 + 10);
    assert_eq!(r.generate("d", T0 + 10).unwrap().0.name, "default-2");
    r.revoke("default").unwrap();
    r.press_button(T0 + 11);
    assert_eq!(r.generate("e", T0 + 11).unwrap().0.name, "default");
}

#[test]
fn verify_records_use_and_revoke_refuses() {
    let mut r = TokenRegistry::default();
    r.press_button(T0);
    r.generate("secret", T0).unwrap();
    assert_eq!(r.verify(b"wrong", T0 + 5, Some("10.0.0.1")), None);
    assert!(r.take_dirty().is_empty());
    assert_eq!(
        r.verify(b"secret", T0 + 5, Some("10.0.0.1")),
        Some("default")
    );
    assert!(r.contains(b"secret"));
    let dirty = r.take_dirty();
    assert_eq!(dirty.len(), 1);
    let TokenRecord::Put(t) = &dirty[0] else {
        panic!("a put")
    };
    assert_eq!(t.last_used_ms, Some(T0 + 5));
    assert_eq!(t.ip.as_deref(), Some("10.0.0.1"));
    assert!(r.take_dirty().is_empty(), "flushed once");
    assert_eq!(
        r.revoke("default"),
        Ok(TokenRecord::Delete("default".into()))
    );
    assert_eq!(r.verify(b"secret", T0 + 6, None), None);
    assert_eq!(
        r.revoke("default"),
        Err(TokenError::NotFound("default".into()))
    );
}

#[test]
fn restore_keeps_creation_order() {
    let tok = |name: &str, created_ms| AccessToken {
        name: name.into(),
        hash: hash_token(name.as_bytes()),
        created_ms,
        last_used_ms: None,
        ip: None,
    };
    let mut r = TokenRegistry::restore(vec![tok("default-2", 5), tok("default", 1)]);
    assert_eq!(r.list()[0].name, "default");
    assert!(!r.window_open(0), "a restart closes the window");
    assert_eq!(r.verify(b"default-2", 9, None), Some("default-2"));
}

#[test]
fn too_many_tokens_is_a_conflict() {
    let mut r = TokenRegistry::default();
    for i in 0..MAX_TOKENS {
        r.press_button(T0);
        r.generate(&format!("t{i}"), T0).unwrap();
    }
    r.press_button(T0);
    assert_eq!(r.generate("x", T0), Err(TokenError::TooMany));
    assert_eq!(TokenError::TooMany.status(), 409);
}
