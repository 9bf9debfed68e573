//! [`CpuList`]: the CPUs a process may run on (`--rls-cpus 1`, `--redis-cpus 0,1`,
//! `--harness-cpus 0-1`), applied with `sched_setaffinity`; and [`cpu_seconds`], the CPU
//! time a process has used, read from `/proc`, for CPU time per decision.
//!
//! A child is started from a thread pinned to its list, so that it and every thread it ever
//! makes inherit the list from the first instruction: pinning a running process by pid
//! would reach only the threads it already has. The harness pins every thread it has, and
//! the threads those make later inherit it.

use std::collections::BTreeSet;
use std::fmt;
use std::process::{Child, Command};
use std::str::FromStr;

use clap::Args;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::{Pid, SysconfVar, sysconf};
use serde::Serialize;

use crate::error::HarnessError;

/// A set of CPU numbers, as `taskset -c` writes it: `0`, `0,2`, `0-3`, `0-1,4`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuList(pub BTreeSet<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<CpuList, String> {
        let bad = || format!("`{text}` is not a CPU list such as 0, 0,2 or 0-3");
        let mut cpus = BTreeSet::new();
        for part in text.split(',').map(str::trim) {
            let (first, last): (usize, usize) = match part.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                None => {
                    let cpu = part.parse().map_err(|_| bad())?;
                    (cpu, cpu)
                }
            };
            if first > last || last >= CpuSet::count() {
                return Err(bad());
            }
            cpus.extend(first..=last);
        }
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&cpus.join(","))
    }
}

impl CpuList {
    fn cpu_set(&self) -> Result<CpuSet, HarnessError> {
        let mut set = CpuSet::new();
        for &cpu in &self.0 {
            set.set(cpu)
                .map_err(|e| HarnessError::Process(format!("CPU {cpu}: {e}")))?;
        }
        Ok(set)
    }

    /// Pins the thread (or process) `tid`; 0 is the calling thread.
    fn pin(&self, tid: i32) -> Result<(), HarnessError> {
        sched_setaffinity(Pid::from_raw(tid), &self.cpu_set()?).map_err(|e| {
            HarnessError::Process(format!(
                "cannot pin to CPUs {self} (sched_setaffinity): {e}"
            ))
        })
    }

    /// Pins every thread of this process; threads made later inherit it from their maker.
    pub fn pin_this_process(&self) -> Result<(), HarnessError> {
        let tasks = std::fs::read_dir("/proc/self/task")
            .map_err(|e| HarnessError::io("listing /proc/self/task", e))?;
        for task in tasks.flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                self.pin(tid)?;
            }
        }
        Ok(())
    }

    /// Starts `command` on these CPUs: spawned from a thread pinned to them, which the
    /// child inherits before it runs anything.
    pub fn spawn(&self, command: &mut Command) -> Result<std::io::Result<Child>, HarnessError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.pin(0)?;
                    Ok(command.spawn())
                })
                .join()
                .unwrap_or_else(|_| Err(HarnessError::Process("pinning thread panicked".into())))
        })
    }
}

/// CPU lists for the processes `loadtest compare` and `loadtest stack` start, and for the
/// harness itself; unset: the scheduler's choice.
#[derive(Clone, Debug, Default, Args)]
pub struct Pinning {
    /// CPUs of every `rls` process started (e.g. `1`, `0,1`, `0-1`).
    #[arg(long, value_name = "CPUS")]
    pub rls_cpus: Option<CpuList>,
    /// CPUs of every `redis-server` (and `redis-sentinel`) process started.
    #[arg(long, value_name = "CPUS")]
    pub redis_cpus: Option<CpuList>,
    /// CPUs of the harness (this process).
    #[arg(long, value_name = "CPUS")]
    pub harness_cpus: Option<CpuList>,
}

impl Pinning {
    /// Pins the harness, if asked.
    pub fn pin_harness(&self) -> Result<(), HarnessError> {
        self.harness_cpus
            .as_ref()
            .map_or(Ok(()), CpuList::pin_this_process)
    }

