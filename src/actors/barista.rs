//! The barista pool: the queue of paid tickets and the stations that make them.
//!
//! The pool owns the queue (first in, first out by queue sequence number) and
//! the state of every station. It hands the head ticket to each free, unpaused
//! station. An `auto` station is a simulated barista: it brews for the order's
//! brew time × `barista.brew_scale` (a timer on this actor), then reports the
//! ticket done. A `manual` station is driven by a person through `next`/`done`.
//!
//! It tells the ticket's order actor about every move ([`TicketMoved`]);
//! the order actor persists the change.
//! A paused station gives its current ticket back to the queue, which keeps its
//! place: the queue is ordered by sequence number, so a returned ticket goes
//! back to the head.
//!
//! Each station has a station actor that does the brewing (an auto station
//! sleeps for the brew time). The pool supervises them: when a station actor
//! dies (it panicked), the pool's pending `Brew` request fails, and the pool
//! starts a new station actor and puts the ticket back at the head of the queue.
//!
//! Bounds: the queue holds at most `barista.max_queue` tickets. The
//! [`Admission`] counter reserves a place *before* an order is charged, so a
//! full queue turns `POST /orders` away with 503 before any money moves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use crate::config::StationMode;
use crate::domain::{LineOption, OrderEvent};
use crate::domain::time::now_ms;

/// Reserved places in the ticket queue. `try_reserve` before charging;
/// the pool releases the place when the ticket leaves the queue.
#[derive(Debug)]
pub struct Admission {
    used: AtomicUsize,
    capacity: usize,
}

impl Admission {
    pub fn new(capacity: usize) -> Self {
        Admission { used: AtomicUsize::new(0), capacity }
    }

    pub fn try_reserve(&self) -> bool {
        self.try_reserve_n(1)
    }

    /// Reserves `n` places at once (an order's tickets), or none.
    pub fn try_reserve_n(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used + n <= self.capacity).then_some(used + n))
            .is_ok()
    }

    /// Takes a place even beyond capacity: recovery must re-queue every paid ticket.
    pub fn force_reserve(&self) {
        self.used.fetch_add(1, Ordering::AcqRel);
    }

    pub fn release(&self) {
        self.release_n(1);
    }

    pub fn release_n(&self, n: usize) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(n)));
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One station kind's part of a paid order, waiting for (or at) a station.
#[derive(Clone)]
pub struct Ticket {
    pub order_id: String,
    /// The station kind that makes it.
    pub kind: String,
    /// Its place among the order's tickets: with `queue_seq`, its place in the queue.
    pub part: usize,
    /// The order's pickup number and customer, for the barista's screen.
    pub number: Option<u16>,
    pub customer: Option<String>,
    pub queue_seq: u64,
    pub items: Vec<TicketItem>,
    pub brew_ms: u64,
    pub queued_ms: u64,
    /// The order's actor, told about every move of the ticket.
    pub owner: Recipient<TicketMoved>,
}

/// A move of a ticket (started, given back, finished), told to its order's
/// actor, which persists it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TicketMoved(pub OrderEvent);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketItem {
    pub menu_id: String,
    pub name: String,
    pub qty: u32,
    /// The chosen options (size, milk, extras), as the order echoes them.
    pub options: Vec<LineOption>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StationState {
    Idle,
    Brewing,
    Paused,
}

/// A station as shown by `GET /stations`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StationView {
    pub id: String,
    pub mode: StationMode,
    /// The station kinds it makes; `null`: every kind.
    pub serves: Option<Vec<String>>,
    pub state: StationState,
    pub order: Option<String>,
    /// The ticket it is making.
    pub ticket: Option<TicketView>,
    pub made: u64,
    /// Times its station actor crashed and was restarted.
    pub restarts: u64,
}

/// A ticket as shown by `GET /queue`, `POST /stations/{id}/next` and on its station.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketView {
    pub order: String,
    /// The station kind that makes it.
    pub kind: String,
    /// The order's pickup number (`null` for orders placed before numbers existed).
    pub number: Option<u16>,
    pub customer: Option<String>,
    /// The order's lines of this kind, with their options and notes.
    pub items: Vec<TicketItem>,
    #[serde(rename = "queued_at", serialize_with = "crate::domain::time::serialize_rfc3339")]
    #[schema(value_type = String)]
    pub queued_ms: u64,
}

