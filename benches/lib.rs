//! floorbell's criterion benches (`cargo bench -p floorbell-benches`); each
//! bench file's own doc says what it measures and which goal it feeds. This
//! library holds what they share: the sample events.

/// A waiter call as the seed shows it, with a registered table (≈150 bytes).
pub const WAITER_CALL: &str = r#"{"code":"waiter_call","table":1000028,"invoice":null,"order":null,"table_repr":{"id":1000028,"name":"6","max_guests":50}}"#;

/// An online payment with an order of two dishes and Cyrillic names: a
/// ≈300-byte event, the size the C-ABI goal names.
pub fn payment_event(i: usize) -> String {
    format!(
        r#"{{"code":"online_payment","table":{t},"invoice":null,"order":{{"guid":"{{F4CE1102-50DC-48F7-A8E0-{i:012X}}}","sum":186.0,"table":{{"id":{t},"name":"6"}},"waiter":{{"id":9001,"name":"Система"}},"dishes":[{{"id":1000041,"name":"Блюдо","price":150.0,"count":1.0}}]}},"table_repr":null}}"#,
        t = 1000000 + i % 40
    )
}