    /// `rls=1 redis=0 harness=0`, or `none` when nothing is pinned.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("rls", &self.rls_cpus),
            ("redis", &self.redis_cpus),
            ("harness", &self.harness_cpus),
        ]
        .into_iter()
        .filter_map(|(name, cpus)| cpus.as_ref().map(|c| format!("{name} on CPU {c}")))
        .collect();
        if parts.is_empty() {
            "shared cores (no pinning)".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Clock ticks per second of `/proc`'s CPU times.
fn ticks_per_second() -> f64 {
    // Linux has reported 100 for decades; sysconf is asked in case it ever does not.
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// User plus system CPU seconds used so far by process `pid` (all its threads); `None`
/// once it has gone. `0` reads this process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat).map(|ticks| ticks as f64 / ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in ticks. The command
/// name (field 2) is in parentheses and may hold spaces: fields are counted after its `)`.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds of a group of processes (the `rls` replicas, the Redis nodes), summed.
pub fn group_seconds(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&pid| cpu_seconds(pid)).sum()
}

/// CPU time per decision of each kind of process over a measured stretch, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuPerDecision {
    /// All `rls` processes together (`None`: none started, e.g. an external service).
    pub rls_us: Option<f64>,
    /// All Redis processes together.
    pub redis_us: Option<f64>,
    /// The harness.
    pub harness_us: f64,
}

/// The processes whose CPU time a measurement reads.
#[derive(Clone, Debug, Default)]
pub struct Processes {
    /// `rls` pids.
    pub rls: Vec<u32>,
    /// `redis-server` / `redis-sentinel` pids.
    pub redis: Vec<u32>,
}

/// CPU seconds read at the start of a stretch.
#[derive(Clone, Copy, Debug)]
pub struct CpuMark {
    rls: f64,
    redis: f64,
    harness: f64,
}

impl Processes {
    /// Reads every group now.
    pub fn mark(&self) -> CpuMark {
        CpuMark {
            rls: group_seconds(&self.rls),
            redis: group_seconds(&self.redis),
            harness: cpu_seconds(0).unwrap_or(0.0),
        }
    }

    /// CPU per decision since `start`, over `decisions` decisions.
    pub fn per_decision(&self, start: CpuMark, decisions: u64) -> CpuPerDecision {
        let end = self.mark();
        let per = |used: f64| used.max(0.0) * 1e6 / decisions.max(1) as f64;
        CpuPerDecision {
            rls_us: (!self.rls.is_empty()).then(|| per(end.rls - start.rls)),
            redis_us: (!self.redis.is_empty()).then(|| per(end.redis - start.redis)),
            harness_us: per(end.harness - start.harness),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_taskset_writes_them() {
        let list: CpuList = "0-2,5".parse().expect("valid");
        assert_eq!(list.0.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 5]);
        assert_eq!(list.to_string(), "0,1,2,5");
        for bad in ["", "a", "2-1", "1,", "-1"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stat_lines_give_user_plus_system_ticks_even_with_spaces_in_the_name() {
        let line = "4242 (redis server) S 1 4242 4242 0 -1 4194560 700 0 0 0 37 12 0 0 20 0 4 0";
        assert_eq!(parse_stat(line), Some(49));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_uses_cpu_time_and_a_gone_one_reads_none() {
        let start = cpu_seconds(0).expect("own stat");
        let mut x = 0u64;
        // Burn a few ms of CPU; the reading may not move at 10 ms ticks, but never falls.
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(0).expect("own stat") >= start);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn a_child_started_on_a_list_runs_on_that_list() {
        let cpus: CpuList = "0".parse().expect("valid");
        let mut command = Command::new("sh");
        command.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        command.stdout(std::process::Stdio::piped());
        let child = cpus.spawn(&mut command).expect("pinned").expect("spawned");
        let output = child.wait_with_output().expect("ran");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.trim().ends_with("\t0"), "{text}");
    }
}
