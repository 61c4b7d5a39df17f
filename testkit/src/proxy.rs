//! A fault-injecting TCP proxy, for putting a network between a relay node and PostgreSQL or
//! NATS: it forwards every connection to its target, and on demand partitions (cuts every
//! connection and refuses new ones), adds latency, goes half-open (forwards toward the target
//! but drops what comes back, the connection staying up), resets every connection (RST), or
//! throttles to a number of bytes a second. Threads and blocking sockets: it is a test tool.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to traffic now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards everything.
    Pass,
    /// Every connection is cut, and new ones are closed at once.
    Partition,
    /// Each chunk waits this long before it is forwarded.
    Latency(Duration),
    /// What the client sends reaches the target; what the target answers is dropped. The
    /// connections stay open, so the client waits for answers that never come.
    HalfOpen,
    /// At most this many bytes a second each way, per connection.
    Throttle(u32),
}

struct Shared {
    fault: Mutex<Fault>,
    /// Open connections (client side, target side), to cut or reset.
    conns: Mutex<Vec<(TcpStream, TcpStream)>>,
    stop: AtomicBool,
}

/// A proxy on a free loopback port in front of `target`; stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts forwarding from a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                if *s.fault.lock().expect("fault") == Fault::Partition {
                    reset(&client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    reset(&client);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                if let (Ok(c), Ok(u)) = (client.try_clone(), upstream.try_clone()) {
                    s.conns.lock().expect("conns").push((c, u));
                }
                pipe(s.clone(), &client, &upstream, true);
                pipe(s.clone(), &upstream, &client, false);
            }
        });
        Proxy { addr, shared }
    }

    /// Sets what happens to traffic from now on. A partition cuts every open connection.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault") = fault;
        if fault == Fault::Partition {
            self.reset();
        }
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.lock().expect("fault")
    }

    /// Resets (RST) every open connection; new ones are forwarded as the fault says.
    pub fn reset(&self) {
        for (c, u) in self.shared.conns.lock().expect("conns").drain(..) {
            reset(&c);
            reset(&u);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.reset();
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Closes a socket with RST rather than FIN (linger zero).
fn reset(s: &TcpStream) {
    let sock = socket2::SockRef::from(s);
    let _ = sock.set_linger(Some(Duration::ZERO));
    let _ = s.shutdown(Shutdown::Both);
}

/// Copies `from` to `to` on its own thread, as the fault in force says. `toward_target`: the
/// direction a half-open connection still forwards.
fn pipe(shared: Arc<Shared>, from: &TcpStream, to: &TcpStream, toward_target: bool) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let fault = *shared.fault.lock().expect("fault");
            match fault {
                Fault::Pass => {}
                Fault::Partition => break,
                Fault::Latency(d) => std::thread::sleep(d),
                Fault::HalfOpen if toward_target => {}
                Fault::HalfOpen => continue,
                Fault::Throttle(per_second) => {
                    let per_second = u64::from(per_second.max(1));
                    std::thread::sleep(Duration::from_micros(n as u64 * 1_000_000 / per_second));
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