impl From<&Ticket> for TicketView {
    fn from(ticket: &Ticket) -> Self {
        TicketView {
            order: ticket.order_id.clone(),
            kind: ticket.kind.clone(),
            number: ticket.number,
            customer: ticket.customer.clone(),
            items: ticket.items.clone(),
            queued_ms: ticket.queued_ms,
        }
    }
}

struct Station {
    id: String,
    mode: StationMode,
    /// The kinds of ticket it takes; `None`: every kind.
    serves: Option<Vec<String>>,
    paused: bool,
    current: Option<Ticket>,
    /// The station actor that brews; replaced when it crashes.
    worker: Addr<StationActor>,
    restarts: u64,
    /// The pending brew of an auto station, cancelled on pause or abort.
    timer: Option<SpawnHandle>,
    /// When it took its current ticket.
    started_ms: u64,
    made: u64,
}

impl Station {
    fn serves(&self, kind: &str) -> bool {
        self.serves.as_ref().is_none_or(|kinds| kinds.iter().any(|served| served == kind))
    }

    fn view(&self) -> StationView {
        let state = match (self.paused, &self.current) {
            (true, _) => StationState::Paused,
            (false, Some(_)) => StationState::Brewing,
            (false, None) => StationState::Idle,
        };
        StationView {
            id: self.id.clone(),
            mode: self.mode,
            serves: self.serves.clone(),
            state,
            order: self.current.as_ref().map(|ticket| ticket.order_id.clone()),
            ticket: self.current.as_ref().map(TicketView::from),
            made: self.made,
            restarts: self.restarts,
        }
    }
}

pub struct BaristaPool {
    /// Brew time per station kind (ms, started → finished), since start.
    brews: std::collections::BTreeMap<String, crate::metrics::Histogram>,
    queue: VecDeque<Ticket>,
    stations: Vec<Station>,
    brew_scale: f64,
    admission: Arc<Admission>,
    faults: Arc<StationFaults>,
}

/// A station as configured: its id, mode and the kinds it serves (`None`: all).
#[derive(Debug, Clone)]
pub struct StationSetup {
    pub id: String,
    pub mode: StationMode,
    pub serves: Option<Vec<String>>,
}

impl BaristaPool {
    /// Must be called on the arbiter the pool will run on: the station actors start there.
    pub fn new(stations: Vec<StationSetup>, brew_scale: f64, admission: Arc<Admission>, faults: Arc<StationFaults>) -> Self {
        let stations = stations
            .into_iter()
            .map(|setup| Station {
                id: setup.id,
                mode: setup.mode,
                serves: setup.serves,
                paused: false,
                current: None,
                worker: StationActor { faults: faults.clone() }.start(),
                restarts: 0,
                timer: None,
                started_ms: 0,
                made: 0,
            })
            .collect();
        BaristaPool { brews: Default::default(), queue: VecDeque::new(), stations, brew_scale, admission, faults }
    }

    /// Inserts by (sequence number, part); new tickets almost always go at the back.
    fn insert(&mut self, ticket: Ticket) {
        let key = (ticket.queue_seq, ticket.part);
        let at = self.queue.iter().rposition(|queued| (queued.queue_seq, queued.part) < key).map_or(0, |i| i + 1);
        self.queue.insert(at, ticket);
    }

    /// Takes the oldest waiting ticket of a kind station `index` serves.
    fn take_for(&mut self, index: usize) -> Option<Ticket> {
        let station = &self.stations[index];
        if station.serves.is_none() {
            return self.queue.pop_front();
        }
        let at = self.queue.iter().position(|ticket| station.serves(&ticket.kind))?;
        self.queue.remove(at)
    }

    fn station_index(&self, id: &str) -> Result<usize, PoolError> {
        self.stations.iter().position(|station| station.id == id).ok_or(PoolError::UnknownStation)
    }

