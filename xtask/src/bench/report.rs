//! The figures: a table on stdout, all of them as JSON, and the generated part of
//! `docs/benchmarks.md` between the markers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::stats::Stats;

pub const BEGIN_MARKER: &str = "<!-- bench:begin -->";
pub const END_MARKER: &str = "<!-- bench:end -->";

/// How a figure is judged against its goal.
#[derive(Debug, Clone)]
pub struct Goal {
    /// As shown, e.g. "median ≤ 50 ms".
    pub text: String,
    pub pass: bool,
}

impl Goal {
    pub fn at_most(what: &str, actual: f64, limit: f64, unit: &str) -> Goal {
        Goal {
            text: goal_text(what, "≤", limit, unit),
            pass: actual <= limit,
        }
    }

    pub fn at_least(what: &str, actual: f64, limit: f64, unit: &str) -> Goal {
        Goal {
            text: goal_text(what, "≥", limit, unit),
            pass: actual >= limit,
        }
    }

    /// Both goals.
    pub fn and(self, other: Goal) -> Goal {
        Goal {
            text: format!("{}, {}", self.text, other.text),
            pass: self.pass && other.pass,
        }
    }
}

fn goal_text(what: &str, relation: &str, limit: f64, unit: &str) -> String {
    let limit = if limit.fract() == 0.0 {
        grouped(limit)
    } else {
        number(limit)
    };
    format!("{what} {relation} {limit} {unit}")
        .trim_start()
        .to_owned()
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable name in the JSON, e.g. `startup.exec_to_ready`.
    pub key: String,
    pub label: String,
    /// Unit of `value` and of `stats`.
    pub unit: String,
    /// The headline number (what the goal judges, if there is one).
    pub value: f64,
    /// Which statistic `value` is: median, p95, throughput, value.
    pub value_is: &'static str,
    pub stats: Option<Stats>,
    /// For load figures.
    pub load: Option<LoadFigure>,
    pub goal: Option<Goal>,
    /// Anything else worth keeping (counts, sizes).
    pub extra: Map<String, Value>,
}

/// Throughput, errors and concurrency of a load figure; `stats` holds the latency.
#[derive(Debug, Clone)]
pub struct LoadFigure {
    pub clients: usize,
    pub calls: u64,
    pub throughput: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
}

impl Figure {
    /// A distribution in ms, judged (if at all) on `value_is`.
    pub fn timing(key: &str, label: &str, stats: Stats, value_is: &'static str) -> Figure {
        let value = match value_is {
            "p95" => stats.p95,
            "p99" => stats.p99,
            _ => stats.median,
        };
        Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            unit: "ms".to_owned(),
            value,
            value_is,
            stats: Some(stats),
            load: None,
            goal: None,
            extra: Map::new(),
        }
    }

    /// A single value.
    pub fn single(key: &str, label: &str, value: f64, unit: &str) -> Figure {
        Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            value,
            value_is: "value",
            stats: None,
            load: None,
            goal: None,
            extra: Map::new(),
        }
    }

    pub fn with_goal(mut self, goal: Goal) -> Figure {
        self.goal = Some(goal);
        self
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Figure {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The measured column.
    pub fn measured(&self) -> String {
        if let Some(load) = &self.load {
            let mut text = format!("{} calls/s", grouped(load.throughput));
            if let Some(stats) = &self.stats {
                let _ = write!(
                    text,
                    "; p50 {} · p95 {} · p99 {} ms",
                    number(stats.median),
                    number(stats.p95),
                    number(stats.p99)
                );
            }
            let _ = write!(
                text,
                "; {} calls, {} error(s)",
                grouped(load.calls as f64),
                load.errors
            );
            return text;
        }
        match &self.stats {
            Some(stats) => format!(
                "median {} · p95 {} · p99 {} {} (n={})",
                number(stats.median),
                number(stats.p95),
                number(stats.p99),
                self.unit,
                stats.n
            ),
            None => format!("{} {}", number(self.value), self.unit),
        }
    }

    pub fn result(&self) -> &'static str {
        match &self.goal {
            Some(goal) if goal.pass => "PASS",
            Some(_) => "MISS",
            None => "",
        }
    }

    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "value": self.value,
            "value_is": self.value_is,
        });
        if let Some(stats) = self.stats {
            value["stats"] = stats.to_json();
        }
        if let Some(load) = &self.load {
            value["clients"] = json!(load.clients);
            value["calls"] = json!(load.calls);
            value["throughput"] = json!(load.throughput);
            value["errors"] = json!(load.errors);
            value["error_kinds"] = json!(load.error_kinds);
        }
        if let Some(goal) = &self.goal {
            value["goal"] = json!(goal.text);
            value["pass"] = json!(goal.pass);
        }
        for (name, extra) in &self.extra {
            value[name] = extra.clone();
        }
        value
    }
}

/// Up to 3 significant decimals, enough for ms and MiB.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        grouped(value)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// An integer with thousands separators.
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// Where the figures were measured.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_gib: f64,
    pub kernel: String,
    pub postgresql: String,
    pub rustc: String,
}

impl Machine {
    pub fn describe(postgresql: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, name)| name.trim().to_owned(),
            );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_gib = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
        let rustc =
            std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
                .arg("--version")
                .output()
                .ok()
                .and_then(|output| String::from_utf8(output.stdout).ok())
                .map_or_else(|| "unknown".to_owned(), |text| text.trim().to_owned());
        Machine {
            cpu,
            cores,
            ram_gib,
            kernel,
            postgresql,
            rustc,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{}, {} cores, {:.1} GiB RAM, Linux {}, PostgreSQL {}, {}",
            self.cpu, self.cores, self.ram_gib, self.kernel, self.postgresql, self.rustc
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "cpu": self.cpu, "cores": self.cores, "ram_gib": self.ram_gib,
            "kernel": self.kernel, "postgresql": self.postgresql, "rustc": self.rustc,
        })
    }
}

