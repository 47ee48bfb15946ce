//! SPEC §2's wire format, byte for byte: parsing the commands of each
//! endpoint, every reply string, the broadcasts, and ticket JSON.
//!
//! Pure functions over `&str` and [`Bytes`]; the board decides what to say,
//! this module decides how it is spelled.

use bytes::Bytes;

use super::{
    AcceptError, CloseError, PickError, QueryError, Ticket, UnpickError, MAX_ECHOED_WORD_LEN,
    MAX_EMAIL_LEN, MAX_VISITOR_NAME_LEN,
};
use crate::echo::cut;
use crate::qr::json::write_str;

/// `success unpick` (SPEC §2.1).
pub const SUCCESS_UNPICK: &str = "success unpick";
/// The reply to a kiosk's `new` while [`TicketBoard::max_waiting`] tickets
/// already wait (this project's addition; SPEC §2.3 has no such limit).
///
/// [`TicketBoard::max_waiting`]: super::TicketBoard::max_waiting
pub const NEW_TOO_MANY_WAITING: &str = "error new too many tickets are waiting";
/// The `staff` value of an unclaimed ticket (SPEC §2: the literal string `{}`).
pub const UNCLAIMED_STAFF: &str = "{}";
/// `end` of an open ticket (SPEC §2).
pub const OPEN_END: &str = "1970-01-01T00:00:00Z";
/// Latest second RFC 3339 can write with a four-digit year
/// (9999-12-31T23:59:59Z).
const MAX_RFC3339_SECS: i64 = 253_402_300_799;

/// A staff console's command (SPEC §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffCommand<'a> {
    /// `pick TABLE TOKEN`. The table is kept as text: one that is not a
    /// table number answers "not available", after the token check.
    Pick {
        /// The table argument as sent.
        table: &'a str,
        /// The plaintext token.
        token: &'a str,
    },
    /// `unpick`.
    Unpick,
    /// `accept ID`.
    Accept(TicketArg),
    /// `cancel ID`.
    Cancel(TicketArg),
    /// `complete ID`.
    Complete(TicketArg),
}

/// A kiosk's command (SPEC §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KioskCommand<'a> {
    /// `new EMAIL NAME…`: the name is the rest of the line, spaces kept.
    New {
        /// The visitor's email.
        email: &'a str,
        /// The visitor's name.
        name: &'a str,
    },
    /// `query EMAIL`.
    Query {
        /// The email to look up.
        email: &'a str,
    },
}

/// A ticket id argument: decimal digits. `None` when the digits do not fit in
/// 64 bits — numeric, so not malformed, but no ticket has it.
pub type TicketArg = Option<u64>;

/// A frame that is not a command of its endpoint: answered with
/// `error WORD malformed command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed<'a> {
    /// The text before the first space (the whole frame if it has none).
    pub word: &'a str,
}

impl Malformed<'_> {
    /// `error WORD malformed command`, the word cut to
    /// [`MAX_ECHOED_WORD_LEN`] bytes on a character boundary.
    pub fn to_wire(&self) -> Bytes {
        let word = cut(self.word, MAX_ECHOED_WORD_LEN);
        Bytes::from(format!("error {word} malformed command"))
    }
}

/// Splits a frame into its word and the rest (`None` when there is no space).
fn split_word(text: &str) -> (&str, Option<&str>) {
    match text.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (text, None),
    }
}

/// Exactly `N` non-empty space-separated arguments.
// SPEC gap: "space-separated" is read strictly — one space between arguments,
// none trailing; anything else is a missing (empty) or extra argument.
fn args<const N: usize>(rest: Option<&str>) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut parts = match rest {
        Some(rest) => rest.split(' '),
        None if N == 0 => return Some(out),
        None => return None,
    };
    for slot in &mut out {
        *slot = parts.next().filter(|a| !a.is_empty())?;
    }
    parts.next().is_none().then_some(out)
}