    /// Gives the head ticket to every free auto station.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        for index in 0..self.stations.len() {
            let station = &self.stations[index];
            if station.mode != StationMode::Auto || station.paused || station.current.is_some() {
                continue;
            }
            if self.queue.is_empty() {
                return;
            }
            if let Some(ticket) = self.take_for(index) {
                self.start(index, ticket, ctx);
            }
        }
    }

    fn start(&mut self, index: usize, ticket: Ticket, ctx: &mut Context<Self>) {
        self.admission.release();
        let station = &mut self.stations[index];
        station.started_ms = now_ms();
        tell(&ticket.owner, OrderEvent::Started { station: station.id.clone(), kind: ticket.kind.clone() });
        if station.mode == StationMode::Auto {
            let brew = Duration::from_secs_f64(ticket.brew_ms as f64 * self.brew_scale / 1000.0);
            let (order_id, kind) = (ticket.order_id.clone(), ticket.kind.clone());
            let brewed = station.worker.send(Brew { duration: brew });
            station.current = Some(ticket);
            let handle = ctx.spawn(brewed.into_actor(self).map(move |result, pool, ctx| match result {
                Ok(()) => pool.finish(index, &order_id, &kind, ctx),
                Err(_) => pool.restart(index, ctx),
            }));
            self.stations[index].timer = Some(handle);
        } else {
            station.current = Some(ticket);
        }
    }

    /// The station actor died mid-brew: start a new one, and put its ticket
    /// back at the head of the queue.
    fn restart(&mut self, index: usize, ctx: &mut Context<Self>) {
        let station = &mut self.stations[index];
        station.timer = None;
        station.restarts += 1;
        station.worker = StationActor { faults: self.faults.clone() }.start();
        tracing::error!(station = %station.id, restarts = station.restarts, "station crashed; restarted, its ticket goes back to the head of the queue");
        self.give_back(index, ctx);
        self.dispatch(ctx);
    }

    fn finish(&mut self, index: usize, order_id: &str, kind: &str, ctx: &mut Context<Self>) {
        let station = &mut self.stations[index];
        if !station.current.as_ref().is_some_and(|ticket| ticket.order_id == order_id && ticket.kind == kind) {
            return;
        }
        station.timer = None;
        station.made += 1;
        let took = now_ms().saturating_sub(station.started_ms);
        if let Some(ticket) = station.current.take() {
            if !self.brews.contains_key(&ticket.kind) {
                self.brews.insert(ticket.kind.clone(), crate::metrics::Histogram::new(crate::metrics::CAFE_MS));
            }
            self.brews[&ticket.kind].observe(took);
            tell(&ticket.owner, OrderEvent::Finished { kind: ticket.kind.clone() });
        }
        self.dispatch(ctx);
    }

    /// Takes the station's ticket back into the queue (pause).
    fn give_back(&mut self, index: usize, ctx: &mut Context<Self>) {
        let station = &mut self.stations[index];
        if let Some(timer) = station.timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(ticket) = station.current.take() {
            self.admission.force_reserve();
            tell(&ticket.owner, OrderEvent::Requeued { kind: ticket.kind.clone() });
            self.insert(ticket);
        }
    }
}

impl BaristaPool {
    fn brew_ms(&self, ticket: &Ticket) -> u64 {
        (ticket.brew_ms as f64 * self.brew_scale) as u64
    }

    /// When `order_id` should be ready: the queue up to its last ticket is
    /// handed, in order, each ticket to the working station serving its kind
    /// that frees up first; the order is ready when its last ticket is.
    /// `None` when none of its tickets is here, or a kind it needs has no
    /// working station.
    ///
    /// The order's tickets are found by its `queue_seq` (the queue is sorted
    /// by it), and only the first [`EXACT_AHEAD`] tickets ahead are handed out
    /// one by one; the rest ahead are counted at the mean brew time of those,
    /// spread over the working stations. So a deep queue costs no more than a
    /// short one.
    fn eta_of(&self, order_id: &str, queue_seq: Option<u64>, now_ms: u64) -> Option<u64> {
        let mut on_station: Option<u64> = None;
        let mut slots = self.working_slots(now_ms, |ticket, done| {
            if ticket.order_id == order_id {
                on_station = Some(on_station.map_or(done, |at: u64| at.max(done)));
            }
        });
        let queued = match queue_seq {
            Some(seq) => {
                let first = self.queue.partition_point(|ticket| ticket.queue_seq < seq);
                let end = self.queue.partition_point(|ticket| ticket.queue_seq <= seq);
                let own: Vec<&Ticket> = self.queue.range(first..end).filter(|ticket| ticket.order_id == order_id).collect();
                (!own.is_empty()).then_some((first, own))
            }
            None => None,
        };
        let Some((ahead, own)) = queued else { return on_station };
        let new: Vec<(&str, u64)> = own.iter().map(|ticket| (ticket.kind.as_str(), self.brew_ms(ticket))).collect();
        let queued_done = self.hand_out(&mut slots, ahead, &new)?;
        Some(on_station.map_or(queued_done, |done| done.max(queued_done)))
    }

