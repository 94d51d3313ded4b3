//! What machine a run was made on, what else was running, and where the CPU
//! time of each phase went (this process, Redis, Postgres, everything else),
//! read from /proc.

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

/// The machine and its state when a run started and ended.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub redis: String,
    pub postgres: String,
    pub build: String,
    pub load_before: String,
    pub top_before: String,
    pub load_after: String,
    pub top_after: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

/// Which stockhold was measured: `STOCKHOLD_BENCH_REV` if set, else the
/// git commit of the working tree (and whether the service's sources differ
/// from it).
pub fn service_build() -> String {
    if let Ok(rev) = std::env::var("STOCKHOLD_BENCH_REV") {
        return rev;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let rev = run("git", &["-C", root, "rev-parse", "--short", "HEAD"]);
    if rev.is_empty() || rev.starts_with('(') {
        return "unknown (not a git checkout)".into();
    }
    let dirty = run(
        "git",
        &[
            "-C",
            root,
            "status",
            "--porcelain",
            "--",
            "src",
            "lua",
            "migrations",
            "Cargo.toml",
        ],
    );
    if dirty.is_empty() {
        format!("commit {rev}")
    } else {
        format!("commit {rev} with uncommitted changes to the service")
    }
}

/// The load average line of /proc/loadavg.
pub fn load_average() -> String {
    read("/proc/loadavg").trim().to_owned()
}

/// The busiest processes now, as `top` shows them (one batch iteration).
pub fn top() -> String {
    let out = run("top", &["-bn1", "-w", "160"]);
    out.lines().take(16).collect::<Vec<_>>().join("\n")
}

impl Machine {
    /// Reads the machine; `redis` and `postgres` describe the servers.
    pub fn read(redis: String, postgres: String) -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_gib,
            kernel: run("uname", &["-sr"]),
            rustc: run("rustc", &["--version"]),
            redis,
            postgres,
            load_before: load_average(),
            top_before: top(),
            ..Machine::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Proc {
    ppid: u32,
    ticks: u64,
}

/// CPU counters at one moment.
pub struct CpuSnap {
    at: Instant,
    busy: u64,
    procs: HashMap<u32, Proc>,
}

/// Where CPU went during a phase, in cores (1.0 = one core fully busy).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub machine: f64,
    pub this: f64,
    pub redis: f64,
    pub postgres: f64,
    pub other: f64,
}

fn proc_stat(pid: u32) -> Option<Proc> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(0) ppid(1) … utime(11) stime(12).
    Some(Proc {
        ppid: f.get(1)?.parse().ok()?,
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

/// Parent pid of `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|p| p.ppid)
}

impl CpuSnap {
    /// Reads /proc now.
    pub fn take() -> Self {
        let busy = read("/proc/stat")
            .lines()
            .next()
            .map(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal …
                v.iter().take(8).sum::<u64>()
                    - v.get(3).copied().unwrap_or(0)
                    - v.get(4).copied().unwrap_or(0)
            })
            .unwrap_or(0);
        let procs = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter_map(|pid| Some((pid, proc_stat(pid)?)))
                    .collect()
            })
            .unwrap_or_default();
        CpuSnap {
            at: Instant::now(),
            busy,
            procs,
        }
    }

    /// CPU used since `self`, split by owner: this process, the Redis
    /// server `redis_pid`, the Postgres server `postmaster` and its children.
    pub fn since(&self, redis_pid: Option<u32>, postmaster: Option<u32>) -> CpuUse {
        self.since_pids(redis_pid.as_slice(), postmaster)
    }

    /// As `since`, with every process of `redis_pids` counted as Redis (the
    /// nodes of a cluster, replicas included).
    pub fn since_pids(&self, redis_pids: &[u32], postmaster: Option<u32>) -> CpuUse {
        let now = CpuSnap::take();
        let hz = 100.0; // USER_HZ: /proc reports clock ticks of 1/100 s on Linux.
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cores = |ticks: u64| ticks as f64 / hz / secs;
        let me = std::process::id();
        let (mut this, mut redis, mut pg) = (0, 0, 0);
        for (pid, p) in &now.procs {
            let before = self.procs.get(pid).map(|b| b.ticks).unwrap_or(0);
            let d = p.ticks.saturating_sub(before);
            if *pid == me {
                this += d;
            } else if redis_pids.contains(pid) {
                redis += d;
            } else if Some(*pid) == postmaster || Some(p.ppid) == postmaster {
                pg += d;
            }
        }
        let machine = cores(now.busy.saturating_sub(self.busy));
        CpuUse {
            machine,
            this: cores(this),
            redis: cores(redis),
            postgres: cores(pg),
            other: (machine - cores(this) - cores(redis) - cores(pg)).max(0.0),
        }
    }
}