/// A ticket id: one or more ASCII digits (no sign).
fn ticket_arg(text: &str) -> Option<TicketArg> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().ok())
}

/// A table number below `tables`: ASCII digits only (no sign, no spaces).
pub fn parse_table(text: &str, tables: u32) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&t| t < tables)
}

/// Parses one frame from a staff console.
///
/// # Errors
///
/// [`Malformed`] for an unknown word (exact, lowercase), a missing, empty or
/// extra argument, or a non-numeric id.
pub fn parse_staff(text: &str) -> Result<StaffCommand<'_>, Malformed<'_>> {
    let (word, rest) = split_word(text);
    let bad = Malformed { word };
    let id = |rest| {
        let [id] = args::<1>(rest).ok_or(bad)?;
        ticket_arg(id).ok_or(bad)
    };
    match word {
        "pick" => {
            let [table, token] = args::<2>(rest).ok_or(bad)?;
            Ok(StaffCommand::Pick { table, token })
        }
        "unpick" => args::<0>(rest).map(|_| StaffCommand::Unpick).ok_or(bad),
        "accept" => id(rest).map(StaffCommand::Accept),
        "cancel" => id(rest).map(StaffCommand::Cancel),
        "complete" => id(rest).map(StaffCommand::Complete),
        _ => Err(bad),
    }
}

/// Parses one frame from a kiosk.
///
/// # Errors
///
/// [`Malformed`] for an unknown word, a missing or empty email or name, an
/// extra argument to `query`, or an email or name over
/// [`MAX_EMAIL_LEN`] / [`MAX_VISITOR_NAME_LEN`] bytes.
pub fn parse_kiosk(text: &str) -> Result<KioskCommand<'_>, Malformed<'_>> {
    let (word, rest) = split_word(text);
    let bad = Malformed { word };
    // SPEC gap: §2.3's name is "the rest of the line": a control character
    // (a line break, a NUL) has no place in it or in an email, and would
    // break a line-based client's framing (and a C string) when the name
    // comes back in `success query NAME`.
    let plain = |t: &str| !t.chars().any(char::is_control);
    let email_ok = |e: &str| !e.is_empty() && e.len() <= MAX_EMAIL_LEN && plain(e);
    match word {
        "new" => {
            let (email, name) = rest.and_then(|r| r.split_once(' ')).ok_or(bad)?;
            // SPEC gap: §2.3 sets no limits; see MAX_EMAIL_LEN, MAX_VISITOR_NAME_LEN.
            if !email_ok(email)
                || name.is_empty()
                || name.len() > MAX_VISITOR_NAME_LEN
                || !plain(name)
            {
                return Err(bad);
            }
            Ok(KioskCommand::New { email, name })
        }
        "query" => {
            let [email] = args::<1>(rest).ok_or(bad)?;
            if !email_ok(email) {
                return Err(bad);
            }
            Ok(KioskCommand::Query { email })
        }
        _ => Err(bad),
    }
}

/// Parses one frame from a display: displays have no commands.
///
/// # Errors
///
/// Always [`Malformed`]. SPEC gap: §2.4 gives displays nothing to send; an
/// answer (rather than silence) keeps "every frame gets one reply" true.
pub fn parse_display(text: &str) -> Malformed<'_> {
    Malformed {
        word: split_word(text).0,
    }
}

/// Which closing command a reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// `cancel ID`.
    Cancel,
    /// `complete ID`.
    Complete,
}

impl CloseKind {
    /// The command word, which is also the display message's word.
    pub fn word(self) -> &'static str {
        match self {
            CloseKind::Cancel => "cancel",
            CloseKind::Complete => "complete",
        }
    }
}

impl PickError {
    /// The exact reply (SPEC §2.1).
    pub fn to_wire(self) -> &'static str {
        match self {
            PickError::UnknownToken => {
                "error pick the provided token does not belong to any staff member"
            }
            // The missing word `pick` is as in the seed (SPEC §2.1).
            PickError::TableNotAvailable => "error the chosen table is not available",
        }
    }
}