    /// When an order of `tickets` (kind, unscaled brew ms) placed now would
    /// be ready: behind the whole queue (for `max_wait_s`).
    fn eta_of_new(&self, tickets: &[(String, u64)], now_ms: u64) -> Option<u64> {
        let mut slots = self.working_slots(now_ms, |_, _| {});
        let new: Vec<(&str, u64)> =
            tickets.iter().map(|(kind, brew)| (kind.as_str(), (*brew as f64 * self.brew_scale) as u64)).collect();
        self.hand_out(&mut slots, self.queue.len(), &new)
    }

    /// Every working station: when it is free, and the kinds it serves.
    /// `current(ticket, done)` sees each ticket being made and when it will be.
    fn working_slots(&self, now_ms: u64, mut current: impl FnMut(&Ticket, u64)) -> Vec<(u64, &Station)> {
        let mut slots = Vec::new();
        for station in self.stations.iter().filter(|station| !station.paused) {
            let free = match &station.current {
                Some(ticket) => {
                    let done = (station.started_ms + self.brew_ms(ticket)).max(now_ms);
                    current(ticket, done);
                    done
                }
                None => now_ms,
            };
            slots.push((free, station));
        }
        slots
    }

    /// Hands the first `ahead` queued tickets, then `new` (kind, scaled brew),
    /// to the slots; when the last of `new` is done. `None` if a kind has no slot.
    fn hand_out(&self, slots: &mut [(u64, &Station)], ahead: usize, new: &[(&str, u64)]) -> Option<u64> {
        let mut give = |kind: &str, brew: u64| -> Option<u64> {
            let slot = slots.iter_mut().filter(|(_, station)| station.serves(kind)).min_by_key(|(free, _)| *free)?;
            slot.0 += brew;
            Some(slot.0)
        };
        let exact = ahead.min(EXACT_AHEAD);
        let mut exact_brew_ms = 0;
        for ticket in self.queue.range(..exact) {
            let brew = self.brew_ms(ticket);
            exact_brew_ms += brew;
            // A ticket ahead that no working station serves waits; it holds no one up.
            let _ = give(&ticket.kind, brew);
        }
        let mut done = None;
        for (kind, brew) in new {
            let at = give(kind, *brew)?;
            done = Some(done.map_or(at, |other: u64| other.max(at)));
        }
        let rest_ahead = (ahead - exact) as u64;
        let rest_ms = match exact {
            0 => 0,
            _ => rest_ahead * exact_brew_ms / exact as u64 / slots.len().max(1) as u64,
        };
        Some(done? + rest_ms)
    }
}

/// Tickets ahead handed out one by one when estimating an ETA (see `eta_of`).
const EXACT_AHEAD: usize = 256;

/// When the order should be ready, in ms since the epoch (see `eta_of`).
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct EtaOf {
    pub order_id: String,
    /// The order's place in the queue, if it has one.
    pub queue_seq: Option<u64>,
}

impl Handler<EtaOf> for BaristaPool {
    type Result = Option<u64>;

    fn handle(&mut self, msg: EtaOf, _: &mut Self::Context) -> Option<u64> {
        self.eta_of(&msg.order_id, msg.queue_seq, now_ms())
    }
}

/// When an order of these tickets (kind, unscaled brew ms) placed now would
/// be ready, in ms since the epoch; `None` if a kind has no working station.
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct EtaOfNew(pub Vec<(String, u64)>);

impl Handler<EtaOfNew> for BaristaPool {
    type Result = Option<u64>;

    fn handle(&mut self, msg: EtaOfNew, _: &mut Self::Context) -> Option<u64> {
        self.eta_of_new(&msg.0, now_ms())
    }
}

/// Tells an order actor about a move of its ticket, without waiting for it
/// to be handled (the order actor persists every move, in the order sent; see
/// [`super::deliver`]).
fn tell(owner: &Recipient<TicketMoved>, event: OrderEvent) {
    if !super::deliver_to(owner, TicketMoved(event)) {
        tracing::warn!("an order actor stopped before it took a ticket update");
    }
}

