//! Any bytes as the body of `POST /api/v4/events` and of
//! `PUT /api/v4/tables/{id}`: nothing may panic, and an accepted event must
//! serialize to one JSON object with exactly §1's keys, in order, that a
//! strict parser (serde_json) reads.
#![no_main]

use std::sync::{Arc, OnceLock};

use floorbell_core::qr::{parse_table_body, prepare_event, TableSet, Tables};
use libfuzzer_sys::fuzz_target;

/// Table 1 is registered, so an event for it takes its `table_repr` from
/// the set (the seeds publish to table 1).
fn tables() -> &'static TableSet {
    static TABLES: OnceLock<Arc<TableSet>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let table = parse_table_body(1, br#"{"name":"6","max_guests":4}"#).expect("a valid table");
        Tables::new([table]).snapshot()
    })
}

fuzz_target!(|data: &[u8]| {
    let tables = tables();
    if let Ok(prepared) = prepare_event(data, tables) {
        let json = prepared.finish(0x0123_4567);
        let value: serde_json::Value = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)));
        let keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["hash", "code", "table", "invoice", "order", "table_repr"]
        );
    }
    let _ = parse_table_body(1, data);
});