/// A whole run.
#[derive(Debug)]
pub struct Report {
    pub command: String,
    pub mode: &'static str,
    pub machine: Machine,
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
    pub figures: Vec<Figure>,
    /// Lines describing the set-up, printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    pub fn missed(&self) -> Vec<&Figure> {
        self.figures
            .iter()
            .filter(|figure| figure.goal.as_ref().is_some_and(|goal| !goal.pass))
            .collect()
    }

    /// The table for a terminal.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .figures
            .iter()
            .map(|figure| {
                [
                    figure.label.clone(),
                    figure.measured(),
                    figure
                        .goal
                        .as_ref()
                        .map_or(String::new(), |goal| goal.text.clone()),
                    figure.result().to_owned(),
                ]
            })
            .collect();
        let header = ["figure", "measured", "goal", "result"].map(str::to_owned);
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(&rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (index, row) in std::iter::once(&header).chain(&rows).enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| {
                    let pad = width - cell.chars().count();
                    format!("{cell}{}", " ".repeat(pad))
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if index == 0 {
                let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
                let _ = writeln!(out, "{}", rule.join("  "));
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let figures: Vec<Value> = self.figures.iter().map(Figure::to_json).collect();
        json!({
            "version": 1,
            "command": self.command,
            "mode": self.mode,
            "date": self.date,
            "machine": self.machine.to_json(),
            "figures": figures,
            "missed": self.missed().iter().map(|figure| figure.key.clone()).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// The generated part of docs/benchmarks.md, markers included.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{BEGIN_MARKER}");
        let _ = writeln!(
            out,
            "## Server, database and load (`cargo xtask bench`)\n\n\
             Generated by `{}` on {} UTC ({} run); everything between the `bench:` markers is \
             rewritten by it.\n",
            self.command, self.date, self.mode
        );
        let _ = writeln!(out, "Machine: {}.\n", self.machine.line());
        let _ = writeln!(
            out,
            "| figure | goal | measured | result |\n|---|---|---|---|"
        );
        for figure in &self.figures {
            let goal = figure
                .goal
                .as_ref()
                .map_or("—".to_owned(), |goal| goal.text.clone());
            let result = match figure.result() {
                "" => "—".to_owned(),
                result => format!("**{result}**"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                markdown_label(&figure.label),
                goal,
                figure.measured().replace('|', "\\|"),
                result
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let _ = writeln!(out, "{END_MARKER}");
        out
    }

    pub fn write_doc(&self, path: &Path) -> Result<()> {
        let current =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let updated = replace_generated(&current, &self.markdown());
        std::fs::write(path, updated).with_context(|| format!("write {}", path.display()))
    }
}

/// Markdown trims cells, so the indentation of a sub-figure becomes an arrow.
fn markdown_label(label: &str) -> String {
    let escaped = label.replace('|', "\\|");
    match escaped.strip_prefix("  ") {
        Some(rest) => format!("↳ {rest}"),
        None => escaped,
    }
}

/// `doc` with the text between the markers (inclusive) replaced by `generated`; appended at the
/// end when the markers are missing. Text outside the markers is kept as it is.
pub fn replace_generated(doc: &str, generated: &str) -> String {
    let generated = generated.trim_end();
    if let (Some(begin), Some(end)) = (doc.find(BEGIN_MARKER), doc.find(END_MARKER))
        && begin < end
    {
        let after = &doc[end + END_MARKER.len()..];
        return format!("{}{generated}{after}", &doc[..begin]);
    }
    let mut out = doc.trim_end().to_owned();
    out.push_str("\n\n");
    out.push_str(generated);
    out.push('\n');
    out
}

/// Seconds since the epoch as UTC (year, month, day, hour, minute, second).
pub fn utc(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rest / 3600) as u32,
        ((rest % 3600) / 60) as u32,
        (rest % 60) as u32,
    )
}

/// Now, UTC, `YYYY-MM-DD HH:MM`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day, hour, minute, _) = utc(secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_part_is_replaced_and_the_rest_kept() {
        let doc = format!("# Title\n\nLead text.\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\n\nAfter.\n");
        let new = format!("{BEGIN_MARKER}\nnew\n{END_MARKER}\n");
        let updated = replace_generated(&doc, &new);
        assert_eq!(
            updated,
            format!("# Title\n\nLead text.\n\n{BEGIN_MARKER}\nnew\n{END_MARKER}\n\nAfter.\n")
        );
        // Idempotent.
        assert_eq!(replace_generated(&updated, &new), updated);
    }

    #[test]
    fn missing_markers_are_appended() {
        let new = format!("{BEGIN_MARKER}\nnew\n{END_MARKER}\n");
        let updated = replace_generated("# Title\n\nText.\n", &new);
        assert_eq!(updated, format!("# Title\n\nText.\n\n{new}"));
        assert_eq!(replace_generated(&updated, &new), updated);
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc(1_795_000_000), (2026, 11, 18, 11, 6, 40));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(1234567.0), "1,234,567");
        assert_eq!(number(0.0913), "0.091");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(3120.4), "3,120");
    }
}