/// Fault injection for tests (`barista.inject_panics`): the next N brews panic.
#[derive(Debug, Default)]
pub struct StationFaults {
    pub panics_left: AtomicUsize,
}

/// A station's worker: brews one ticket at a time for the pool.
pub struct StationActor {
    faults: Arc<StationFaults>,
}

impl Actor for StationActor {
    type Context = Context<Self>;
}

/// Brew for `duration`; answers when done.
#[derive(Message)]
#[rtype(result = "()")]
struct Brew {
    duration: Duration,
}

impl Handler<Brew> for StationActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Brew, _: &mut Self::Context) -> Self::Result {
        let inject = self.faults.panics_left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(1));
        if inject.is_ok() {
            panic!("injected station fault");
        }
        // A zero brew (`brew_scale = 0`) is done at once: tokio's timer would
        // round it up to its 1 ms tick and make every station a 1,000/s one.
        let duration = msg.duration;
        Box::pin(async move {
            if !duration.is_zero() {
                tokio::time::sleep(duration).await;
            }
        })
    }
}

impl Actor for BaristaPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Every message to the pool is small; this bounds bursts from many order actors.
        ctx.set_mailbox_capacity(16_384);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no such station")]
    UnknownStation,
    #[error("the station is busy")]
    Busy,
    #[error("the station is idle")]
    Idle,
    #[error("the station is paused")]
    Paused,
    #[error("this is an automatic station")]
    NotManual,
}

/// A paid ticket joins the queue (its admission place is already reserved).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub Ticket);

impl Handler<Enqueue> for BaristaPool {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        self.insert(msg.0);
        self.dispatch(ctx);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// It was waiting in the queue; it is gone.
    Withdrawn,
    /// A station was making it; the station stopped.
    Aborted,
    /// The pool does not hold it: the station already finished it.
    NotHeld,
}

/// Cancel: take the order's ticket out of the queue or off its station.
#[derive(Message)]
#[rtype(result = "Withdrawal")]
pub struct Withdraw {
    pub order_id: String,
}

impl Handler<Withdraw> for BaristaPool {
    type Result = MessageResult<Withdraw>;

