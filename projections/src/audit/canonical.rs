//! The canonical bytes of an event: what the audit chain hashes, so the chain's definition. Owns that form and
//! the writer that builds it from an event as stored; must not change it (chains sealed before must keep
//! verifying: the test below pins it to the documented JSON array).
//!
//! The form (see the parent module): the JSON array `[event_id, stream_id, stream_type, version, event_type,
//! event_version, payload, metadata, municipality, operator, recorded_at]` as serde_json writes it compactly, the
//! payload as a `serde_json::Value` would serialize (object keys sorted bytewise, numbers as serde_json reads and
//! writes them), the metadata's fields in sorted order, the time in RFC 3339 with microseconds and `Z`.
//!
//! The payload comes as the JSON text the database keeps. Most texts are within what [`write_json`] copies
//! straight to its canonical form without building a `Value` (strings without escapes, integers, objects whose
//! keys it sorts); anything else (a float, an escape, a duplicate key, deep nesting, invalid JSON) goes through
//! `serde_json::Value` exactly as before, so both ways give the same bytes (a property test checks it).

use cardap_store::{CausationId, CommandId, CorrelationId, StoredEvent};
use serde::Serialize;

/// Nesting the copying path follows; deeper text goes through `Value` (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;

/// Integer digits the copying path takes: such a number fits `u64` and `i64` alike, and serde_json writes it back
/// digit for digit. Longer ones go through `Value` (which may turn them into floats).
const MAX_DIGITS: usize = 18;

/// Replaces `out` with the event's canonical bytes. Fails only on a payload that is not JSON serde_json reads (the
/// stored event is unreadable, as before).
pub(super) fn write(event: &StoredEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.clear();
    out.push(b'[');
    write_uuid(out, event.event_id.as_uuid());
    out.push(b',');
    serde_json::to_writer(&mut *out, event.stream_id.as_str())?;
    out.push(b',');
    serde_json::to_writer(&mut *out, &event.stream_type)?;
    out.push(b',');
    serde_json::to_writer(&mut *out, &event.version)?;
    out.push(b',');
    serde_json::to_writer(&mut *out, &event.event_type)?;
    out.push(b',');
    serde_json::to_writer(&mut *out, &event.event_version)?;
    out.push(b',');
    write_json(&event.payload, out)?;
    out.push(b',');
    let metadata = &event.metadata;
    let sorted = SortedMetadata {
        causation_id: &metadata.causation_id,
        command_id: &metadata.command_id,
        correlation_id: &metadata.correlation_id,
        request_id: &metadata.request_id,
        terminal: &metadata.terminal,
    };
    serde_json::to_writer(&mut *out, &sorted)?;
    out.push(b',');
    serde_json::to_writer(&mut *out, &metadata.municipality.as_ref().map(|m| m.as_str()))?;
    out.push(b',');
    match metadata.operator {
        Some(operator) => write_uuid(out, operator.as_uuid()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    serde_json::to_writer(&mut *out, &event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))?;
    out.push(b']');
    Ok(())
}

/// The metadata as `serde_json::to_value(&Metadata)` writes it: a `Value` map sorts its keys, so here the fields
/// are declared in that order (municipality and operator are not serialized: they have columns of their own).
#[derive(Serialize)]
struct SortedMetadata<'a> {
    causation_id: &'a Option<CausationId>,
    command_id: &'a Option<CommandId>,
    correlation_id: &'a CorrelationId,
    request_id: &'a Option<String>,
    terminal: &'a Option<String>,
}

/// A UUID as a JSON string, hyphenated and lowercase (its `Display`, which serde writes).
fn write_uuid(out: &mut Vec<u8>, id: uuid::Uuid) {
    let mut buffer = uuid::Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
    out.push(b'"');
}

