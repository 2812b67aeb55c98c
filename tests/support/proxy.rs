//! A fault-injecting TCP proxy between `backfill` and the test cluster, on 127.0.0.1, driven
//! by the test: cut every open connection, half-close them (the server's side goes quiet and
//! closes while the client's side stays open), refuse new ones for a while, stall all traffic
//! for a while, delay every packet for a while. It runs on its own thread and runtime, so a test's runtime being busy (or
//! blocked) does not stall the traffic by accident.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy; stops when dropped.
pub struct Proxy {
    /// Where `backfill` connects.
    pub port: u16,
    faults: Arc<Faults>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Faults {
    /// Bumped to cut every connection open now.
    cuts: AtomicU64,
    /// Bumped to close the server-to-client half of every connection open now.
    half_closes: AtomicU64,
    /// Every packet waits this long, until then.
    slow: Mutex<Option<(Duration, Instant)>>,
    /// New connections are closed at once until then.
    refuse_until: Mutex<Option<Instant>>,
    /// No byte moves either way until then.
    stall_until: Mutex<Option<Instant>>,
    /// Connections accepted, for the test's messages.
    accepted: AtomicU64,
    closed: AtomicBool,
}

impl Faults {
    fn until(m: &Mutex<Option<Instant>>) -> Option<Instant> {
        m.lock()
            .ok()
            .and_then(|g| *g)
            .filter(|t| *t > Instant::now())
    }
}

impl Proxy {
    /// A proxy to `target` (the cluster's address).
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy: bind");
        listener.set_nonblocking(true).expect("proxy: nonblocking");
        let port = listener.local_addr().expect("proxy: address").port();
        let faults = Arc::new(Faults::default());
        let (stop, stopped) = watch::channel(false);
        let f = faults.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy: runtime");
            runtime.block_on(serve(listener, target, f, stopped));
        });
        Proxy { port, faults, stop }
    }

    /// The connection string of test database `db` through the proxy.
    pub fn url(&self, db: &super::TestDb) -> String {
        super::server().url_through(self.port, &db.name)
    }

    /// Cuts every connection open now (both sides see the socket close).
    pub fn cut(&self) {
        self.faults.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// Closes every new connection at once for `d`.
    pub fn refuse_for(&self, d: Duration) {
        if let Ok(mut g) = self.faults.refuse_until.lock() {
            *g = Some(Instant::now() + d);
        }
    }

    /// Holds every byte, both ways, on every connection for `d`.
    pub fn stall_for(&self, d: Duration) {
        if let Ok(mut g) = self.faults.stall_until.lock() {
            *g = Some(Instant::now() + d);
        }
    }

    /// Closes the server-to-client half of every connection open now: the client reads the
    /// end of the stream while what it writes still reaches the server, until it closes.
    pub fn half_close(&self) {
        self.faults.half_closes.fetch_add(1, Ordering::SeqCst);
    }

    /// Delays every packet, both ways, by `each` for the next `period`.
    pub fn slow_for(&self, each: Duration, period: Duration) {
        if let Ok(mut g) = self.faults.slow.lock() {
            *g = Some((each, Instant::now() + period));
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.faults.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.faults.closed.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }
}

async fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    faults: Arc<Faults>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
        };
        let Ok((client, _)) = accepted else { continue };
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        if Faults::until(&faults.refuse_until).is_some() {
            drop(client);
            continue;
        }
        let faults = faults.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            // Small messages go at once, as the driver's and the server's own sockets send
            // them (Nagle's delay against delayed ACKs costs 40 ms a round trip).
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let at_start = (
                faults.cuts.load(Ordering::SeqCst),
                faults.half_closes.load(Ordering::SeqCst),
            );
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = pump(&mut cr, &mut sw, &faults, at_start, false);
            let down = pump(&mut sr, &mut cw, &faults, at_start, true);
            // The first side to end (a close, or a cut) ends both.
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        });
    }
}

/// Copies `from` to `to` until either closes or the connection is cut; `down` is the
/// server-to-client half, which a half-close shuts while the other half goes on.
async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    faults: &Faults,
    (cuts_at_start, half_closes_at_start): (u64, u64),
    down: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let cut = || {
        faults.cuts.load(Ordering::SeqCst) != cuts_at_start || faults.closed.load(Ordering::SeqCst)
    };
    let half_closed = || down && faults.half_closes.load(Ordering::SeqCst) != half_closes_at_start;
    loop {
        if half_closed() {
            let _ = to.shutdown().await;
            // The other half ends the connection, when the client closes or on a cut.
            while !cut() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if cut() {
                    return;
                }
                continue;
            }
        };
        while let Some(until) = Faults::until(&faults.stall_until) {
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        }
        let slow = faults
            .slow
            .lock()
            .ok()
            .and_then(|g| *g)
            .filter(|(_, until)| *until > Instant::now());
        if let Some((each, _)) = slow {
            tokio::time::sleep(each).await;
        }
        if half_closed() {
            // Dropped: the top of the loop shuts this half.
            continue;
        }
        if cut() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
