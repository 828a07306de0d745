//! Tier 4 (docs/design.md §8): QEMU VMs running Debian's real kernel (dm-crypt, dm-thin, DRBD
//! 8.4), so the steps where data is at risk run for real.
//!
//! - [`Kit`]: the cached image, kernel, initramfs and unpacked QEMU that
//!   `acceptance-tests/vm/build-image.sh` builds from Debian packages.
//! - [`Vm`]: one VM under TCG with a copy-on-write overlay of the image, a per-VM config disk
//!   (hostname, link IP, SSH host key, authorized_keys, agent binary, agent.toml), a data disk
//!   that becomes the LVM-thin pool `vg0/tp`, SSH forwarded on a loopback port and a private
//!   VM-to-VM link (`-netdev socket` over UDP on 127.0.0.1, so any VM can restart).
//! - [`LinkHub`]: the VMs' shared link segment, a UDP hub in the test process that repeats
//!   every frame one VM sends to all the others (a point-to-point `-netdev socket` joins two
//!   VMs only; multicast on loopback is not something every host routes).
//! - [`Cluster`]: the VMs `vm1`, `vm2`, … at 10.99.0.11, .12, … and the client key and
//!   known_hosts pinning their host keys, which the harness generates before boot.
//! - [`phase`]: runs a step and prints `::: vm phase <name>: ok in <s>s`, the lines CI shows.
//!
//! Every VM's files (console log included) stay under [`log_root`] after the test; disk
//! images are removed on drop, console logs are kept for the reader.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::free_loopback_addr;
use crate::output::Outcome;
use crate::{binaries, process};

/// The agent pool every VM offers: LVM-thin `vg0/tp`.
pub const POOL: &str = "thin";
/// Memory per VM (MiB). With `tb-size=256` one VM stays near 0.8 GiB of host RAM.
const MEMORY_MIB: u32 = 768;
/// Size of the data disk that holds `vg0`.
const DATA_DISK: &str = "4G";
/// How long a VM may take from QEMU start to answering SSH under TCG.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `f`, printing how long it took; the lines are what the CI log shows per phase.
pub fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    eprintln!("::: vm phase {name}: start");
    let out = f();
    let line = format!(
        "::: vm phase {name}: ok in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("BLOCKSTOR_VM_PHASE_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    out
}

/// Where VM directories (console logs) go: `$BLOCKSTOR_VM_LOG_DIR`, else
/// `/tmp/blockstor-vm-logs`.
pub fn log_root() -> PathBuf {
    std::env::var_os("BLOCKSTOR_VM_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/blockstor-vm-logs"))
}

/// The built VM kit: `root.img`, `vmlinuz`, `initrd.img`, `kernel-version`, `qemu/`.
#[derive(Debug, Clone)]
pub struct Kit {
    dir: PathBuf,
}

impl Kit {
    /// The image build script.
    pub fn script() -> PathBuf {
        binaries::workspace_root().join("acceptance-tests/vm/build-image.sh")
    }

    /// Builds the kit, or finds it in the cache (the script prints its directory last).
    pub fn build() -> Result<Kit, String> {
        let out = process::run(
            Command::new(Self::script()),
            "build-image.sh".into(),
            Duration::from_secs(1800),
        );
        if !out.status.success() {
            return Err(format!("VM image build failed:\n{out}"));
        }
        eprint!("{}", out.stderr);
        let dir = out.stdout.lines().last().unwrap_or_default().trim();
        let kit = Kit {
            dir: PathBuf::from(dir),
        };
        if !kit.dir.join("ready").is_file() {
            return Err(format!("build-image.sh printed no kit directory:\n{out}"));
        }
        Ok(kit)
    }

