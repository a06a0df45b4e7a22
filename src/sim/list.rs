//! `GET /v1/predictions`: the token's predictions, newest first, a page of
//! [`PAGE`] at a time with a `next` link (`?cursor=…`), as Replicate lists
//! them. Ids are stateless, a list is not: this instance remembers the ids
//! it created, the newest [`KEPT`], and lists those (as Replicate lists
//! every prediction of the account, including the website's).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::{
    Json,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{Sim, id::Ticket, timeline::prediction_json, timeline::state_at};

/// Predictions a page holds.
pub const PAGE: usize = 100;
/// Predictions remembered for listing; older ones drop off the list.
pub const KEPT: usize = 20_000;

/// The ids this instance created, oldest first, each with its place in
/// the order of creation (a cursor names a place, which stays valid as
/// newer ones arrive).
#[derive(Default)]
pub(super) struct Recent(Mutex<(u64, VecDeque<(u64, String)>)>);

impl Recent {
    pub(super) fn created(&self, id: &str) {
        let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (next, ids) = &mut *recent;
        *next += 1;
        ids.push_back((*next, id.to_owned()));
        if ids.len() > KEPT {
            ids.pop_front();
        }
    }

    /// Up to [`PAGE`] ids created before place `before` (all when `None`),
    /// newest first, and the place to continue from when there are more.
    fn page(&self, before: Option<u64>) -> (Vec<String>, Option<u64>) {
        let recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut older = recent.1.iter().rev().filter(|(place, _)| before.is_none_or(|b| *place < b));
        let page: Vec<&(u64, String)> = older.by_ref().take(PAGE).collect();
        let more = older.next().is_some();
        let next = page.last().filter(|_| more).map(|(place, _)| *place);
        (page.into_iter().map(|(_, id)| id.clone()).collect(), next)
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    cursor: Option<String>,
}

/// `GET /v1/predictions`
pub(super) async fn list(State(sim): State<Arc<Sim>>, Query(query): Query<ListQuery>) -> Response {
    let before = query.cursor.as_deref().and_then(|c| c.parse::<u64>().ok());
    let (ids, next) = sim.recent.page(before);
    let now = sim.now_ms();
    let results: Vec<Value> = ids
        .iter()
        .filter_map(|id| {
            let (ticket, tag) = Ticket::open(id, &sim.cfg.secret)?;
            let state = state_at(&ticket, sim.soft.canceled_at(&tag), now);
            let mut prediction = prediction_json(&sim, id, &ticket, &state, now);
            // A listing leaves the logs out, as Replicate's does.
            prediction.as_object_mut()?.remove("logs");
            Some(prediction)
        })
        .collect();
    Json(json!({
        "next": next.map(|place| sim.api_url(&format!("predictions?cursor={place}"))),
        "previous": null,
        "results": results,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_newest_first_and_a_cursor_survives_new_arrivals() {
        let recent = Recent::default();
        for n in 0..250 {
            recent.created(&format!("p{n}"));
        }
        let (first, next) = recent.page(None);
        assert_eq!((first.len(), first[0].as_str(), first[99].as_str()), (100, "p249", "p150"));
        recent.created("p250");
        let (second, next) = recent.page(next);
        assert_eq!((second[0].as_str(), second[99].as_str()), ("p149", "p50"));
        let (third, next) = recent.page(next);
        assert_eq!((third.len(), third[49].as_str(), next), (50, "p0", None));
    }

    #[test]
    fn only_the_newest_are_kept() {
        let recent = Recent::default();
        for n in 0..KEPT + 5 {
            recent.created(&format!("p{n}"));
        }
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = recent.page(cursor);
            all.extend(page);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(all.len(), KEPT);
        assert_eq!(all.last().map(String::as_str), Some("p5"));
    }
}
