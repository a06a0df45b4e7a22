//! Load generators: closed-loop (N connections sending back to back) and
//! paced (each item once per period, latency counted from the moment it
//! was due, so a server that falls behind shows it), plus the statistics.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::http::Conn;

/// What one run saw.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub requests: u64,
    pub errors: u64,
    pub secs: f64,
    /// Latencies in microseconds, sorted.
    pub lat_us: Vec<u64>,
}

impl RunStats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let at = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[at] as f64 / 1000.0
    }

    fn merge(parts: Vec<(u64, u64, Vec<u64>)>, secs: f64) -> Self {
        let mut out = Self { secs, ..Self::default() };
        for (requests, errors, lat) in parts {
            out.requests += requests;
            out.errors += errors;
            out.lat_us.extend(lat);
        }
        out.lat_us.sort_unstable();
        out
    }
}

/// The median of `values` (NaN-free input).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// `conns` connections each send `request(i)` back to back for `secs`
/// (at most `max_requests` in all); a non-2xx answer counts as an error.
pub async fn closed_loop(
    addr: SocketAddr,
    conns: usize,
    secs: f64,
    max_requests: u64,
    request: Arc<dyn Fn(u64) -> Arc<Vec<u8>> + Send + Sync>,
) -> RunStats {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (counter, request) = (Arc::clone(&counter), Arc::clone(&request));
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(64 * 1024));
                while Instant::now() < end {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if i >= max_requests {
                        break;
                    }
                    let req = request(i);
                    let t = Instant::now();
                    match conn.send(&req).await {
                        Ok(a) if (200..300).contains(&a.status) => ok += 1,
                        _ => errors += 1,
                    }
                    lat.push(t.elapsed().as_micros() as u64);
                }
                (ok, errors, lat)
            })
        })
        .collect();
    let mut parts = Vec::new();
    for w in workers {
        parts.push(w.await.expect("load worker"));
    }
    RunStats::merge(parts, start.elapsed().as_secs_f64())
}

/// Sends `count` requests per `period`, evenly spread (request `j` is due at
/// `j * period / count`), for `secs`, from `conns` connections. Latency is
/// measured from when a request was due.
pub async fn paced(
    addr: SocketAddr,
    conns: usize,
    count: usize,
    period: Duration,
    secs: f64,
    request: Arc<dyn Fn(u64) -> Arc<Vec<u8>> + Send + Sync>,
) -> RunStats {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let total = (secs * count as f64 / period.as_secs_f64()).round() as u64;
    let gap = period.as_secs_f64() / count as f64;
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (counter, request) = (Arc::clone(&counter), Arc::clone(&request));
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::new());
                loop {
                    let j = counter.fetch_add(1, Ordering::Relaxed);
                    if j >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(j as f64 * gap);
                    tokio::time::sleep_until(due.into()).await;
                    let req = request(j % count as u64);
                    match conn.send(&req).await {
                        Ok(a) if (200..300).contains(&a.status) => ok += 1,
                        _ => errors += 1,
                    }
                    lat.push(due.elapsed().as_micros() as u64);
                }
                (ok, errors, lat)
            })
        })
        .collect();
    let mut parts = Vec::new();
    for w in workers {
        parts.push(w.await.expect("load worker"));
    }
    RunStats::merge(parts, start.elapsed().as_secs_f64())
}
