//! One bench robot: its own TCP connection and MQTT client id, publishing QoS 1 messages
//! at TonyPi's cadence (fleet shape) or as fast as its in-flight window allows
//! (saturated), and timing every publish to its PUBACK.
//!
//! A task per robot with one reusable timer: tokio's timer is itself a hierarchical
//! wheel, so 10,000 robots cost 10,000 wheel entries, re-armed in place, and one wake-up
//! per message. Nothing is polled: a robot sleeps until its next message is due or a
//! packet arrives.
//!
//! Invariants the report relies on:
//! - every message a robot publishes is recorded (`sent_ts`, strictly increasing payload
//!   timestamps) before it is written, and marked acknowledged when its PUBACK comes;
//! - a latency sample is taken for each message published while the window is open, from
//!   the instant its bytes were handed to the socket to the PUBACK's arrival, whatever
//!   happened in between (a reconnect and resend included);
//! - after a lost connection the robot reconnects and resends what was not acknowledged
//!   (DUP set), as TonyPi's paho client does; the daemon must store each message once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cadence::{Cadence, Kind};
use super::traffic::RobotTraffic;
use super::{Mix, Phase, Shared};
use fleetsink::mqtt::client_codec::{self as codec, CodecError, Incoming};

/// How robots pace their messages.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// TonyPi's cadence, each period jittered by this fraction.
    Fleet { jitter: f64 },
    /// As fast as the in-flight window allows, or one message per `interval` per robot.
    Saturated {
        interval: Option<Duration>,
        mix: Mix,
    },
}

/// What every robot shares.
pub struct RobotConfig {
    pub addr: SocketAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keepalive: Duration,
    /// Unacknowledged publishes per connection; a fleet robot whose window is full skips
    /// the message that is due (counted as held back).
    pub inflight: usize,
    pub pace: Pace,
    /// Longest wait for one TCP connect + CONNACK.
    pub connect_timeout: Duration,
    pub robots: usize,
    /// `--uniform-sensors`.
    pub uniform_sensors: bool,
}

/// What a robot did, for the report and the database check.
#[derive(Default)]
pub struct RobotResult {
    /// Payload timestamp (µs since the epoch) of every message published, in order.
    pub sent_ts: Vec<i64>,
    /// `acked[i]`: the PUBACK of message `i` arrived.
    pub acked: Vec<bool>,
    /// publish→PUBACK of every acknowledged message published inside the window, µs.
    pub latencies_us: Vec<u32>,
    /// The Unix second each latency sample's message was published in, in the same
    /// order (for `--per-second`).
    pub sample_seconds: Vec<u32>,
}

/// A message awaiting its PUBACK.
struct InFlight {
    packet_id: u16,
    /// Index into `sent_ts`.
    idx: usize,
    at: Instant,
    measured: bool,
    /// The encoded PUBLISH, resent after a reconnect.
    packet: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the broker refused the connection: {1} (CONNACK code {0})")]
    Refused(u8, &'static str),
    #[error("the broker closed the connection")]
    Closed,
    #[error("no CONNACK within {0:?}")]
    Timeout(Duration),
    #[error("the broker answered CONNECT with packet type {0:#04x}, not CONNACK")]
    NotConnack(u8),
}

pub struct Robot {
    n: usize,
    start_at: Instant,
    traffic: RobotTraffic,
    cadence: Option<Cadence>,
    /// Saturated with a rate: when the next message is due.
    next_paced: Instant,
    /// In send order; PUBACKs come in that order almost always, so the one acknowledged
    /// is found at the front, and a window of a few (fleet) or a hundred (saturated)
    /// needs no hashing.
    inflight: VecDeque<InFlight>,
    next_pid: u16,
    last_ts: i64,
    /// Scratch for one payload, reused.
    payload: Vec<u8>,
    result: RobotResult,
    cfg: Arc<RobotConfig>,
    shared: Arc<Shared>,
}

impl Robot {
    /// Robot number `n` (from 1), `id` its robot and client id, connecting first at
    /// `start_at` (its slot in the ramp).
    pub fn new(
        n: usize,
        id: String,
        start_at: Instant,
        cfg: Arc<RobotConfig>,
        shared: Arc<Shared>,
    ) -> Robot {
        let rng = fastrand::Rng::with_seed(fastrand::u64(..) ^ n as u64);
        Robot {
            n,
            start_at,
            traffic: RobotTraffic::new(id, rng, cfg.uniform_sensors),
            cadence: None,
            next_paced: start_at,
            inflight: VecDeque::new(),
            next_pid: 1,
            last_ts: 0,
            payload: Vec::with_capacity(1200),
            result: RobotResult::default(),
            cfg,
            shared,
        }
    }