    /// The guest kernel's version, read from the unpacked package.
    pub fn kernel_version(&self) -> String {
        std::fs::read_to_string(self.dir.join("kernel-version"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn qemu_root(&self) -> PathBuf {
        self.dir.join("qemu")
    }

    /// `qemu-system-x86_64` from the unpacked package, with its libraries and firmware.
    fn qemu_command(&self) -> Command {
        let root = self.qemu_root();
        let mut cmd = Command::new(root.join("usr/bin/qemu-system-x86_64"));
        let libs = [
            "usr/lib/x86_64-linux-gnu",
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu/pulseaudio",
        ]
        .map(|d| root.join(d).display().to_string())
        .join(":");
        cmd.env("LD_LIBRARY_PATH", libs)
            .arg("-L")
            .arg(root.join("usr/share/qemu"))
            .arg("-L")
            .arg(root.join("usr/share/seabios"));
        cmd
    }
}

/// Keys shared by the VMs: the client key (authorized in each VM) and each VM's host key.
#[derive(Debug)]
pub struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn generate(dir: &Path, vms: &[&str]) -> Keys {
        std::fs::create_dir_all(dir).expect("create key dir");
        keygen(&dir.join("client"));
        for vm in vms {
            keygen(&dir.join(format!("host-{vm}")));
        }
        Keys {
            dir: dir.to_path_buf(),
        }
    }

    /// The client's private key (OpenSSH format).
    pub fn client_private_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("client")).expect("read client key")
    }

    fn client_key_path(&self) -> PathBuf {
        self.dir.join("client")
    }

    fn host_public(&self, vm: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("host-{vm}.pub")))
            .expect("read host public key")
    }
}

/// One VM's fixed identity: name, link IP and ports.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Hostname, also the agent's node name.
    pub name: String,
    /// IP on the VM-to-VM link (DRBD replication address).
    pub link_ip: String,
    /// Host port forwarded to the VM's sshd.
    pub ssh_port: u16,
    /// UDP port this VM's link endpoint binds on 127.0.0.1.
    pub link_port: u16,
    /// UDP port of the [`LinkHub`] every link endpoint sends to.
    pub hub_port: u16,
    index: u8,
}

/// A running (or stopped) VM.
#[derive(Debug)]
pub struct Vm {
    /// Identity and ports.
    pub spec: VmSpec,
    dir: PathBuf,
    kit: Kit,
    child: Option<Child>,
    boots: u32,
}

impl Vm {
    fn create(kit: &Kit, dir: &Path, spec: VmSpec, keys: &Keys) -> Vm {
        std::fs::create_dir_all(dir).expect("create vm dir");
        let run = |cmd: Command, what: &str| {
            let out = process::run(cmd, what.into(), Duration::from_secs(120));
            assert!(out.status.success(), "{what} failed:\n{out}");
        };
        let mut overlay = Command::new("qemu-img");
        overlay
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(kit.dir.join("root.img"))
            .arg(dir.join("root.qcow2"));
        run(overlay, "qemu-img create root overlay");
        let mut data = Command::new("qemu-img");
        data.args(["create", "-q", "-f", "qcow2"])
            .arg(dir.join("data.qcow2"))
            .arg(DATA_DISK);
        run(data, "qemu-img create data disk");

        // The config disk: what makes this VM this node, read by the init at boot.
        let cfg = dir.join("cfg");
        std::fs::create_dir_all(&cfg).expect("create cfg dir");
        let name = &spec.name;
        std::fs::write(cfg.join("hostname"), format!("{name}\n")).unwrap();
        std::fs::write(cfg.join("link-ip"), format!("{}\n", spec.link_ip)).unwrap();
        std::fs::copy(
            keys.dir.join(format!("host-{name}")),
            cfg.join("ssh_host_ed25519_key"),
        )
        .unwrap();
        std::fs::copy(
            keys.dir.join(format!("host-{name}.pub")),
            cfg.join("ssh_host_ed25519_key.pub"),
        )
        .unwrap();
        std::fs::copy(keys.dir.join("client.pub"), cfg.join("authorized_keys")).unwrap();
        std::fs::copy(binaries::agent(), cfg.join("blockstor-agent")).expect("copy agent");
        std::fs::copy(
            binaries::workspace_root().join("acceptance-tests/vm/init.sh"),
            cfg.join("init.sh"),
        )
        .expect("copy init.sh");
        std::fs::write(
            cfg.join("agent.toml"),
            format!(
                "node_name = \"{name}\"\nstate_dir = \"/var/lib/blockstor\"\n\n\
                 [[pool]]\nname = \"{POOL}\"\nbackend = \"lvm-thin\"\n\
                 volume_group = \"vg0\"\nthin_pool = \"tp\"\n"
            ),
        )
        .unwrap();
        let mut mkfs = Command::new("mke2fs");
        mkfs.args(["-q", "-F", "-t", "ext2", "-L", "cfg", "-d"])
            .arg(&cfg)
            .arg(dir.join("cfg.img"))
            .arg("64M");
        run(mkfs, "mke2fs config disk");
        Vm {
            spec,
            dir: dir.to_path_buf(),
            kit: kit.clone(),
            child: None,
            boots: 0,
        }
    }

