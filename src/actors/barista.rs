//! The barista pool: the queue of paid tickets and the stations that make them.
//!
//! The pool owns the queue (first in, first out by queue sequence number) and
//! the state of every station. It hands the head ticket to each free, unpaused
//! station. An `auto` station is a simulated barista: it brews for the order's
//! brew time × `barista.brew_scale` (a timer on this actor), then reports the
//! ticket done. A `manual` station is driven by a person through `next`/`done`.
//!
//! It tells the ticket's order actor about every move (`TicketStarted`,
//! `TicketRequeued`, `TicketFinished`); the order actor persists the change.
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

use super::order::{OrderActor, TicketFinished, TicketRequeued, TicketStarted};
use crate::config::StationMode;
use crate::domain::LineOption;
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
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used < self.capacity).then_some(used + 1))
            .is_ok()
    }

    /// Takes a place even beyond capacity: recovery must re-queue every paid ticket.
    pub fn force_reserve(&self) {
        self.used.fetch_add(1, Ordering::AcqRel);
    }

    pub fn release(&self) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_sub(1));
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A paid order waiting for (or at) a station.
#[derive(Clone)]
pub struct Ticket {
    pub order_id: String,
    /// The order's pickup number and customer, for the barista's screen.
    pub number: Option<u16>,
    pub customer: Option<String>,
    pub queue_seq: u64,
    pub items: Vec<TicketItem>,
    pub brew_ms: u64,
    pub queued_ms: u64,
    pub owner: Addr<OrderActor>,
}

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
    pub state: StationState,
    pub order: Option<String>,
    pub made: u64,
    /// Times its station actor crashed and was restarted.
    pub restarts: u64,
}

/// A ticket as shown by `GET /queue` and `POST /stations/{id}/next`.
#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    pub order: String,
    pub number: Option<u16>,
    pub customer: Option<String>,
    pub items: Vec<TicketItem>,
    pub queued_ms: u64,
}

impl From<&Ticket> for TicketView {
    fn from(ticket: &Ticket) -> Self {
        TicketView {
            order: ticket.order_id.clone(),
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
    fn view(&self) -> StationView {
        let state = match (self.paused, &self.current) {
            (true, _) => StationState::Paused,
            (false, Some(_)) => StationState::Brewing,
            (false, None) => StationState::Idle,
        };
        StationView {
            id: self.id.clone(),
            mode: self.mode,
            state,
            order: self.current.as_ref().map(|ticket| ticket.order_id.clone()),
            made: self.made,
            restarts: self.restarts,
        }
    }
}

pub struct BaristaPool {
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
        BaristaPool { queue: VecDeque::new(), stations, brew_scale, admission, faults }
    }

    /// Inserts by sequence number; new tickets almost always go at the back.
    fn insert(&mut self, ticket: Ticket) {
        let at = self.queue.iter().rposition(|queued| queued.queue_seq < ticket.queue_seq).map_or(0, |i| i + 1);
        self.queue.insert(at, ticket);
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
            let Some(ticket) = self.queue.pop_front() else { return };
            self.start(index, ticket, ctx);
        }
    }