impl UnpickError {
    /// The exact reply (SPEC §2.1).
    pub fn to_wire(self) -> &'static str {
        match self {
            UnpickError::NoTable => "error unpick you do not have a table assigned",
        }
    }
}

impl AcceptError {
    /// The exact reply (SPEC §2.1).
    pub fn to_wire(self) -> &'static str {
        match self {
            AcceptError::InvalidSession => {
                "error accept your session token was found to be invalid. please relogin"
            }
            AcceptError::NoTable => "error accept you do not have a table chosen",
            AcceptError::UnknownTicket => "error accept ticket id does not exist",
            AcceptError::AlreadyClosed => {
                "error accept the ticket has already been completed or cancelled"
            }
            AcceptError::ClaimedByOther => "error accept this ticket is now claimed",
        }
    }
}

impl CloseError {
    /// The exact reply to `cancel` or `complete` (SPEC §2.1).
    pub fn to_wire(self, kind: CloseKind) -> &'static str {
        match (kind, self) {
            (CloseKind::Cancel, CloseError::NoTable) => {
                "error cancel you are not assigned to any table"
            }
            (CloseKind::Cancel, CloseError::UnknownTicket) => {
                "error cancel ticket id does not exist"
            }
            (CloseKind::Cancel, CloseError::NotOwner) => "error cancel you do not own this ticket",
            (CloseKind::Cancel, CloseError::AlreadyClosed) => {
                "error cancel the ticket has already been completed or cancelled"
            }
            (CloseKind::Complete, CloseError::NoTable) => {
                "error complete you are not assigned to any table"
            }
            (CloseKind::Complete, CloseError::UnknownTicket) => {
                "error complete ticket id does not exist"
            }
            (CloseKind::Complete, CloseError::NotOwner) => {
                "error complete you do not own this ticket"
            }
            (CloseKind::Complete, CloseError::AlreadyClosed) => {
                "error complete the ticket has already been completed or cancelled"
            }
        }
    }
}

impl QueryError {
    /// The exact reply (SPEC §2.3).
    pub fn to_wire(self) -> &'static str {
        match self {
            QueryError::UnknownVisitor => "error query visitor email does not exist",
        }
    }
}

/// `WORD N`: every reply and display message that ends in one number.
fn word_number(word: &str, n: u64) -> Bytes {
    let mut out = String::with_capacity(word.len() + 21);
    out.push_str(word);
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(n));
    Bytes::from(out)
}

/// `success pick TABLE`.
pub fn success_pick(table: u32) -> Bytes {
    word_number("success pick", table.into())
}

/// `success claimed ID` (the reply to `accept`).
pub fn success_claimed(id: u64) -> Bytes {
    word_number("success claimed", id)
}

/// `success cancel ID` / `success complete ID`.
pub fn success_close(kind: CloseKind, id: u64) -> Bytes {
    match kind {
        CloseKind::Cancel => word_number("success cancel", id),
        CloseKind::Complete => word_number("success complete", id),
    }
}

/// `success query NAME`.
pub fn success_query(name: &str) -> Bytes {
    Bytes::from(format!("success query {name}"))
}

/// `PREFIX TICKETJSON`: `success new …`, `new …`, `claimed …`.
fn with_ticket(prefix: &str, ticket: &Ticket) -> Bytes {
    let mut out = Vec::with_capacity(prefix.len() + 160);
    out.extend_from_slice(prefix.as_bytes());
    out.push(b' ');
    write_ticket_json(&mut out, ticket);
    Bytes::from(out)
}

/// `success new TICKETJSON`, the reply to a kiosk's `new` (SPEC §2.3).
pub fn success_new(ticket: &Ticket) -> Bytes {
    with_ticket("success new", ticket)
}

/// `new TICKETJSON`, to staff (SPEC §2.2).
pub fn new_ticket(ticket: &Ticket) -> Bytes {
    with_ticket("new", ticket)
}