    /// The serial console log of the current boot.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join(format!("console-{}.log", self.boots.max(1)))
    }

    fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// Starts QEMU (TCG only: /dev/kvm exists here but does not work).
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "{} is already running",
            self.spec.name
        );
        self.boots += 1;
        let s = &self.spec;
        let _ = std::fs::remove_file(self.qmp_socket());
        let mut cmd = self.kit.qemu_command();
        let drive = |file: &Path, id: &str, format: &str| {
            format!(
                "file={},if=none,id={id},format={format},cache=writeback",
                file.display()
            )
        };
        cmd.args([
            "-accel",
            "tcg,tb-size=256",
            "-machine",
            "q35",
            "-cpu",
            "max",
        ])
        .args(["-smp", "1", "-m", &MEMORY_MIB.to_string()])
        .args(["-nographic", "-no-reboot", "-nodefaults"])
        .arg("-serial")
        .arg(format!("file:{}", self.console_log().display()))
        .arg("-qmp")
        .arg(format!(
            "unix:{},server=on,wait=off",
            self.qmp_socket().display()
        ))
        .arg("-kernel")
        .arg(self.kit.dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(self.kit.dir.join("initrd.img"))
        .arg("-append")
        .arg(
            "root=/dev/vda rw console=ttyS0 init=/sbin/blockstor-init net.ifnames=0 \
                 panic=-1 loglevel=4",
        )
        .arg("-drive")
        .arg(drive(&self.dir.join("root.qcow2"), "root", "qcow2"))
        .args(["-device", "virtio-blk-pci,drive=root,serial=root"])
        .arg("-drive")
        .arg(drive(&self.dir.join("cfg.img"), "cfg", "raw"))
        .args(["-device", "virtio-blk-pci,drive=cfg,serial=cfg"])
        .arg("-drive")
        .arg(drive(&self.dir.join("data.qcow2"), "data", "qcow2"))
        .args(["-device", "virtio-blk-pci,drive=data,serial=data"])
        .arg("-netdev")
        .arg(format!(
            "user,id=user,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:{}-:22",
            s.ssh_port
        ))
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=user,mac=52:54:00:00:00:{:02x},romfile=",
            s.index
        ))
        .arg("-netdev")
        .arg(format!(
            "socket,id=link,udp=127.0.0.1:{},localaddr=127.0.0.1:{}",
            s.hub_port, s.link_port
        ))
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=link,mac=52:54:00:99:00:{:02x},romfile=",
            s.index
        ));
        let log = std::fs::File::create(self.dir.join(format!("qemu-{}.log", self.boots)))
            .expect("create qemu log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start QEMU for {}: {e}", self.spec.name));
        self.child = Some(child);
    }

    /// Waits until the VM's init reports ready and its sshd answers.
    pub fn wait_ready(&mut self, keys: &Keys, known_hosts: &Path) {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().expect("poll qemu") {
                    panic!(
                        "QEMU of {} exited ({status}); qemu log {}, console log {}:\n{}",
                        self.spec.name,
                        self.dir.join(format!("qemu-{}.log", self.boots)).display(),
                        self.console_log().display(),
                        std::fs::read_to_string(self.dir.join(format!("qemu-{}.log", self.boots)))
                            .unwrap_or_default()
                    );
                }
            }
            let console = std::fs::read_to_string(self.console_log()).unwrap_or_default();
            if console.contains("[blockstor-init] ready:")
                && ssh_outcome(
                    &self.spec,
                    keys,
                    known_hosts,
                    "true",
                    Duration::from_secs(30),
                )
                .status
                .success()
            {
                return;
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "{} did not come up within {BOOT_TIMEOUT:?}; console log {}",
                self.spec.name,
                self.console_log().display()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Pulls the plug: QMP `quit` (no shutdown, no flush by the guest), then waits for QEMU.
    pub fn power_off(&mut self) {
        if let Ok(mut sock) = UnixStream::connect(self.qmp_socket()) {
            let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(sock.try_clone().expect("clone qmp socket"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line); // greeting
            let _ = sock.write_all(b"{\"execute\":\"qmp_capabilities\"}\n");
            let _ = reader.read_line(&mut line);
            let _ = sock.write_all(b"{\"execute\":\"quit\"}\n");
            let _ = reader.read_line(&mut line);
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// QEMU's peak resident memory (VmHWM) in MiB, while it runs.
    pub fn peak_rss_mib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024)
    }

    /// The VM's directory (disks, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Disk images are large; the logs stay for the reader.
        for disk in ["root.qcow2", "data.qcow2", "cfg.img"] {
            let _ = std::fs::remove_file(self.dir.join(disk));
        }
        let _ = std::fs::remove_dir_all(self.dir.join("cfg"));
    }
}

