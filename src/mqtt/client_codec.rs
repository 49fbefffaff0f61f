//! The few MQTT 3.1.1 packets a load-generating robot needs, encoded and parsed by hand:
//! CONNECT/CONNACK, QoS 1 PUBLISH/PUBACK, PINGREQ/PINGRESP and DISCONNECT. Used by
//! `fleetsink bench` and by tests that need a packet exactly as they wrote it (a CONNECT
//! from a chosen source address, say).
//!
//! Why not rumqttc: at 10,000 connections each rumqttc `EventLoop` brings its own
//! channels, timers and buffers, and the generator's CPU would be counted against the
//! machine the daemon runs on. These functions allocate nothing but the caller's buffer.
//!
//! Invariant: [`parse`] never panics on bytes from the network; a packet it does not know
//! is skipped whole (its length is in its fixed header), a malformed header is an error.

use thiserror::Error;

/// Largest packet the broker may send us; a robot only ever receives tiny acks, so
/// anything near this is a broken stream, not a packet.
const MAX_INCOMING: usize = 64 * 1024;

/// A packet from the broker that the bench acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// CONNACK: 0 = accepted; 1–5 the MQTT 3.1.1 refusal codes.
    ConnAck {
        code: u8,
    },
    PubAck {
        packet_id: u16,
    },
    PingResp,
    /// Any other packet type (its first byte), skipped.
    Other(u8),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("malformed remaining length in a packet from the broker")]
    RemainingLength,
    #[error("the broker sent a {0}-byte packet; a publishing robot expects only acks")]
    TooLarge(usize),
    #[error("the broker sent a {kind} of {len} bytes (expected {want})")]
    BadLength {
        kind: &'static str,
        len: usize,
        want: usize,
    },
}

/// What CONNECT refusal code `code` means (MQTT 3.1.1, table 3.1).
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown refusal code",
    }
}

/// Appends MQTT's variable-length "remaining length" (1–4 bytes).
fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

/// Appends a length-prefixed UTF-8 string. MQTT strings are at most 65,535 bytes; the
/// bench's client ids, credentials and topics are far shorter (checked by the callers'
/// tests), so the length is truncated rather than checked at run time.
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Appends a CONNECT: protocol level 4, clean session, the given keepalive (seconds).
pub fn connect(
    out: &mut Vec<u8>,
    client_id: &str,
    keepalive_secs: u16,
    username: Option<&str>,
    password: Option<&str>,
) {
    let mut flags = 0x02; // clean session, as TonyPi's paho clients connect
    let mut len = 10 + 2 + client_id.len();
    if let Some(u) = username {
        flags |= 0x80;
        len += 2 + u.len();
        if let Some(p) = password {
            flags |= 0x40;
            len += 2 + p.len();
        }
    }
    out.push(0x10);
    put_remaining_length(out, len);
    put_str(out, b"MQTT");
    out.push(4);
    out.push(flags);
    out.extend_from_slice(&keepalive_secs.to_be_bytes());
    put_str(out, client_id.as_bytes());
    if let Some(u) = username {
        put_str(out, u.as_bytes());
        if let Some(p) = password {
            put_str(out, p.as_bytes());
        }
    }
}

/// Appends a QoS 1 PUBLISH (not retained). `packet_id` must not be 0.
pub fn publish_qos1(out: &mut Vec<u8>, topic: &str, packet_id: u16, payload: &[u8]) {
    out.push(0x32);
    put_remaining_length(out, 2 + topic.len() + 2 + payload.len());
    put_str(out, topic.as_bytes());
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Marks an encoded PUBLISH as a redelivery (the DUP flag), for a resend after a
/// reconnect.
pub fn set_dup(packet: &mut [u8]) {
    if let Some(first) = packet.first_mut() {
        *first |= 0x08;
    }
}

pub fn pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xC0, 0x00]);
}

pub fn disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xE0, 0x00]);
}

