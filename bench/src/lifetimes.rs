//! How long each provider process Terraform starts lives, from exec to exit, as the kernel
//! timestamps them: the process events of the netlink proc connector (linux/cn_proc.h; needs
//! root and `CONFIG_PROC_EVENTS`).
//!
//! Why: `terraform validate` takes ~0.2 s of which Terraform's own work is most, and the
//! providers' share is too small to get reliably by subtracting Terraform's time measured on a
//! config without provider. The kernel's exec and exit times of the provider processes give it
//! directly, for ours and the Go reference alike, without tracing them (no ptrace, no wrapper).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

// linux/connector.h and linux/cn_proc.h.
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// `struct nlmsghdr` is 16 bytes, `struct cn_msg` 20; `struct proc_event` follows:
/// `what` (u32), `cpu` (u32), `timestamp_ns` (u64), then the event's pid and tgid.
const NLMSG_HDR: usize = 16;
const CN_MSG: usize = 20;
const EVENT: usize = NLMSG_HDR + CN_MSG;

/// A running listener; [`Lifetimes::stop`] returns what it saw.
pub struct Lifetimes {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Duration>>,
}

impl Lifetimes {
    /// Starts listening for processes whose executable is `binary`.
    pub fn start(binary: &Path) -> io::Result<Self> {
        let binary = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
        let socket = Socket::subscribe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            std::thread::spawn(move || listen(&socket, &binary, &stop))
        };
        Ok(Lifetimes { stop, handle })
    }

    /// Stops listening (after the events already queued); the lifetime of every process of
    /// the binary that both started and exited meanwhile, in exit order.
    pub fn stop(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn listen(socket: &Socket, binary: &Path, stop: &AtomicBool) -> Vec<Duration> {
    let mut started: HashMap<u32, u64> = HashMap::new();
    let mut lifetimes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // The receive timeout: leave once asked to, with nothing more queued.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return lifetimes;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ENOBUFS: events were lost under a burst; later ones still come.
            Err(_) => continue,
        };
        let mut at = 0;
        while at + NLMSG_HDR <= n {
            let len = u32_at(&buf, at) as usize;
            if len < NLMSG_HDR || at + len > n {
                break;
            }
            if len >= EVENT + 24 {
                let what = u32_at(&buf, at + EVENT);
                let ns = u64_at(&buf, at + EVENT + 8);
                let (pid, tgid) = (u32_at(&buf, at + EVENT + 16), u32_at(&buf, at + EVENT + 20));
                match what {
                    PROC_EVENT_EXEC if pid == tgid && is(binary, pid) => {
                        started.insert(pid, ns);
                    }
                    PROC_EVENT_EXIT if pid == tgid => {
                        if let Some(t0) = started.remove(&pid) {
                            lifetimes.push(Duration::from_nanos(ns.saturating_sub(t0)));
                        }
                    }
                    _ => {}
                }
            }
            at += (len + 3) & !3;
        }
    }
}

fn is(binary: &Path, pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// A netlink connector socket subscribed to process events.
struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn subscribe() -> io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let socket = Socket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let raw = socket.0.as_raw_fd();
        // SAFETY: a zeroed sockaddr_nl is valid; the fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        let addr_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `addr_len` bytes.
        if unsafe { libc::bind(raw, (&addr as *const libc::sockaddr_nl).cast(), addr_len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval of this size.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        // nlmsghdr + cn_msg + the operation.
        let mut msg = Vec::with_capacity(EVENT + 4);
        msg.extend_from_slice(&((EVENT + 4) as u32).to_ne_bytes()); // nlmsg_len
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes()); // nlmsg_type
        msg.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes()); // nlmsg_pid
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes()); // id.idx
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes()); // id.val
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `kernel` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                raw,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                addr_len,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn sees_a_child_from_exec_to_exit() {
        let sleep = PathBuf::from("/bin/sleep");
        let Ok(watch) = Lifetimes::start(&sleep) else {
            eprintln!("skipped: needs root and CONFIG_PROC_EVENTS (netlink proc connector)");
            return;
        };
        std::thread::sleep(Duration::from_millis(20));
        let st = std::process::Command::new(&sleep)
            .arg("0.2")
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(20));
        let seen = watch.stop();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0] >= Duration::from_millis(190) && seen[0] < Duration::from_secs(2),
            "{seen:?}"
        );
    }
}
