//! What talks to fleetsink in a test: MQTT clients standing in for robots, and HTTP.
//!
//! A robot's event loop runs in the background and hands the test what the broker sent
//! — PUBACKs, SUBACKs, publishes — so a test waits for the broker's answer, never for a
//! guessed time: a PUBACK means stored (or refused), a SUBACK means subscribed.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;

/// An MQTT client whose event loop runs in the background; PUBACK packet ids arrive on
/// `acks`, received publishes on `messages`.
pub struct Client {
    pub client: AsyncClient,
    pub acks: mpsc::UnboundedReceiver<u16>,
    pub messages: mpsc::UnboundedReceiver<rumqttc::Publish>,
    subacks: mpsc::UnboundedReceiver<SubscribeReasonCode>,
}

/// A client connected to `addr` with client id `id`.
pub async fn client(addr: SocketAddr, id: &str) -> Client {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(4 << 20, 4 << 20)
        .set_inflight(100);
    let (client, eventloop) = AsyncClient::new(opts, 1000);
    let (ack_tx, acks) = mpsc::unbounded_channel();
    let (suback_tx, subacks) = mpsc::unbounded_channel();
    let (msg_tx, messages) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, ack_tx, suback_tx, msg_tx));
    Client {
        client,
        acks,
        messages,
        subacks,
    }
}

async fn drive(
    mut el: EventLoop,
    acks: mpsc::UnboundedSender<u16>,
    subacks: mpsc::UnboundedSender<SubscribeReasonCode>,
    msgs: mpsc::UnboundedSender<rumqttc::Publish>,
) {
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                let _ = acks.send(a.pkid);
            }
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                for code in a.return_codes {
                    let _ = subacks.send(code);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = msgs.send(p);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            // Reconnect backoff of the test client, not a wait on fleetsink.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Client {
    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK: from then on, the
    /// broker delivers what is published there.
    pub async fn subscribe(&mut self, filter: &str) {
        let code = self.try_subscribe(filter).await;
        assert!(
            matches!(code, SubscribeReasonCode::Success(_)),
            "subscription to {filter} refused: {code:?}"
        );
    }

    /// Subscribes to `filter` at QoS 1; the broker's answer in the SUBACK.
    pub async fn try_subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.subacks.recv())
            .await
            .unwrap_or_else(|_| panic!("no SUBACK for {filter} within 10 s"))
            .unwrap()
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
            .await
            .expect("no PUBACK within 30 s")
            .unwrap();
    }

    /// Publishes every captured TonyPi message at QoS 1, each acknowledged; returns how many.
    pub async fn publish_fixtures(&mut self) -> usize {
        let fx = fleetsink::testing::fixtures();
        for (topic, payload) in &fx {
            self.publish_acked(topic, payload.to_vec()).await;
        }
        fx.len()
    }
}

/// `GET path` at `addr`: status and body.
pub async fn http_get(client: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// `method path` at `addr` with an optional JSON body and bearer token: status and the
/// JSON answer (`Null` when the body is not JSON).
pub async fn http_send(
    client: &reqwest::Client,
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}
