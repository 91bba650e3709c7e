//! Follows crema's event feed (API.md "Event feed", contract v3): every
//! acknowledged version of every order, per order in version order, from
//! JetStream stream `CREMA_EVENTS`. A durable consumer keeps its place on the
//! server, so a follower that was down catches up where it stopped.
//!
//!     cargo run --release --example feed -- nats://127.0.0.1:4222 [crema.events.>]
//!
//! Delivery is at least once: a version can come twice (after a crema
//! restart outside JetStream's 2-minute duplicate window), so a consumer that
//! must not count one twice keys on `Nats-Msg-Id` (`<order id>:<version>`).

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let subjects = args.next().unwrap_or_else(|| "crema.events.>".into());
    let context = jetstream::new(async_nats::connect(server).await?);
    let stream = context.get_stream("CREMA_EVENTS").await?;
    let consumer = stream
        .get_or_create_consumer(
            "feed-example",
            pull::Config { durable_name: Some("feed-example".into()), filter_subject: subjects, ..Default::default() },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let order: serde_json::Value = serde_json::from_slice(&message.payload)?;
        println!("{} v{} {} {}", message.subject, order["version"], order["status"], order["total"]);
        message.ack().await?;
    }
    Ok(())
}