/// Appends the canonical form of the JSON `text` to `out`: `serde_json::to_vec(&serde_json::from_str::<Value>(text))`,
/// copied without a `Value` when the text allows it.
pub(super) fn write_json(text: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let start = out.len();
    let mut copier = Copier { text: text.as_bytes(), at: 0, members: Vec::new() };
    if copier.value(out, 0).is_some() && copier.at_end() {
        return Ok(());
    }
    out.truncate(start);
    let value: serde_json::Value = serde_json::from_str(text)?;
    serde_json::to_writer(out, &value)
}

/// The copying path of [`write_json`]: each method copies one piece of the text in its canonical form, or answers
/// `None` when the piece is outside what it copies (the caller then starts over through `Value`).
struct Copier<'a> {
    text: &'a [u8],
    at: usize,
    /// The members of the objects being copied (a stack: an object's members are those from where it began).
    members: Vec<Member>,
}

/// One member of an object as copied: its key (a range of the text, without quotes) and where `"key":value` went
/// in the output.
#[derive(Clone, Copy)]
struct Member {
    key: (usize, usize),
    out: (usize, usize),
}

impl Copier<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Skips JSON whitespace (what serde_json skips).
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Nothing but whitespace is left.
    fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.at == self.text.len()
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.skip_whitespace();
        match self.peek()? {
            b'{' if depth < MAX_DEPTH => self.object(out, depth + 1),
            b'[' if depth < MAX_DEPTH => self.array(out, depth + 1),
            b'"' => {
                let (from, to) = self.string()?;
                out.extend_from_slice(&self.text[from - 1..to + 1]);
                Some(())
            }
            b't' => self.literal(out, b"true"),
            b'f' => self.literal(out, b"false"),
            b'n' => self.literal(out, b"null"),
            b'-' | b'0'..=b'9' => self.integer(out),
            _ => None,
        }
    }

    fn literal(&mut self, out: &mut Vec<u8>, word: &[u8]) -> Option<()> {
        if !self.text[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        out.extend_from_slice(word);
        Some(())
    }

    /// A string without escapes or control characters (serde_json writes it back byte for byte); its contents'
    /// range, the quotes consumed.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.at += 1;
        let from = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0x00..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let to = self.at;
        self.at += 1;
        Some((from, to))
    }

    /// An integer of at most [`MAX_DIGITS`] digits, not `-0` (serde_json reads that as the float -0.0); no
    /// fraction or exponent (floats go through `Value`, which writes them its own way).
    fn integer(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let from = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        match self.peek()? {
            b'0' if !negative => self.at += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.at += 1;
                }
            }
            _ => return None,
        }
        if self.at - digits > MAX_DIGITS || matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        out.extend_from_slice(&self.text[from..self.at]);
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.at += 1;
        out.push(b'[');
        self.skip_whitespace();
        if self.peek()? == b']' {
            self.at += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.value(out, depth)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => out.push(b','),
                b']' => {
                    self.at += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
            self.at += 1;
        }
    }

    /// An object, its members written in the order of their keys (a `Value` map's order: bytewise, which is the
    /// order of the key texts since they have no escapes). A key given twice goes through `Value` (the last wins).
    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.at += 1;
        let begin = out.len();
        out.push(b'{');
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            out.push(b'}');
            return Some(());
        }
        let base = self.members.len();
        let mut sorted = true;
        loop {
            self.skip_whitespace();
            if self.peek()? != b'"' {
                return None;
            }
            let member_begin = out.len();
            let key = self.string()?;
            out.extend_from_slice(&self.text[key.0 - 1..key.1 + 1]);
            self.skip_whitespace();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            out.push(b':');
            self.value(out, depth)?;
            if let Some(previous) = self.members[base..].last() {
                match self.text[previous.key.0..previous.key.1].cmp(&self.text[key.0..key.1]) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return None,
                    std::cmp::Ordering::Greater => sorted = false,
                }
            }
            self.members.push(Member { key, out: (member_begin, out.len()) });
            self.skip_whitespace();
            match self.peek()? {
                b',' => out.push(b','),
                b'}' => break,
                _ => return None,
            }
            self.at += 1;
        }
        self.at += 1;
        if !sorted {
            let text = self.text;
            let members = &mut self.members[base..];
            members.sort_unstable_by(|a, b| text[a.key.0..a.key.1].cmp(&text[b.key.0..b.key.1]));
            if members.windows(2).any(|w| text[w[0].key.0..w[0].key.1] == text[w[1].key.0..w[1].key.1]) {
                return None;
            }
            let copied = out[begin + 1..].to_vec();
            out.truncate(begin + 1);
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&copied[member.out.0 - begin - 1..member.out.1 - begin - 1]);
            }
        }
        self.members.truncate(base);
        out.push(b'}');
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cardap_store::{Checkpoint, EventId, Metadata, StreamId};
    use proptest::prelude::*;

    /// What the chain hashed before the payload was taken as text: serde_json's `Value` both ways.
    fn through_value(text: &str) -> Result<Vec<u8>, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(serde_json::to_vec(&value).unwrap())
    }

    fn canonical_json(text: &str) -> Result<Vec<u8>, String> {
        let mut out = b"prefix".to_vec();
        write_json(text, &mut out).map_err(|e| e.to_string())?;
        assert!(out.starts_with(b"prefix"));
        Ok(out.split_off(6))
    }

    fn event(payload: &str, metadata: Metadata) -> StoredEvent {
        StoredEvent {
            event_id: EventId::generate(),
            stream_id: StreamId::of("resident", "0193-abc"),
            stream_type: "resident".into(),
            version: 3,
            checkpoint: Checkpoint { transaction: 7, position: 42 },
            event_type: "ResidentFieldsChanged".into(),
            event_version: 1,
            payload: payload.into(),
            metadata,
            recorded_at: chrono::Utc::now(),
        }
    }

    /// The JSON array the module comment documents, built the long way (through `Value`, as the chain was
    /// first defined).
    fn documented(event: &StoredEvent) -> String {
        serde_json::json!([
            event.event_id.to_string(),
            event.stream_id.as_str(),
            event.stream_type,
            event.version,
            event.event_type,
            event.event_version,
            serde_json::from_str::<serde_json::Value>(&event.payload).unwrap(),
            serde_json::to_value(&event.metadata).unwrap(),
            event.metadata.municipality.as_ref().map(|m| m.as_str()),
            event.metadata.operator.map(|o| o.to_string()),
            event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ])
        .to_string()
    }

    fn canonical(event: &StoredEvent) -> String {
        let mut out = Vec::new();
        write(event, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The canonical form is the chain's definition: chains sealed before must keep verifying. Its bytes are
    /// those of the JSON array the module comment names, built here the long way.
    #[test]
    fn the_canonical_bytes_are_the_documented_json_array() {
        // Every field of the metadata spelled out: a new one must be added to `SortedMetadata` too.
        let metadata = Metadata {
            command_id: Some(CommandId::generate()),
            correlation_id: CorrelationId::generate(),
            causation_id: Some(CausationId::from_uuid(uuid::Uuid::now_v7())),
            municipality: cardap_domain::MunicipalityCode::parse("131016").ok(),
            operator: Some(cardap_domain::OperatorKey::from_uuid(uuid::Uuid::now_v7())),
            terminal: Some("窓口3番 \"東\"\n".into()),
            request_id: Some("req-1".into()),
        };
        let event = event(r#"{"z": 1, "a": {"y": [1, 2.5, null], "b": "ヤマダ"}}"#, metadata);
        let text = canonical(&event);
        assert_eq!(text, documented(&event));
        assert!(text.contains(r#"{"a":{"b":"ヤマダ","y":[1,2.5,null]},"z":1}"#), "keys sorted, compact: {text}");

        // Without municipality, operator or the optional ids, and with a payload the copying path takes whole.
        let mut system = Metadata::system();
        system.terminal = Some("窓口3番".into());
        let event = super::tests::event(r#"{"note" : "synthetic event 7", "n" : 7, "list": [ -3, {}, [] ]}"#, system);
        let text = canonical(&event);
        assert_eq!(text, documented(&event));
        assert!(text.contains(r#"{"list":[-3,{},[]],"n":7,"note":"synthetic event 7"}"#), "{text}");
    }

    #[test]
    fn payload_texts_at_the_edges_of_the_copying_path_give_what_value_gives() {
        let texts = [
            "{}",
            "[]",
            " \t\n\r{ } ",
            "0",
            "-0",
            "-1",
            "01",
            "1.0",
            "1e5",
            "1E+2",
            "-",
            "123456789012345678",
            "1234567890123456789",
            "12345678901234567890",
            "-123456789012345678",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            r#""plain""#,
            r#""with \"escape\"""#,
            r#""\u00e9\u3042""#,
            r#""\ud83d\ude00""#,
            "\"tab\there\"",
            r#""é😀""#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            r#"{"a":{"d":[{"z":0,"y":{}}],"c":true},"B":false,"é":null,"ab":"x","a b":1}"#,
            r#"{"a\u0062":1,"ab":2}"#,
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "tru",
            "nul",
            "[true,false,null]",
            "1 2",
            "{} x",
            "",
            "   ",
        ];
        for text in texts {
            assert_eq!(canonical_json(text), through_value(text), "{text:?}");
        }
        for depth in [50, 99, 100, 101, 127, 128, 200] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(canonical_json(&text), through_value(&text), "depth {depth}");
            let text = format!("{}1{}", r#"{"k":"#.repeat(depth), "}".repeat(depth));
            assert_eq!(canonical_json(&text), through_value(&text), "depth {depth}");
        }
    }

    /// A JSON value with what payloads hold: strings (with escapes and multibyte characters), integers, floats,
    /// nesting.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1000i64..1000).prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            "[a-zA-Zヤマダ太郎 \"\\\\/\t\n\u{1}😀-]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::vec(("[a-zé_ ]{0,4}", inner), 0..6)
                    .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Writes `value` as JSON text the way a database might keep it: members in the given order (possibly
    /// repeating a key), with whitespace, and integers and floats as written.
    fn write_loosely(value: &serde_json::Value, spaced: bool, reverse: bool, out: &mut String) {
        let gap = if spaced { " " } else { "" };
        match value {
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                        out.push_str(gap);
                    }
                    write_loosely(item, spaced, reverse, out);
                }
                out.push(']');
            }
            serde_json::Value::Object(members) => {
                out.push('{');
                let mut members: Vec<_> = members.iter().collect();
                if reverse {
                    members.reverse();
                }
                for (i, (key, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                        out.push_str(gap);
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push_str(gap);
                    out.push(':');
                    out.push_str(gap);
                    write_loosely(item, spaced, reverse, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    proptest! {
        #[test]
        fn any_payload_text_gives_the_bytes_value_gives(
            value in json_value(),
            spaced in any::<bool>(),
            reverse in any::<bool>(),
        ) {
            let mut text = String::new();
            write_loosely(&value, spaced, reverse, &mut text);
            prop_assert_eq!(canonical_json(&text), through_value(&text));
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            prop_assert_eq!(canonical_json(&pretty), through_value(&pretty));
        }

        #[test]
        fn any_text_gives_what_value_gives_or_fails_as_it_does(text in "[\\[\\]{}\":,0-9a-e.+\\- tnrufls\\\\]{0,24}") {
            prop_assert_eq!(canonical_json(&text).is_ok(), through_value(&text).is_ok(), "{:?}", text);
            if let (Ok(copied), Ok(parsed)) = (canonical_json(&text), through_value(&text)) {
                prop_assert_eq!(copied, parsed);
            }
        }
    }
}