/// `claimed TICKETJSON`, to the other staff (SPEC §2.2).
pub fn claimed_ticket(ticket: &Ticket) -> Bytes {
    with_ticket("claimed", ticket)
}

/// `taken T1 T2 …` in the given (ascending) order, `taken` alone when empty
/// (SPEC §2.2).
pub fn taken(tables: impl IntoIterator<Item = u32>) -> Bytes {
    let mut out = String::from("taken");
    let mut buf = itoa::Buffer::new();
    for t in tables {
        out.push(' ');
        out.push_str(buf.format(t));
    }
    Bytes::from(out)
}

/// `pick TABLE`, to displays (SPEC §2.4).
pub fn display_pick(table: u32) -> Bytes {
    word_number("pick", table.into())
}

/// `unpick TABLE`, to displays.
pub fn display_unpick(table: u32) -> Bytes {
    word_number("unpick", table.into())
}

/// `claimed TABLE ID`, to displays (table first: SPEC §2.4's decision).
pub fn display_claimed(table: u32, id: u64) -> Bytes {
    let mut out = String::from("claimed ");
    out.push_str(itoa::Buffer::new().format(table));
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(id));
    Bytes::from(out)
}

/// `cancel TABLE` / `complete TABLE`, to displays.
pub fn display_close(kind: CloseKind, table: u32) -> Bytes {
    word_number(kind.word(), table.into())
}

/// Appends a ticket's JSON, keys in SPEC §2's order:
/// `{"id":0,"email":…,"name":…,"staff":…,"start":…,"end":…}`.
pub fn write_ticket_json(out: &mut Vec<u8>, ticket: &Ticket) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(itoa::Buffer::new().format(ticket.id).as_bytes());
    out.extend_from_slice(b",\"email\":");
    write_str(out, &ticket.email);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &ticket.name);
    out.extend_from_slice(b",\"staff\":");
    write_str(out, ticket.staff.as_deref().unwrap_or(UNCLAIMED_STAFF));
    out.extend_from_slice(b",\"start\":\"");
    write_rfc3339(out, ticket.start);
    out.extend_from_slice(b"\",\"end\":\"");
    write_rfc3339(out, ticket.end.unwrap_or(0));
    out.extend_from_slice(b"\"}");
}