    /// Connects (and reconnects) until the bench stops it; returns what it did.
    pub async fn run(mut self) -> RobotResult {
        let stop = self.shared.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep_until(self.start_at.into()) => {}
            _ = stop.cancelled() => return self.result,
        }
        let mut ever_connected = false;
        loop {
            let conn = tokio::select! {
                c = connect(&self.cfg, self.traffic.id()) => c,
                _ = stop.cancelled() => return self.result,
            };
            let (stream, rbuf) = match conn {
                Ok(c) => c,
                Err(e) => {
                    self.shared
                        .note_error(self.traffic.id(), "could not connect", &e);
                    // Retry after 1–2 s, jittered so refused robots do not return in step.
                    let pause = Duration::from_millis(1000 + fastrand::u64(..1000));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = stop.cancelled() => return self.result,
                    }
                }
            };
            if ever_connected {
                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            } else {
                ever_connected = true;
                self.shared.ever_connected.fetch_add(1, Ordering::Relaxed);
                self.start_pacing(Instant::now());
            }
            let ended = self.session(stream, rbuf).await;
            match ended {
                Ok(()) => return self.result,
                Err(e) => self
                    .shared
                    .note_error(self.traffic.id(), "lost its connection", &e),
            }
        }
    }

    fn start_pacing(&mut self, now: Instant) {
        let rng = fastrand::Rng::with_seed(fastrand::u64(..) ^ (self.n as u64) << 20);
        match self.cfg.pace {
            Pace::Fleet { jitter } => self.cadence = Some(Cadence::new(now, jitter, rng)),
            Pace::Saturated { interval, .. } => {
                // The TonyPi mix in proportion; rate-paced robots spread over one interval.
                self.cadence = Some(Cadence::new(now, 0.1, rng));
                self.next_paced = now
                    + interval.map_or(Duration::ZERO, |i| {
                        i.mul_f64(self.n as f64 / self.cfg.robots.max(1) as f64)
                    });
            }
        }
    }

    /// One connection's life: resend what was unacknowledged, then publish what is due
    /// and read PUBACKs until the bench stops (`Ok`) or the connection fails (`Err`).
    async fn session(&mut self, mut stream: TcpStream, mut rbuf: Vec<u8>) -> Result<(), ConnError> {
        let mut wbuf = Vec::with_capacity(2048);
        for f in &mut self.inflight {
            codec::set_dup(&mut f.packet);
            wbuf.extend_from_slice(&f.packet);
        }
        // Registered once per session, not once per wake-up: every robot waits on the
        // same token, and re-registering would take its lock twice per message.
        let stop = self.shared.stop.clone();
        let stopped = stop.cancelled();
        let timer = tokio::time::sleep_until(Instant::now().into());
        tokio::pin!(stopped, timer);
        let mut last_write = Instant::now();
        loop {
            let now = Instant::now();
            let phase = self.shared.phase();
            let publishing = phase != Phase::Drain && !self.shared.cap_reached();
            if publishing {
                self.publish_due(now, phase, &mut wbuf);
            }
            if wbuf.is_empty() && now >= last_write + self.cfg.keepalive {
                codec::pingreq(&mut wbuf);
            }
            if !wbuf.is_empty() {
                stream.write_all(&wbuf).await?;
                wbuf.clear();
                last_write = now;
            }
            let idle = last_write + self.cfg.keepalive;
            let wake = if publishing {
                self.next_wake(now).min(idle)
            } else {
                idle
            };
            timer.as_mut().reset(wake.into());
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    codec::disconnect(&mut wbuf);
                    let _ = stream.write_all(&wbuf).await;
                    return Ok(());
                }
                read = stream.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Err(ConnError::Closed);
                    }
                    self.take_acks(&mut rbuf)?;
                }
                _ = &mut timer => {}
            }
        }
    }

    /// When the next message is due: the cadence's next, the paced message's time, or
    /// (a saturated robot with room in its window and no pacing) right away; with the
    /// window full, nothing until a PUBACK arrives.
    fn next_wake(&self, now: Instant) -> Instant {
        let idle = now + self.cfg.keepalive;
        match (self.cfg.pace, &self.cadence) {
            (Pace::Fleet { .. }, Some(c)) => c.next_due(),
            (Pace::Saturated { interval, .. }, _) if self.inflight.len() < self.cfg.inflight => {
                interval.map_or(now, |_| self.next_paced)
            }
            _ => idle,
        }
    }

    fn publish_due(&mut self, now: Instant, phase: Phase, wbuf: &mut Vec<u8>) {
        match self.cfg.pace {
            Pace::Fleet { .. } => {
                while let Some(kind) = self.cadence.as_mut().and_then(|c| c.pop_due(now)) {
                    if self.inflight.len() >= self.cfg.inflight {
                        self.shared.held_back.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if !self.publish(kind, phase, wbuf) {
                        return;
                    }
                }
            }
            Pace::Saturated { interval, mix } => {
                while self.inflight.len() < self.cfg.inflight {
                    if let Some(i) = interval {
                        if self.next_paced > now {
                            return;
                        }
                        self.next_paced += i;
                    }
                    let kind = match (mix, self.cadence.as_mut()) {
                        (Mix::Tonypi, Some(c)) => c.next_kind(),
                        _ => Kind::Sensors,
                    };
                    if !self.publish(kind, phase, wbuf) {
                        return;
                    }
                }
            }
        }
    }

    /// Encodes one message into `wbuf` and records it; `false` once the bench's message
    /// cap is reached.
    fn publish(&mut self, kind: Kind, phase: Phase, wbuf: &mut Vec<u8>) -> bool {
        if !self.shared.reserve_message() {
            return false;
        }
        let measured = phase == Phase::Measure;
        if measured {
            self.shared
                .published_in_window
                .fetch_add(1, Ordering::Relaxed);
        }
        let ts = wall_clock_us().max(self.last_ts + 1);
        self.last_ts = ts;
        self.payload.clear();
        self.traffic.payload(kind, ts, &mut self.payload);
        let packet_id = self.packet_id();
        let topic = self.traffic.topic(kind);
        let mut packet = Vec::with_capacity(self.payload.len() + topic.len() + 8);
        codec::publish_qos1(&mut packet, topic, packet_id, &self.payload);
        wbuf.extend_from_slice(&packet);
        let idx = self.result.sent_ts.len();
        self.result.sent_ts.push(ts);
        self.result.acked.push(false);
        self.inflight.push_back(InFlight {
            packet_id,
            idx,
            at: Instant::now(),
            measured,
            packet,
        });
        true
    }

    /// The next packet id not in flight (1..=65535; the window is far smaller).
    fn packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }

    /// Handles every complete packet in `rbuf`: PUBACKs settle their message and give a
    /// latency sample; anything else a publishing robot may receive is ignored.
    fn take_acks(&mut self, rbuf: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut at = 0;
        while let Some((packet, len)) = codec::parse(&rbuf[at..])? {
            at += len;
            let Incoming::PubAck { packet_id } = packet else {
                continue;
            };
            let found = self.inflight.iter().position(|f| f.packet_id == packet_id);
            let Some(f) = found.and_then(|i| self.inflight.remove(i)) else {
                self.shared.unexpected_acks.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let now = Instant::now();
            self.result.acked[f.idx] = true;
            self.shared.acked.fetch_add(1, Ordering::Relaxed);
            if self.shared.phase() == Phase::Measure {
                self.shared.acked_in_window.fetch_add(1, Ordering::Relaxed);
            }
            if f.measured {
                let us = now.duration_since(f.at).as_micros();
                self.result
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
                let second = self.result.sent_ts[f.idx].div_euclid(1_000_000);
                self.result
                    .sample_seconds
                    .push(u32::try_from(second).unwrap_or(0));
            }
        }
        rbuf.drain(..at);
        Ok(())
    }
}