    /// Every ticket of the order goes: the waiting ones leave the queue, the
    /// ones being made are aborted.
    fn handle(&mut self, msg: Withdraw, ctx: &mut Self::Context) -> Self::Result {
        let before = self.queue.len();
        self.queue.retain(|ticket| ticket.order_id != msg.order_id);
        let withdrawn = before - self.queue.len();
        for _ in 0..withdrawn {
            self.admission.release();
        }
        let mut aborted = false;
        for station in &mut self.stations {
            if station.current.as_ref().is_some_and(|ticket| ticket.order_id == msg.order_id) {
                station.current = None;
                if let Some(timer) = station.timer.take() {
                    ctx.cancel_future(timer);
                }
                aborted = true;
            }
        }
        if aborted {
            self.dispatch(ctx);
            MessageResult(Withdrawal::Aborted)
        } else if withdrawn > 0 {
            MessageResult(Withdrawal::Withdrawn)
        } else {
            MessageResult(Withdrawal::NotHeld)
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<StationView, PoolError>")]
pub struct Pause {
    pub station: String,
}

impl Handler<Pause> for BaristaPool {
    type Result = Result<StationView, PoolError>;

    fn handle(&mut self, msg: Pause, ctx: &mut Self::Context) -> Self::Result {
        let index = self.station_index(&msg.station)?;
        self.stations[index].paused = true;
        self.give_back(index, ctx);
        self.dispatch(ctx);
        Ok(self.stations[index].view())
    }
}

#[derive(Message)]
#[rtype(result = "Result<StationView, PoolError>")]
pub struct Resume {
    pub station: String,
}

impl Handler<Resume> for BaristaPool {
    type Result = Result<StationView, PoolError>;

    fn handle(&mut self, msg: Resume, ctx: &mut Self::Context) -> Self::Result {
        let index = self.station_index(&msg.station)?;
        self.stations[index].paused = false;
        self.dispatch(ctx);
        Ok(self.stations[index].view())
    }
}

/// Manual station: take the head ticket. `Ok(None)` when the queue is empty.
#[derive(Message)]
#[rtype(result = "Result<Option<TicketView>, PoolError>")]
pub struct Next {
    pub station: String,
}

impl Handler<Next> for BaristaPool {
    type Result = Result<Option<TicketView>, PoolError>;

    fn handle(&mut self, msg: Next, ctx: &mut Self::Context) -> Self::Result {
        let index = self.station_index(&msg.station)?;
        let station = &self.stations[index];
        if station.mode != StationMode::Manual {
            return Err(PoolError::NotManual);
        }
        if station.paused {
            return Err(PoolError::Paused);
        }
        if station.current.is_some() {
            return Err(PoolError::Busy);
        }
        let Some(ticket) = self.take_for(index) else { return Ok(None) };
        let view = TicketView::from(&ticket);
        self.start(index, ticket, ctx);
        Ok(Some(view))
    }
}

/// Manual station: the current ticket is made.
#[derive(Message)]
#[rtype(result = "Result<StationView, PoolError>")]
pub struct Done {
    pub station: String,
}

impl Handler<Done> for BaristaPool {
    type Result = Result<StationView, PoolError>;

    fn handle(&mut self, msg: Done, ctx: &mut Self::Context) -> Self::Result {
        let index = self.station_index(&msg.station)?;
        if self.stations[index].mode != StationMode::Manual {
            return Err(PoolError::NotManual);
        }
        let (order_id, kind) = match &self.stations[index].current {
            Some(ticket) => (ticket.order_id.clone(), ticket.kind.clone()),
            None => return Err(PoolError::Idle),
        };
        self.finish(index, &order_id, &kind, ctx);
        Ok(self.stations[index].view())
    }
}

#[derive(Message)]
#[rtype(result = "Vec<StationView>")]
pub struct ListStations;

impl Handler<ListStations> for BaristaPool {
    type Result = MessageResult<ListStations>;

    fn handle(&mut self, _: ListStations, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.stations.iter().map(Station::view).collect())
    }
}

/// The queue in the order it will be made, at most `limit` tickets.
#[derive(Message)]
#[rtype(result = "(Vec<TicketView>, usize)")]
pub struct ListQueue {
    pub limit: usize,
}

impl Handler<ListQueue> for BaristaPool {
    type Result = MessageResult<ListQueue>;

    fn handle(&mut self, msg: ListQueue, _: &mut Self::Context) -> Self::Result {
        MessageResult((self.queue.iter().take(msg.limit).map(TicketView::from).collect(), self.queue.len()))
    }
}

/// The pool's brew-time histograms (`crema_brew_seconds` samples, without
/// the family's HELP and TYPE lines), labelled with `store`.
#[derive(Message)]
#[rtype(result = "String")]
pub struct RenderBrews {
    pub store: String,
}

impl Handler<RenderBrews> for BaristaPool {
    type Result = String;

    fn handle(&mut self, msg: RenderBrews, _: &mut Self::Context) -> String {
        let mut out = String::new();
        for (kind, histogram) in &self.brews {
            histogram.render(&mut out, "crema_brew_seconds", &format!("store=\"{}\",kind=\"{kind}\"", msg.store), 1e3);
        }
        out
    }
}

/// The order's tickets not yet done, one per station kind, each with that
/// kind's lines; `queued_ms` is when the order was last queued (now if never).
pub fn tickets_for(order: &crate::domain::Order, owner: Recipient<TicketMoved>) -> Vec<Ticket> {
    let queued_ms = order
        .history
        .iter()
        .rev()
        .find(|entry| entry.status == crate::domain::OrderStatus::Queued)
        .map_or_else(now_ms, |entry| entry.at_ms);
    order
        .tickets
        .iter()
        .enumerate()
        .filter(|(_, ticket)| ticket.status != crate::domain::TicketStatus::Done)
        .map(|(part, ticket)| Ticket {
            order_id: order.id.clone(),
            kind: ticket.kind.clone(),
            part,
            number: order.number,
            customer: order.customer.clone(),
            queue_seq: order.queue_seq.unwrap_or(0),
            items: order
                .lines
                .iter()
                .filter(|line| line.station == ticket.kind)
                .map(|line| TicketItem {
                    menu_id: line.menu_id.clone(),
                    name: line.name.clone(),
                    qty: line.qty,
                    options: line.options.clone(),
                    note: line.note.clone(),
                })
                .collect(),
            brew_ms: order.brew_ms_of(&ticket.kind),
            queued_ms,
            owner: owner.clone(),
        })
        .collect()
}