    fn start(&mut self, index: usize, ticket: Ticket, ctx: &mut Context<Self>) {
        self.admission.release();
        let station = &mut self.stations[index];
        station.started_ms = now_ms();
        tell(&ticket.owner, TicketStarted { station: station.id.clone() });
        if station.mode == StationMode::Auto {
            let brew = Duration::from_secs_f64(ticket.brew_ms as f64 * self.brew_scale / 1000.0);
            let order_id = ticket.order_id.clone();
            let brewed = station.worker.send(Brew { duration: brew });
            station.current = Some(ticket);
            let handle = ctx.spawn(brewed.into_actor(self).map(move |result, pool, ctx| match result {
                Ok(()) => pool.finish(index, &order_id, ctx),
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

    fn finish(&mut self, index: usize, order_id: &str, ctx: &mut Context<Self>) {
        let station = &mut self.stations[index];
        if station.current.as_ref().map(|ticket| ticket.order_id.as_str()) != Some(order_id) {
            return;
        }
        station.timer = None;
        station.made += 1;
        if let Some(ticket) = station.current.take() {
            tell(&ticket.owner, TicketFinished);
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
            tell(&ticket.owner, TicketRequeued);
            self.insert(ticket);
        }
    }
}

impl BaristaPool {
    fn brew_ms(&self, ticket: &Ticket) -> u64 {
        (ticket.brew_ms as f64 * self.brew_scale) as u64
    }

    /// When `order_id` should be ready: the queue ahead of it is handed, in
    /// order, to whichever working station frees up first. `None` when it is
    /// not here, or no station is working.
    ///
    /// The ticket is found by its `queue_seq` (the queue is sorted by it), and
    /// only the first [`EXACT_AHEAD`] tickets ahead are handed out one by one;
    /// the rest ahead are counted at the mean brew time of those, spread over
    /// the working stations. So a deep queue costs no more than a short one.
    fn eta_of(&self, order_id: &str, queue_seq: Option<u64>, now_ms: u64) -> Option<u64> {
        let mut free_at: Vec<u64> = Vec::new();
        for station in self.stations.iter().filter(|station| !station.paused) {
            match &station.current {
                Some(ticket) => {
                    let done = (station.started_ms + self.brew_ms(ticket)).max(now_ms);
                    if ticket.order_id == order_id {
                        return Some(done);
                    }
                    free_at.push(done);
                }
                None => free_at.push(now_ms),
            }
        }
        if free_at.is_empty() {
            return None;
        }
        let position = self.queue.binary_search_by_key(&queue_seq?, |ticket| ticket.queue_seq).ok()?;
        if self.queue[position].order_id != order_id {
            return None;
        }
        let exact = position.min(EXACT_AHEAD);
        let mut exact_brew_ms = 0;
        for ticket in self.queue.range(..exact) {
            let (slot, start) = free_at.iter().copied().enumerate().min_by_key(|(_, at)| *at)?;
            let brew = self.brew_ms(ticket);
            exact_brew_ms += brew;
            free_at[slot] = start + brew;
        }
        let start = free_at.iter().copied().min()?;
        let rest_ahead = (position - exact) as u64;
        let rest_ms = match exact {
            0 => 0,
            _ => rest_ahead * exact_brew_ms / exact as u64 / free_at.len() as u64,
        };
        Some(start + rest_ms + self.brew_ms(&self.queue[position]))
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

/// Tells an order actor about a move of its ticket, without waiting for it
/// to be handled (the order actor persists every move, in the order sent; see
/// [`super::deliver`]).
fn tell<M>(owner: &Addr<OrderActor>, msg: M)
where
    M: Message<Result = ()> + Send + 'static,
    OrderActor: Handler<M>,
{
    if !super::deliver(owner, msg) {
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

    fn handle(&mut self, msg: Withdraw, ctx: &mut Self::Context) -> Self::Result {
        if let Some(at) = self.queue.iter().position(|ticket| ticket.order_id == msg.order_id) {
            self.queue.remove(at);
            self.admission.release();
            return MessageResult(Withdrawal::Withdrawn);
        }
        for station in &mut self.stations {
            if station.current.as_ref().is_some_and(|ticket| ticket.order_id == msg.order_id) {
                station.current = None;
                if let Some(timer) = station.timer.take() {
                    ctx.cancel_future(timer);
                }
                self.dispatch(ctx);
                return MessageResult(Withdrawal::Aborted);
            }
        }
        MessageResult(Withdrawal::NotHeld)
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
        let Some(ticket) = self.queue.pop_front() else { return Ok(None) };
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
        let order_id = match &self.stations[index].current {
            Some(ticket) => ticket.order_id.clone(),
            None => return Err(PoolError::Idle),
        };
        self.finish(index, &order_id, ctx);
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

/// Builds a ticket for an order; `queued_ms` defaults to now.
pub fn ticket_for(order: &crate::domain::Order, owner: Addr<OrderActor>) -> Ticket {
    Ticket {
        order_id: order.id.clone(),
        number: order.number,
        customer: order.customer.clone(),
        queue_seq: order.queue_seq.unwrap_or(0),
        items: order
            .lines
            .iter()
            .map(|line| TicketItem {
                menu_id: line.menu_id.clone(),
                name: line.name.clone(),
                qty: line.qty,
                options: line.options.clone(),
                note: line.note.clone(),
            })
            .collect(),
        brew_ms: order.brew_ms(),
        queued_ms: order
            .history
            .iter()
            .rev()
            .find(|entry| entry.status == crate::domain::OrderStatus::Queued)
            .map_or_else(now_ms, |entry| entry.at_ms),
        owner,
    }
}