/// Opens a connection and completes the MQTT handshake; returns the stream and any bytes
/// read past the CONNACK.
async fn connect(cfg: &RobotConfig, client_id: &str) -> Result<(TcpStream, Vec<u8>), ConnError> {
    let handshake = async {
        let mut stream = TcpStream::connect(cfg.addr).await?;
        stream.set_nodelay(true)?;
        let mut buf = Vec::with_capacity(128);
        let keepalive = u16::try_from(cfg.keepalive.as_secs()).unwrap_or(u16::MAX);
        codec::connect(
            &mut buf,
            client_id,
            keepalive,
            cfg.username.as_deref(),
            cfg.password.as_deref(),
        );
        stream.write_all(&buf).await?;
        buf.clear();
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(ConnError::Closed);
            }
            match codec::parse(&buf)? {
                None => continue,
                Some((Incoming::ConnAck { code: 0 }, len)) => {
                    buf.drain(..len);
                    return Ok((stream, buf));
                }
                Some((Incoming::ConnAck { code }, _)) => {
                    return Err(ConnError::Refused(code, codec::connack_reason(code)));
                }
                Some((Incoming::PubAck { .. }, _)) => return Err(ConnError::NotConnack(0x40)),
                Some((Incoming::PingResp, _)) => return Err(ConnError::NotConnack(0xD0)),
                Some((Incoming::Other(first), _)) => return Err(ConnError::NotConnack(first)),
            }
        }
    };
    tokio::time::timeout(cfg.connect_timeout, handshake)
        .await
        .map_err(|_| ConnError::Timeout(cfg.connect_timeout))?
}

