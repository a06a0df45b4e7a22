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

/// What one connection saw: answers by outcome and their latencies (µs).
struct Tally {
    ok: u64,
    errors: u64,
    lat: Vec<u64>,
}

impl Tally {
    /// Sends `request` on `conn`; latency counts from `since`.
    async fn send(&mut self, conn: &mut Conn, request: &[u8], since: Instant) {
        match conn.send(request).await {
            Ok(a) if (200..300).contains(&a.status) => self.ok += 1,
            _ => self.errors += 1,
        }
        self.lat.push(since.elapsed().as_micros() as u64);
    }
}

/// Runs `worker` on `conns` connections of their own and merges what they
/// saw; `start` is when the run began, `expected` how many answers one
/// connection should see (sized up front so the run does not reallocate).
async fn on_connections<F, Fut>(
    addrs: &[SocketAddr],
    conns: usize,
    start: Instant,
    expected: usize,
    worker: F,
) -> RunStats
where
    F: Fn(Conn, Tally) -> Fut,
    Fut: std::future::Future<Output = Tally> + Send + 'static,
{
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let conn = Conn::new(addrs[i % addrs.len()]);
            tokio::spawn(worker(conn, Tally { ok: 0, errors: 0, lat: Vec::with_capacity(expected) }))
        })
        .collect();
    let mut parts = Vec::new();
    for w in workers {
        let t = w.await.expect("load worker");
        parts.push((t.ok, t.errors, t.lat));
    }
    RunStats::merge(parts, start.elapsed().as_secs_f64())
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
    on_connections(&[addr], conns, start, 64 * 1024, |mut conn, mut tally| {
        let (counter, request) = (Arc::clone(&counter), Arc::clone(&request));
        async move {
            while Instant::now() < end {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests {
                    break;
                }
                tally.send(&mut conn, &request(i), Instant::now()).await;
            }
            tally
        }
    })
    .await
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
    paced_over(&[addr], conns, count, period, secs, request).await
}

/// [`paced`] over several instances of one site: the connections are
/// spread over `addrs`, and each request goes out on whichever connection
/// is free, as behind a load balancer without sticky sessions.
pub async fn paced_over(
    addrs: &[SocketAddr],
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
    on_connections(addrs, conns, start, (total as usize).div_ceil(conns.max(1)), |mut conn, mut tally| {
        let (counter, request) = (Arc::clone(&counter), Arc::clone(&request));
        async move {
            loop {
                let j = counter.fetch_add(1, Ordering::Relaxed);
                if j >= total {
                    break;
                }
                let due = start + Duration::from_secs_f64(j as f64 * gap);
                tokio::time::sleep_until(due.into()).await;
                tally.send(&mut conn, &request(j % count as u64), due).await;
            }
            tally
        }
    })
    .await
}
