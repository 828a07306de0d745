//! Bench runner for issue #7: measures the provider and the agent against references in one
//! run (several repetitions, median), prints a Markdown table and writes it to a file.
//!
//! ```text
//! scripts/bench.sh                      # builds, fetches the Go null provider, runs this
//! bench [--reps N] [--sizes 50,200,500] [--only 1,2,3,4,5] [--out FILE] [--null-provider PATH]
//! ```
//!
//! Needs root, loop devices, cryptsetup, terraform 1.0.3 and the release binaries of the
//! provider and the agent (see `acceptance_tests::host`). Every loop device the bench attaches
//! is detached again (destroy after apply; the harness detaches leftovers on drop).

mod agent_items;
mod floor;
mod hcl;
mod lifetimes;
mod null;
mod procwatch;
mod proxy;
mod seat;
mod stats;
mod table;
mod terraform_items;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use acceptance_tests::{binaries, host, Requirement};
use table::Row;

/// Command-line options.
struct Options {
    reps: usize,
    sizes: Vec<usize>,
    only: Vec<u8>,
    out: PathBuf,
    null_provider: Option<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        reps: 3,
        sizes: vec![50, 200, 500],
        only: vec![1, 2, 3, 4, 5],
        out: binaries::workspace_root().join("bench-results/latest.md"),
        null_provider: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--reps" => o.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--sizes" => o.sizes = list(&value()?).map_err(|e| format!("--sizes: {e}"))?,
            "--only" => o.only = list(&value()?).map_err(|e| format!("--only: {e}"))?,
            "--out" => o.out = PathBuf::from(value()?),
            "--null-provider" => o.null_provider = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!(
                    "bench [--reps N] [--sizes 50,200,500] [--only 1,2,3,4,5] [--out FILE] \
                     [--null-provider PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    if o.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    Ok(o)
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, T::Err> {
    s.split(',').map(|x| x.trim().parse()).collect()
}

/// Runs one item; a panic (a failed terraform command, an agent error) becomes a FAILED row
/// so the other items still run and the table still gets written.
fn item(name: &str, target: &str, f: impl FnOnce() -> Vec<Row>) -> Vec<Row> {
    let started = Instant::now();
    eprintln!("[bench] {name} ...");
    let rows = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        vec![Row::failed(name, target, &why)]
    });
    eprintln!("[bench] {name}: {}", stats::secs(started.elapsed()));
    for r in &rows {
        eprintln!("[bench]   {} = {} ({})", r.item, r.value, r.ours);
    }
    rows
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`): figures taken on a busy machine
/// are not comparable, so the table says how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn header(o: &Options, total: std::time::Duration, load_before: &str) -> String {
    let cmd = |argv: &[&str]| {
        std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let tf = acceptance_tests::terraform::locate()
        .map(|p| cmd(&[&p.to_string_lossy(), "version"]))
        .unwrap_or_default();
    format!(
        "Measured {} on `{}` ({} cores), kernel {}, {}; repetitions {}, median; whole run {}.\n\
         Load average (1, 5, 15 min) before the run {}, after it {}.\n\
         Reference: hashicorp/null 2.1.2 (Go, protocol 5) on the same terraform binary.\n",
        cmd(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        cmd(&["hostname"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cmd(&["uname", "-r"]),
        tf.lines().next().unwrap_or("terraform ?"),
        o.reps,
        stats::secs(total),
        load_before,
        load_average(),
    )
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    let missing: Vec<String> = needs.iter().filter_map(|r| r.missing()).collect();
    if !missing.is_empty() {
        eprintln!("bench: {}", missing.join("; "));
        std::process::exit(2);
    }
    let null_bin = null::locate(o.null_provider.clone());
    let load_before = load_average();
    let started = Instant::now();
    let mut rows = Vec::new();
    let want = |n: u8| o.only.contains(&n);
    let with_null =
        |name: &str, target: &str, f: &dyn Fn(&std::path::Path) -> Vec<Row>| match &null_bin {
            Ok(bin) => item(name, target, || f(bin)),
            Err(e) => vec![Row::failed(name, target, e)],
        };
    if want(1) {
        rows.extend(with_null("1. cold start + schema", "<= 0.5", &|bin| {
            terraform_items::cold_start(o.reps.max(5), bin)
        }));
    }
    if want(2) || want(4) {
        rows.extend(with_null("2. plan/apply", "<= 1.0", &|bin| {
            terraform_items::plan_apply(o.reps, &o.sizes, bin)
        }));
    }
    if want(3) {
        rows.extend(item("3. agent overhead", "<= 1.05", || {
            agent_items::agent_overhead(o.reps.max(10))
        }));
    }
    if want(4) {
        rows.extend(item("4. agent memory", "<= 15 MiB", || {
            agent_items::agent_memory(100)
        }));
    }
    if want(5) {
        rows.extend(item("5. scale", "<= 1.2", || {
            terraform_items::scale(o.reps.min(2), 100)
        }));
    }
    let text = format!(
        "{}\n{}",
        header(&o, started.elapsed(), &load_before),
        table::render(&rows)
    );
    println!("{text}");
    if let Some(dir) = o.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&o.out, &text) {
        Ok(()) => eprintln!("[bench] table written to {}", o.out.display()),
        Err(e) => {
            eprintln!("bench: cannot write {}: {e}", o.out.display());
            std::process::exit(1);
        }
    }
}