/// Microseconds since the epoch (a payload timestamp).
fn wall_clock_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot(phase: Phase) -> Robot {
        let shared = Arc::new(Shared::new(1_000, Instant::now()));
        shared.set_phase(phase);
        let cfg = Arc::new(RobotConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            username: None,
            password: None,
            keepalive: Duration::from_secs(60),
            inflight: 100,
            pace: Pace::Fleet { jitter: 0.1 },
            connect_timeout: Duration::from_secs(1),
            robots: 1,
            uniform_sensors: false,
        });
        Robot::new(1, "bench-00001".into(), Instant::now(), cfg, shared)
    }

    fn puback(id: u16) -> [u8; 4] {
        let [hi, lo] = id.to_be_bytes();
        [0x40, 0x02, hi, lo]
    }

    #[test]
    fn pubacks_settle_their_own_message_in_any_order_and_strays_count_as_duplicates() {
        let mut r = robot(Phase::Measure);
        let mut wire = Vec::new();
        for kind in [Kind::Sensors, Kind::Servos, Kind::Status] {
            assert!(r.publish(kind, Phase::Measure, &mut wire));
        }
        let ts = r.result.sent_ts.clone();
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "unique, increasing: {ts:?}"
        );
        // The wire holds three QoS 1 PUBLISHes, kept for a resend, with ids 1, 2, 3.
        let (mut at, mut packets) = (0, 0);
        while let Ok(Some((p, n))) = codec::parse(&wire[at..]) {
            assert_eq!(p, Incoming::Other(0x32));
            (at, packets) = (at + n, packets + 1);
        }
        assert_eq!((at, packets), (wire.len(), 3));
        assert_eq!(
            wire,
            r.inflight
                .iter()
                .flat_map(|f| f.packet.clone())
                .collect::<Vec<u8>>()
        );
        assert_eq!(
            r.inflight.iter().map(|f| f.packet_id).collect::<Vec<_>>(),
            [1, 2, 3]
        );

        // PUBACK 2, a stray 99, then 3 split across two reads.
        let mut rbuf: Vec<u8> = [puback(2), puback(99)].concat();
        rbuf.extend_from_slice(&puback(3)[..1]);
        r.take_acks(&mut rbuf).expect("well-formed");
        assert_eq!(rbuf.len(), 1, "the partial PUBACK waits");
        rbuf.extend_from_slice(&puback(3)[1..]);
        r.take_acks(&mut rbuf).expect("well-formed");

        assert_eq!(r.result.acked, [false, true, true]);
        assert_eq!(
            r.result.latencies_us.len(),
            2,
            "one sample per acknowledged message"
        );
        assert_eq!(r.shared.acked.load(Ordering::Relaxed), 2);
        assert_eq!(r.shared.acked_in_window.load(Ordering::Relaxed), 2);
        assert_eq!(r.shared.unexpected_acks.load(Ordering::Relaxed), 1);
        assert_eq!(r.inflight.len(), 1);
        assert_eq!(r.inflight[0].packet_id, 1);
    }

    #[test]
    fn messages_before_the_window_are_acknowledged_but_not_timed() {
        let mut r = robot(Phase::Warmup);
        let mut wire = Vec::new();
        assert!(r.publish(Kind::Battery, Phase::Warmup, &mut wire));
        r.take_acks(&mut puback(1).to_vec()).expect("well-formed");
        assert_eq!(r.result.acked, [true]);
        assert!(r.result.latencies_us.is_empty());
        assert_eq!(r.shared.published_in_window.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn packet_ids_skip_zero_and_those_still_in_flight() {
        let mut r = robot(Phase::Measure);
        let mut wire = Vec::new();
        assert!(r.publish(Kind::Sensors, Phase::Measure, &mut wire));
        assert_eq!(r.inflight[0].packet_id, 1);
        r.next_pid = u16::MAX;
        assert_eq!(r.packet_id(), u16::MAX);
        assert_eq!(r.packet_id(), 2, "wrapped past 0, and 1 is still in flight");
    }

    #[test]
    fn the_message_cap_stops_publishing() {
        let mut r = robot(Phase::Measure);
        let mut wire = Vec::new();
        let sent = (0..1_500)
            .take_while(|_| r.publish(Kind::Sensors, Phase::Measure, &mut wire))
            .count();
        assert_eq!(sent, 1_000);
        assert!(r.shared.cap_reached());
    }
}
