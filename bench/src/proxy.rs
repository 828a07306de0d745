//! A timing proxy between the provider and an agent, to split apply time into the agent's
//! share and the rest.
//!
//! It forwards plain HTTP/1.1 on loopback. Each connection carries one request at a time
//! (HTTP/1.1 without pipelining, which reqwest does not do): a request starts when the client
//! sends its first byte while idle, and ends when the agent's response is complete (headers
//! plus `Content-Length` bytes). The agent's share is the time at least one request was in
//! flight: the union of those intervals, so parallel requests are not counted twice.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Intervals = Arc<Mutex<Vec<(Instant, Instant)>>>;

/// A listening proxy; it lives until the process ends (the bench is short-lived).
pub struct TimingProxy {
    addr: SocketAddr,
    intervals: Intervals,
}

impl TimingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy port");
        let addr = listener.local_addr().expect("proxy addr");
        let intervals: Intervals = Arc::default();
        let shared = intervals.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(upstream) {
                        relay(client, server, shared);
                    }
                });
            }
        });
        TimingProxy { addr, intervals }
    }

    /// `http://127.0.0.1:<port>`: give this to the provider instead of the agent's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets the intervals recorded so far.
    pub fn reset(&self) {
        self.intervals.lock().expect("proxy lock").clear();
    }

    /// Time at least one request was in flight, and the number of requests, since the last
    /// [`reset`](Self::reset).
    pub fn busy(&self) -> (Duration, usize) {
        let v = self.intervals.lock().expect("proxy lock").clone();
        (union(&v), v.len())
    }
}

/// Length of the union of `intervals`.
pub fn union(intervals: &[(Instant, Instant)]) -> Duration {
    let mut v = intervals.to_vec();
    v.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (s, e) in v {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total
}

/// When the client's current request started; `None` while idle.
type Pending = Arc<Mutex<Option<Instant>>>;

fn relay(client: TcpStream, server: TcpStream, intervals: Intervals) {
    let pending: Pending = Arc::default();
    let (mut c_read, mut s_write) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let up_pending = pending.clone();
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut p = up_pending.lock().expect("pending lock");
                if p.is_none() {
                    *p = Some(Instant::now());
                }
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    down(server, client, &pending, &intervals);
    let _ = up.join();
}

/// Copies the agent's responses to the client, closing an interval at each response's end.
fn down(mut server: TcpStream, mut client: TcpStream, pending: &Pending, intervals: &Intervals) {
    let mut buf = [0u8; 16 * 1024];
    let mut head: Vec<u8> = Vec::new();
    // Body bytes still expected for the current response; None while reading headers.
    let mut body_left: Option<usize> = None;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            match body_left {
                None => {
                    head.extend_from_slice(chunk);
                    chunk = &[];
                    if let Some(end) = find(&head, b"\r\n\r\n") {
                        let len = content_length(&head[..end]);
                        let rest = head.split_off(end + 4);
                        head.clear();
                        // Re-process what followed the headers as body bytes.
                        let taken = rest.len().min(len);
                        body_left = Some(len - taken);
                        if body_left == Some(0) {
                            finish(pending, intervals);
                            body_left = None;
                            head.extend_from_slice(&rest[taken..]);
                        }
                    }
                }
                Some(left) => {
                    let taken = chunk.len().min(left);
                    chunk = &chunk[taken..];
                    body_left = Some(left - taken);
                    if left == taken {
                        finish(pending, intervals);
                        body_left = None;
                    }
                }
            }
        }
    }
    // A response without Content-Length ends with the connection.
    finish(pending, intervals);
    let _ = client.shutdown(Shutdown::Write);
}

fn finish(pending: &Pending, intervals: &Intervals) {
    if let Some(start) = pending.lock().expect("pending lock").take() {
        intervals
            .lock()
            .expect("proxy lock")
            .push((start, Instant::now()));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_counts_overlapping_intervals_once() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let v = [
            (t, t + ms(10)),
            (t + ms(5), t + ms(20)),
            (t + ms(30), t + ms(40)),
        ];
        assert_eq!(union(&v), ms(30));
    }

    #[test]
    fn content_length_is_read_case_insensitively() {
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\ncontent-length: 42"), 42);
        assert_eq!(content_length(b"HTTP/1.1 204 No Content"), 0);
    }
}