/// A ticket's JSON as a `String` (tests, diagnostics).
pub fn ticket_json(ticket: &Ticket) -> String {
    let mut out = Vec::new();
    write_ticket_json(&mut out, ticket);
    // write_str and the digits keep the input's UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in seconds (UTC).
// SPEC gap: times outside 1970 … 9999 are clamped into that range.
pub fn write_rfc3339(out: &mut Vec<u8>, unix_secs: i64) {
    let secs = unix_secs.clamp(0, MAX_RFC3339_SECS);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let two = |out: &mut Vec<u8>, n: i64| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    out.push(b'Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar, for `days >= 0` (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tickets::TicketState;

    fn rfc(secs: i64) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, secs);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc(1_569_903_139), "2019-10-01T04:12:19Z");
        assert_eq!(rfc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(rfc(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn ticket_json_as_in_the_spec() {
        let mut t = Ticket {
            id: 0,
            email: "e@x.com".into(),
            name: "Example Name".into(),
            staff: None,
            start: 1_569_903_139,
            end: None,
            state: TicketState::Waiting,
        };
        assert_eq!(
            ticket_json(&t),
            r#"{"id":0,"email":"e@x.com","name":"Example Name","staff":"{}","start":"2019-10-01T04:12:19Z","end":"1970-01-01T00:00:00Z"}"#
        );
        t.staff = Some("Staff \"Q\"\n".into());
        t.name = "Zoë \\ O'Brien".into();
        t.end = Some(1_569_903_200);
        t.state = TicketState::Completed;
        assert_eq!(
            ticket_json(&t),
            r#"{"id":0,"email":"e@x.com","name":"Zoë \\ O'Brien","staff":"Staff \"Q\"\n","start":"2019-10-01T04:12:19Z","end":"2019-10-01T04:13:20Z"}"#
        );
    }

    #[test]
    fn staff_parsing_is_strict() {
        assert_eq!(
            parse_staff("pick 3 tok"),
            Ok(StaffCommand::Pick {
                table: "3",
                token: "tok"
            })
        );
        assert_eq!(parse_staff("unpick"), Ok(StaffCommand::Unpick));
        assert_eq!(parse_staff("accept 7"), Ok(StaffCommand::Accept(Some(7))));
        assert_eq!(
            parse_staff("cancel 99999999999999999999999"),
            Ok(StaffCommand::Cancel(None))
        );
        assert_eq!(
            parse_staff("complete 0"),
            Ok(StaffCommand::Complete(Some(0)))
        );
        for (frame, word) in [
            ("", ""),
            ("pick", "pick"),
            ("pick 3", "pick"),
            ("pick 3 tok x", "pick"),
            ("pick  3 tok", "pick"),
            ("pick 3 tok ", "pick"),
            ("unpick now", "unpick"),
            ("unpick ", "unpick"),
            ("accept", "accept"),
            ("accept x", "accept"),
            ("accept -1", "accept"),
            ("accept +1", "accept"),
            ("accept 1 2", "accept"),
            ("Accept 1", "Accept"),
            ("new a@b c", "new"),
            (" accept 1", ""),
        ] {
            assert_eq!(parse_staff(frame), Err(Malformed { word }), "{frame:?}");
        }
    }

    #[test]
    fn kiosk_parsing_keeps_the_name_whole() {
        assert_eq!(
            parse_kiosk("new e@x.com  Anna  Maria "),
            Ok(KioskCommand::New {
                email: "e@x.com",
                name: " Anna  Maria "
            })
        );
        assert_eq!(
            parse_kiosk("query e@x.com"),
            Ok(KioskCommand::Query { email: "e@x.com" })
        );
        let long_email = format!("new {} N", "e".repeat(MAX_EMAIL_LEN + 1));
        let long_name = format!("new e@x.com {}", "n".repeat(MAX_VISITOR_NAME_LEN + 1));
        let ok_name = format!("new e@x.com {}", "n".repeat(MAX_VISITOR_NAME_LEN));
        assert!(parse_kiosk(&ok_name).is_ok());
        for frame in [
            "new",
            "new e@x.com",
            "new e@x.com ",
            "new  Name",
            long_email.as_str(),
            long_name.as_str(),
            "new e@x.com An\0na",
            "new e@x.com Anna\nsuccess pick 1",
            "new e@x.com Anna\r",
            "new e\u{7f}@x.com Anna",
        ] {
            assert_eq!(
                parse_kiosk(frame),
                Err(Malformed { word: "new" }),
                "{frame:?}"
            );
        }
        for frame in ["query", "query ", "query a b", "query e@x.com\0"] {
            assert_eq!(parse_kiosk(frame), Err(Malformed { word: "query" }));
        }
        assert_eq!(parse_kiosk("pick 1 t"), Err(Malformed { word: "pick" }));
    }

    #[test]
    fn malformed_echo_is_bounded() {
        assert_eq!(
            &parse_staff("").unwrap_err().to_wire()[..],
            b"error  malformed command"
        );
        let long = "é".repeat(MAX_ECHOED_WORD_LEN);
        let frame = parse_display(&long).to_wire();
        let expected = format!(
            "error {} malformed command",
            "é".repeat(MAX_ECHOED_WORD_LEN / 2)
        );
        assert_eq!(&frame[..], expected.as_bytes());
    }

    #[test]
    fn tables_are_plain_numbers_in_range() {
        assert_eq!(parse_table("0", 16), Some(0));
        assert_eq!(parse_table("15", 16), Some(15));
        assert_eq!(parse_table("007", 16), Some(7));
        for t in ["16", "-1", "+1", "x", "", "99999999999"] {
            assert_eq!(parse_table(t, 16), None, "{t}");
        }
    }
}
