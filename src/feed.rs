//! The event feed (API.md "Event feed", contract v3): every acknowledged
//! version of every order, published on JetStream stream `CREMA_EVENTS`,
//! subject `crema.events.<store>.<order id>`, as the order's JSON (what
//! `GET /orders/{id}` returns), with `Nats-Msg-Id: <order id>:<version>`.
//!
//! It is published from the committed journal, not from the actors: per
//! store, a task follows `crema.journal.<store>` (an ordered consumer) and
//! publishes each order snapshot a group carries, in journal order — so per
//! order in version order, and only what JetStream acknowledged. Each event
//! carries `Crema-Journal-Seq`, the journal message it came from; at start the
//! feed goes on from the newest event's journal message (that message's
//! events again: JetStream drops the ones it has by their `Nats-Msg-Id` inside
//! its 2-minute duplicate window). Delivery is therefore at least once: a
//! consumer that must not see a version twice keeps the versions it has seen
//! (the `Nats-Msg-Id`). `examples/feed.rs` follows it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{consumer, message::PublishMessage as Publish};
use futures_util::StreamExt;

use crate::http::views::OrderView;
use crate::persistence::codec::{self, JournalEntry};
use crate::persistence::jetstream::{feed_position, journal_subject, Replicated, JOURNAL_SEQ_HEADER, JOURNAL_STREAM, NODE_HEADER};
use crate::persistence::Cf;

/// The feed subject of an order.
pub fn event_subject(store: &str, order_id: &str) -> String {
    format!("crema.events.{store}.{order_id}")
}

/// Starts one feed task per store; they run until aborted (the app stops them).
pub fn start(replicated: Arc<Replicated>, stores: Vec<String>) -> Vec<tokio::task::JoinHandle<()>> {
    stores
        .into_iter()
        .map(|store| {
            let replicated = replicated.clone();
            tokio::spawn(async move {
                loop {
                    // A fenced store's feed is its new writer's to publish.
                    if !replicated.is_fenced(&store) {
                        if let Err(err) = follow(&replicated, &store).await {
                            if !replicated.is_fenced(&store) {
                                tracing::warn!(%store, error = %err, "the event feed stopped; starting it again in 1 s");
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect()
}

/// Follows `store`'s journal from where the feed left off; returns on an error.
async fn follow(replicated: &Replicated, store: &str) -> Result<(), String> {
    let context = replicated.context();
    let journal = context.get_stream_no_info(JOURNAL_STREAM).await.map_err(|err| err.to_string())?;
    // The journal may have been trimmed past it (the feed was behind a checkpoint): start at its first.
    let start = feed_position(context, store).await.map_err(|err| err.to_string())?;
    let consumer = journal
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: journal_subject(store),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        })
        .await
        .map_err(|err| err.to_string())?;
    let mut messages = consumer.messages().await.map_err(|err| err.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|err| err.to_string())?;
        if replicated.is_fenced(store) {
            return Err("this node no longer writes the store".into());
        }
        let seq = message.info().map_err(|err| err.to_string())?.stream_sequence;
        let JournalEntry::Changes { ops, .. } = codec::decode_journal(&message.payload).map_err(|err| format!("journal message {seq}: {err}"))? else {
            continue;
        };
        let mut acks = Vec::new();
        for op in ops.iter().filter(|op| op.cf == Cf::Orders.code()) {
            let Some(value) = &op.value else { continue };
            let order = codec::decode_order(value).map_err(|err| format!("journal message {seq}: {err}"))?;
            let body = serde_json::to_vec(&OrderView::from(&order)).map_err(|err| err.to_string())?;
            let publish = Publish::build()
                .payload(body.into())
                .message_id(format!("{}:{}", order.id, order.version))
                .header(JOURNAL_SEQ_HEADER, seq.to_string().as_str())
                .header(NODE_HEADER, replicated.node());
            acks.push(context.send_publish(event_subject(store, &order.id), publish).await.map_err(|err| err.to_string())?);
        }
        // Acks in flight together (one round trip per group, not per event), in order.
        for ack in acks {
            ack.await.map_err(|err| format!("event of journal message {seq}: {err}"))?;
        }
    }
    Ok(())
}