/// The VMs' link segment: a UDP socket on 127.0.0.1 that every VM's `-netdev socket` sends its
/// frames to, and a thread that repeats each frame to every other VM's endpoint (a hub, not a
/// switch: with three VMs the extra copies cost nothing). Stateless like the point-to-point
/// link it replaces, so a VM can be power-cut and rebooted; stopped on drop.
#[derive(Debug)]
pub struct LinkHub {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LinkHub {
    /// Binds the hub and starts repeating frames between the endpoints `members` (UDP ports on
    /// 127.0.0.1 the VMs' link endpoints bind).
    pub fn start(members: Vec<u16>) -> LinkHub {
        use std::sync::atomic::{AtomicBool, Ordering};
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the link hub");
        let port = socket.local_addr().expect("hub address").port();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("hub read timeout");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut frame = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut frame) else {
                    continue; // timeout: look at the stop flag again
                };
                for &member in members.iter().filter(|&&m| m != from.port()) {
                    // A VM that is off drops its frames, as a cable to it would.
                    let _ = socket.send_to(&frame[..len], ("127.0.0.1", member));
                }
            }
        });
        LinkHub {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// The UDP port the VMs send their frames to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LinkHub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// VMs `vm1` (10.99.0.11), `vm2` (10.99.0.12), …, on one link segment ([`LinkHub`]).
#[derive(Debug)]
pub struct Cluster {
    /// `vm1`, `vm2`, … in order.
    pub vms: Vec<Vm>,
    keys: Keys,
    dir: PathBuf,
    // Dropped after the VMs (fields drop in order), so no VM outlives its link.
    _hub: LinkHub,
}

impl Cluster {
    /// Creates `count` VMs' disks under a fresh directory of [`log_root`] named after `test`.
    pub fn create(kit: &Kit, test: &str, count: u8) -> Cluster {
        let dir = log_root().join(format!(
            "{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ));
        let names: Vec<String> = (1..=count).map(|i| format!("vm{i}")).collect();
        let keys = Keys::generate(
            &dir.join("keys"),
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let link: Vec<u16> = (0..count).map(|_| free_udp_port()).collect();
        let hub = LinkHub::start(link.clone());
        let vms = (1..=count)
            .map(|i| {
                let spec = VmSpec {
                    name: format!("vm{i}"),
                    link_ip: format!("10.99.0.{}", 10 + i),
                    ssh_port: free_loopback_addr().port(),
                    link_port: link[usize::from(i - 1)],
                    hub_port: hub.port(),
                    index: i,
                };
                Vm::create(kit, &dir.join(&spec.name), spec, &keys)
            })
            .collect();
        let cluster = Cluster {
            vms,
            keys,
            dir,
            _hub: hub,
        };
        std::fs::write(cluster.known_hosts_path(), cluster.known_hosts())
            .expect("write known_hosts");
        cluster
    }

    /// Boots every VM in parallel and waits for all of them.
    pub fn boot(&mut self) {
        for vm in &mut self.vms {
            vm.start();
        }
        let known = self.known_hosts_path();
        for vm in &mut self.vms {
            let start = Instant::now();
            vm.wait_ready(&self.keys, &known);
            eprintln!(
                "::: vm {} up ({:.1}s after the previous one)",
                vm.spec.name,
                start.elapsed().as_secs_f64()
            );
        }
    }

    /// The client's private key, for the provider's `ssh { private_key }`.
    pub fn client_private_key(&self) -> String {
        self.keys.client_private_key()
    }

    /// known_hosts lines pinning every VM's host key at its forwarded port.
    pub fn known_hosts(&self) -> String {
        self.vms
            .iter()
            .map(|vm| {
                let public = self.keys.host_public(&vm.spec.name);
                let mut parts = public.split_whitespace();
                let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                format!("[127.0.0.1]:{} {kind} {key}\n", vm.spec.ssh_port)
            })
            .collect()
    }

    fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("keys/known_hosts")
    }

    /// Runs `script` as root in VM `i` (0 is `vm1`) over SSH and returns what happened.
    pub fn ssh(&self, i: usize, script: &str) -> Outcome {
        ssh_outcome(
            &self.vms[i].spec,
            &self.keys,
            &self.known_hosts_path(),
            script,
            Duration::from_secs(600),
        )
    }

    /// Like [`Cluster::ssh`] but panics (with the console log paths) unless it exits 0;
    /// returns stdout.
    pub fn ssh_ok(&self, i: usize, script: &str) -> String {
        let out = self.ssh(i, script);
        assert!(
            out.status.success(),
            "on {}: {script}\n{out}\n{}",
            self.vms[i].spec.name,
            self.console_hint()
        );
        out.stdout
    }

    /// "console logs: <path>, <path>": for failure messages.
    pub fn console_hint(&self) -> String {
        format!(
            "VM console logs: {}",
            self.vms
                .iter()
                .map(|vm| vm.console_log().display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The directory holding the VMs and the keys.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Power-cycles VM `i`: QMP quit (no clean shutdown), then boot again and wait.
    pub fn crash_and_reboot(&mut self, i: usize) {
        self.vms[i].power_off();
        self.vms[i].start();
        let known = self.known_hosts_path();
        self.vms[i].wait_ready(&self.keys, &known);
    }
}

fn ssh_outcome(
    spec: &VmSpec,
    keys: &Keys,
    known_hosts: &Path,
    script: &str,
    timeout: Duration,
) -> Outcome {
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(keys.client_key_path())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(spec.ssh_port.to_string())
        .arg("root@127.0.0.1")
        .arg(script);
    process::run(cmd, format!("ssh {}: {script}", spec.name), timeout)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "blockstor-vm", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen (package openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}
