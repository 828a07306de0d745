//! Items 1, 2, 4 (provider memory) and 5 of issue #7: everything that runs `terraform`.

use std::path::Path;
use std::time::Duration;

use acceptance_tests::binaries;

use crate::floor::FloorSeat;
use crate::hcl;
use crate::lifetimes::Lifetimes;
use crate::null::NullSeat;
use crate::procwatch::Watcher;
use crate::seat::{run_ok, run_ok_cpu, OurSeat, APPLY, DESTROY, PLAN, VALIDATE};
use crate::stats::{median, mib, ratio, secs};
use crate::table::{Row, Verdict};

/// Item 1: `terraform validate` on a one-resource config (each run starts the provider
/// cold and fetches its schema), ours vs null: the whole command, and the providers' share on
/// its own, i.e. the sum of the lifetimes (exec to exit, from the kernel's process events) of
/// the provider processes Terraform started for it.
pub fn cold_start(reps: usize, null_bin: &Path) -> Vec<Row> {
    let ours = OurSeat::new(&["n1"], false);
    ours.set_resources(&hcl::rds("rd", "bench-cold", 1, "n1"));
    let null = NullSeat::new(null_bin, 1);
    let provider = binaries::provider();
    // One unmeasured run each: page cache and terraform's own first-run work.
    run_ok(&ours.tf, VALIDATE);
    run_ok(&null.tf(), VALIDATE);
    let (mut o, mut n) = (Vec::new(), Vec::new());
    let (mut os, mut ns) = (Vec::new(), Vec::new());
    let (mut oc, mut nc) = (0, 0);
    // Interleaved, so a burst of load from elsewhere hits both sides alike.
    for _ in 0..reps {
        let (t, lives) = validate_watched(&ours.tf, &provider);
        o.push(t);
        oc = oc.max(lives.len());
        os.push(lives.iter().sum());
        let (t, lives) = validate_watched(&null.tf(), null.binary());
        n.push(t);
        nc = nc.max(lives.len());
        ns.push(lives.iter().sum());
    }
    let (o, n) = (median(&o), median(&n));
    let (os, ns) = (median(&os), median(&ns));
    let r = ratio(o, n);
    let shares = ratio(os, ns);
    vec![
        Row {
            item: "1. cold start + schema".into(),
            ours: secs(o),
            reference: format!("null {}", secs(n)),
            value: format!("{r:.2}"),
            target: "<= 0.5".into(),
            verdict: Verdict::at_most(r, 0.5),
            note: format!(
                "`terraform validate`, 1 resource, whole command (Terraform's own work included), median of {reps}"
            ),
        },
        Row {
            item: "1. same, providers' share only".into(),
            ours: secs(os),
            reference: format!("null {}", secs(ns)),
            value: format!("{shares:.2}"),
            target: "<= 0.5".into(),
            verdict: Verdict::at_most(shares, 0.5),
            note: format!(
                "sum of the lifetimes (exec to exit, kernel process events) of the provider \
                 processes of one `terraform validate` (ours {oc}, null {nc}), median of {reps}"
            ),
        },
    ]
}

/// One `terraform validate`: its wall time and the lifetimes of the processes of `binary`
/// it started.
fn validate_watched(tf: &acceptance_tests::Terraform, binary: &Path) -> (Duration, Vec<Duration>) {
    let watch = Lifetimes::start(binary)
        .expect("listening to process events (needs root and CONFIG_PROC_EVENTS)");
    let t = run_ok(tf, VALIDATE);
    (t, watch.stop())
}

/// What one repetition of plan/apply/plan/destroy measured on one side.
#[derive(Default)]
struct Cycle {
    plan_fresh: Vec<Duration>,
    apply: Vec<Duration>,
    agent_busy: Vec<Duration>,
    plan_state: Vec<Duration>,
    destroy: Vec<Duration>,
    peak_kib_fresh: u64,
    peak_kib_state: u64,
}

/// Item 2 (and the provider half of item 4 at N=500): plan on a fresh config, apply, plan
/// with state (refresh included), destroy; ours vs null, and our plans vs the echo floor (the
/// same configuration through a build of our provider that does no work), at each N.
pub fn plan_apply(reps: usize, sizes: &[usize], null_bin: &Path) -> Vec<Row> {
    let ours = OurSeat::new(&["n1"], true);
    let null = NullSeat::new(null_bin, 1);
    let floor = FloorSeat::new();
    let mut rows = Vec::new();
    for &n in sizes {
        ours.set_resources(&hcl::rds("rd", "bench", n, "n1"));
        null.set_count(n);
        floor.set_resources(&hcl::rds("rd", "bench", n, "n1"));
        let mut o = Cycle::default();
        let mut z = Cycle::default();
        let mut f = Cycle::default();
        for _ in 0..reps {
            cycle_ours(&ours, &mut o);
            cycle_null(&null, &mut z);
            cycle_floor(&floor, &mut f);
        }
        rows.extend(plan_rows(n, reps, &o, &z));
        rows.extend(floor_rows(n, reps, &o, &f));
        if n == *sizes.iter().max().unwrap_or(&0) {
            rows.extend(provider_memory_rows(n, &o, &z));
        }
    }
    rows
}

