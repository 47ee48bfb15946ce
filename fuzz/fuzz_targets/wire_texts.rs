//! Any text as the small parsers of the other protocols: ticket commands
//! from each WebSocket endpoint (§2), gateway order bodies, query strings
//! and settings (§3.3), and webhook URLs (§3.6). Nothing may panic.
#![no_main]

use floorbell_core::orders::{wire, Zone};
use floorbell_core::tickets::wire as tickets;
use floorbell_core::webhooks::parse_url;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse_start(data);
    let _ = wire::parse_modify(data);
    let _ = wire::parse_page(data);
    let _ = wire::parse_settings(data);
    let _ = wire::parse_target_time(data);
    let _ = wire::parse_history_query(data, &Zone::utc());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tickets::parse_staff(text);
    let _ = tickets::parse_kiosk(text);
    let _ = tickets::parse_display(text);
    let _ = tickets::parse_table(text, 16);
    let _ = parse_url(text);
    let _ = Zone::utc().parse_local(text);
});
