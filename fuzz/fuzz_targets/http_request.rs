//! Any bytes as one HTTP request: the head parser, then (for a head that
//! parses) the body-size and authorization checks and the router with
//! every handler, against a real engine on a temporary data directory.
//! Writes are returned as `Action::Write` and dropped, so the store is
//! never written; every read path runs for real. Nothing may panic, and a
//! parsed head's ranges must lie inside the input.
#![no_main]

use std::sync::{Arc, OnceLock};

use floorbell_server::api::{self, Scratch};
use floorbell_server::config::Config;
use floorbell_server::engine::Engine;
use floorbell_server::http::request::parse_head;
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Arc<Engine> {
    static ENGINE: OnceLock<(Arc<Engine>, tempfile::TempDir)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary data directory");
            let config = Config {
                data_dir: dir.path().to_owned(),
                qr_token: Some("q".into()),
                admin_token: Some("a".into()),
                mdns: false,
                ..Config::default()
            };
            let (engine, _) = Engine::open(config).expect("the engine opens");
            (engine, dir)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let Ok(Some(head)) = parse_head(&buf) else {
        return;
    };
    for r in [
        Some(&head.path),
        head.query.as_ref(),
        head.token.as_ref(),
        head.authorization.as_ref(),
        head.ws_key.as_ref(),
        head.ws_version.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(r.start <= r.end && r.end <= head.head_len && head.head_len <= buf.len());
    }
    if api::check_body_size(&head, &buf).is_some() || head.head_len + head.body_len > buf.len() {
        return;
    }
    let engine = engine();
    let _ = api::check_auth(engine, &head, &buf, None);
    let mut scratch = Scratch::default();
    let _ = api::handle(engine, &head, &mut buf, 1_700_000_000_000, &mut scratch);
});