fn cycle_ours(seat: &OurSeat, c: &mut Cycle) {
    let provider = binaries::provider();
    let w = Watcher::start(&provider);
    c.plan_fresh.push(run_ok(&seat.tf, PLAN));
    c.peak_kib_fresh = c.peak_kib_fresh.max(w.stop());
    seat.reset_proxies();
    c.apply.push(run_ok(&seat.tf, APPLY));
    c.agent_busy.push(seat.agent_busy().0);
    let w = Watcher::start(&provider);
    c.plan_state.push(run_ok(&seat.tf, PLAN));
    c.peak_kib_state = c.peak_kib_state.max(w.stop());
    c.destroy.push(run_ok(&seat.tf, DESTROY));
}

fn cycle_null(seat: &NullSeat, c: &mut Cycle) {
    let tf = seat.tf();
    let w = Watcher::start(seat.binary());
    c.plan_fresh.push(run_ok(&tf, PLAN));
    c.peak_kib_fresh = c.peak_kib_fresh.max(w.stop());
    c.apply.push(run_ok(&tf, APPLY));
    c.plan_state.push(run_ok(&tf, PLAN));
    c.destroy.push(run_ok(&tf, DESTROY));
}

fn cycle_floor(seat: &FloorSeat, c: &mut Cycle) {
    c.plan_fresh.push(run_ok(&seat.tf, PLAN));
    c.apply.push(run_ok(&seat.tf, APPLY));
    c.plan_state.push(run_ok(&seat.tf, PLAN));
    c.destroy.push(run_ok(&seat.tf, DESTROY));
}

/// Our plans over the echo floor's: how much above Terraform's own cost for our schema.
fn floor_rows(n: usize, reps: usize, o: &Cycle, f: &Cycle) -> Vec<Row> {
    [
        ("fresh (no state)", &o.plan_fresh, &f.plan_fresh),
        ("with state", &o.plan_state, &f.plan_state),
    ]
    .into_iter()
    .map(|(label, ours, floor)| {
        let (ours, floor) = (median(ours), median(floor));
        Row {
            item: format!("2. plan N={n}, {label}, over the echo floor"),
            ours: secs(ours),
            reference: format!("echo floor {}", secs(floor)),
            value: format!("{:.2}", ratio(ours, floor)),
            target: "reported".into(),
            verdict: Verdict::Info,
            note: format!(
                "the same plan through a build of our provider that does no work (schema \
                 and plugin server only; configuration echoed, computed values unknown): \
                 Terraform's own floor for our schema, median of {reps}"
            ),
        }
    })
    .collect()
}

fn plan_rows(n: usize, reps: usize, o: &Cycle, z: &Cycle) -> Vec<Row> {
    let pf = (median(&o.plan_fresh), median(&z.plan_fresh));
    let ps = (median(&o.plan_state), median(&z.plan_state));
    let ap = (median(&o.apply), median(&z.apply));
    let busy = median(&o.agent_busy);
    let rest = ap.0.saturating_sub(busy);
    let de = (median(&o.destroy), median(&z.destroy));
    let cmp = |a: Duration, b: Duration| format!("{:.2}", ratio(a, b));
    vec![
        Row {
            item: format!("2. plan N={n}, fresh (no state)"),
            ours: secs(pf.0),
            reference: format!("null {}", secs(pf.1)),
            value: cmp(pf.0, pf.1),
            target: "<= 1.0".into(),
            verdict: Verdict::at_most(ratio(pf.0, pf.1), 1.0),
            note: format!("`terraform plan`, nothing applied yet, median of {reps}"),
        },
        Row {
            item: format!("2. plan N={n}, with state"),
            ours: secs(ps.0),
            reference: format!("null {}", secs(ps.1)),
            value: cmp(ps.0, ps.1),
            target: "<= 1.0".into(),
            verdict: Verdict::at_most(ratio(ps.0, ps.1), 1.0),
            note: "`terraform plan` after apply: refresh reads every RD from the agent".into(),
        },
        Row {
            item: format!("2. apply N={n}"),
            ours: format!("{} (agent {}, rest {})", secs(ap.0), secs(busy), secs(rest)),
            reference: format!("null {}", secs(ap.1)),
            value: format!("{} (rest/null {})", cmp(ap.0, ap.1), cmp(rest, ap.1)),
            target: "reported".into(),
            verdict: Verdict::Info,
            note: "agent = time >= 1 agent request was in flight (timing proxy); rest = \
                   terraform + provider"
                .into(),
        },
        Row {
            item: format!("2. destroy N={n}"),
            ours: secs(de.0),
            reference: format!("null {}", secs(de.1)),
            value: cmp(de.0, de.1),
            target: "-".into(),
            verdict: Verdict::Info,
            note: "detaches every loop device and removes every backing file".into(),
        },
    ]
}