/// Parses the first packet in `buf`: `Ok(None)` when it is not complete yet, else the
/// packet and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Incoming, usize)>, CodecError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err(CodecError::RemainingLength);
        }
    }
    if len > MAX_INCOMING {
        return Err(CodecError::TooLarge(len));
    }
    let total = header + len;
    let Some(body) = buf.get(header..total) else {
        return Ok(None);
    };
    let fixed = |kind: &'static str, want: usize| {
        if body.len() == want {
            Ok(())
        } else {
            Err(CodecError::BadLength {
                kind,
                len: body.len(),
                want,
            })
        }
    };
    let packet = match first >> 4 {
        2 => {
            fixed("CONNACK", 2)?;
            Incoming::ConnAck { code: body[1] }
        }
        4 => {
            fixed("PUBACK", 2)?;
            Incoming::PubAck {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
            }
        }
        13 => {
            fixed("PINGRESP", 0)?;
            Incoming::PingResp
        }
        _ => Incoming::Other(first),
    };
    Ok(Some((packet, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_matches_the_spec_bytes() {
        let mut out = Vec::new();
        connect(&mut out, "r1", 60, Some("u"), Some("pw"));
        assert_eq!(
            out,
            [
                0x10, 21, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60, 0, 2, b'r', b'1', 0, 1,
                b'u', 0, 2, b'p', b'w'
            ]
        );
        out.clear();
        connect(&mut out, "r1", 30, None, None);
        assert_eq!(
            out,
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 2, b'r', b'1'
            ]
        );
    }

    #[test]
    fn publish_carries_topic_packet_id_and_payload_and_dup_marks_a_resend() {
        let mut out = Vec::new();
        publish_qos1(&mut out, "a/b", 0x0102, b"{}");
        assert_eq!(out, [0x32, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'{', b'}']);
        set_dup(&mut out);
        assert_eq!(out[0], 0x3A);
    }

    #[test]
    fn remaining_length_uses_one_to_four_bytes_at_the_boundaries() {
        for (len, bytes) in [
            (0usize, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_remaining_length(&mut out, len);
            assert_eq!(out, bytes, "length {len}");
        }
        // A 200-byte payload gives a two-byte length that parse reads back.
        let mut out = Vec::new();
        publish_qos1(&mut out, "t", 7, &[b'x'; 200]);
        assert_eq!(&out[1..3], [0xCD, 0x01]);
        assert_eq!(parse(&out), Ok(Some((Incoming::Other(0x32), out.len()))));
    }

    #[test]
    fn parse_reads_acks_waits_for_partial_packets_and_skips_unknown_ones() {
        let stream = [
            0x20, 0x02, 0x00, 0x05, // CONNACK refused: not authorized
            0x40, 0x02, 0x12, 0x34, // PUBACK 0x1234
            0xD0, 0x00, // PINGRESP
            0x90, 0x03, 0x00, 0x01, 0x00, // SUBACK: skipped whole
            0x40, 0x02, 0x00, // a PUBACK cut short
        ];
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((p, n)) = parse(&stream[at..]).unwrap() {
            seen.push(p);
            at += n;
        }
        assert_eq!(
            seen,
            [
                Incoming::ConnAck { code: 5 },
                Incoming::PubAck { packet_id: 0x1234 },
                Incoming::PingResp,
                Incoming::Other(0x90)
            ]
        );
        assert_eq!(
            stream.len() - at,
            3,
            "the partial PUBACK waits for more bytes"
        );
        assert_eq!(connack_reason(5), "not authorized");
    }

    #[test]
    fn parse_rejects_malformed_headers_instead_of_panicking() {
        assert_eq!(
            parse(&[0x40, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(CodecError::RemainingLength)
        );
        assert_eq!(
            parse(&[0x40, 0x03, 0, 1, 2]),
            Err(CodecError::BadLength {
                kind: "PUBACK",
                len: 3,
                want: 2
            })
        );
        assert_eq!(
            parse(&[0x30, 0xFF, 0xFF, 0x7F]),
            Err(CodecError::TooLarge(2_097_151))
        );
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[0x40]), Ok(None));
    }
}