fn provider_memory_rows(n: usize, o: &Cycle, z: &Cycle) -> Vec<Row> {
    let limit = 30 * 1024;
    vec![
        Row {
            item: format!("4. provider peak RSS, plan N={n} fresh"),
            ours: mib(o.peak_kib_fresh),
            reference: format!("null {}", mib(z.peak_kib_fresh)),
            value: mib(o.peak_kib_fresh),
            target: "<= 30 MiB".into(),
            verdict: Verdict::at_most(o.peak_kib_fresh as f64, limit as f64),
            note: "max VmHWM of every provider process terraform started".into(),
        },
        Row {
            item: format!("4. provider peak RSS, plan N={n} with state"),
            ours: mib(o.peak_kib_state),
            reference: "-".into(),
            value: mib(o.peak_kib_state),
            target: "<= 30 MiB".into(),
            verdict: Verdict::at_most(o.peak_kib_state as f64, limit as f64),
            note: "same, plan with refresh".into(),
        },
    ]
}

/// Item 5: 100 RDs spread round-robin over 3 agents, one apply, against the slowest agent's
/// share applied alone (its RDs only, one agent). The CPU every side used is measured too: on
/// a machine with fewer cores than agents + terraform, the together run cannot be faster than
/// its total CPU time divided by the cores, whatever the dispatch does.
pub fn scale(reps: usize, total: usize) -> Vec<Row> {
    let nodes = ["n1", "n2", "n3"];
    let shares: Vec<usize> = (0..nodes.len())
        .map(|i| total / nodes.len() + usize::from(i < total % nodes.len()))
        .collect();
    let all = OurSeat::new(&nodes, false);
    let text: String = nodes
        .iter()
        .zip(&shares)
        .map(|(node, &count)| hcl::rds(&format!("rd_{node}"), &format!("s-{node}"), count, node))
        .collect();
    all.set_resources(&text);
    let (mut together, mut together_tf, mut together_ag) = (Vec::new(), Vec::new(), Vec::new());
    let (mut slowest, mut slowest_tf, mut slowest_ag) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let (wall, tf, ag) = run_ok_cpu(&all, APPLY);
        together.push(wall);
        together_tf.push(tf);
        together_ag.push(ag);
        run_ok(&all.tf, DESTROY);
        let mut worst = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for (node, &count) in nodes.iter().zip(&shares) {
            let one = OurSeat::new(&[node], false);
            one.set_resources(&hcl::rds("rd", &format!("s-{node}"), count, node));
            let alone = run_ok_cpu(&one, APPLY);
            if alone.0 > worst.0 {
                worst = alone;
            }
            run_ok(&one.tf, DESTROY);
        }
        slowest.push(worst.0);
        slowest_tf.push(worst.1);
        slowest_ag.push(worst.2);
    }
    let (t, s) = (median(&together), median(&slowest));
    let (t_tf, t_ag) = (median(&together_tf), median(&together_ag));
    let (s_tf, s_ag) = (median(&slowest_tf), median(&slowest_ag));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let cpu_bound = (t_tf + t_ag) / cores;
    let floor = s.max(cpu_bound);
    let r = ratio(t, s);
    let rf = ratio(t, floor);
    vec![
        Row {
            item: format!("5. scale {total} RDs x 3 agents"),
            ours: secs(t),
            reference: format!("slowest share alone {}", secs(s)),
            value: format!("{r:.2}"),
            target: "<= 1.2".into(),
            verdict: Verdict::at_most(r, 1.2),
            note: format!(
                "`terraform apply`, shares {shares:?}, each share alone on its own agent, median of {reps}"
            ),
        },
        Row {
            item: "5. same, CPU used".into(),
            ours: format!(
                "{} CPU (terraform+provider {}, agents {})",
                secs(t_tf + t_ag),
                secs(t_tf),
                secs(t_ag)
            ),
            reference: format!(
                "slowest share alone {} CPU (terraform+provider {}, agent {})",
                secs(s_tf + s_ag),
                secs(s_tf),
                secs(s_ag)
            ),
            value: format!("{rf:.2}"),
            target: "reported".into(),
            verdict: Verdict::Info,
            note: format!(
                "value = together / max(slowest share alone, together's CPU / {cores} cores = {})",
                secs(cpu_bound)
            ),
        },
    ]
}
