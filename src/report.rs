//! What the user sees: progress bars while a stage works, a summary table (or one JSON object with `--json`)
//! when it ends.
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub quiet: bool,
    pub json: bool,
}

impl Reporter {
    /// A progress bar on stderr; hidden when quiet, in JSON mode, or when stderr is not a terminal.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet || self.json {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8.bold} [{bar:32}] {pos}/{len} {per_sec} eta {eta} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar
    }

    /// A spinner for work of unknown length (scanning a folder, reading an archive's index).
    pub fn spinner(&self, what: &str) -> ProgressBar {
        if self.quiet || self.json {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{prefix:>8.bold} {spinner} {pos} {msg}").expect("static template"));
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// Prints a stage summary: a table on stdout, or JSON on stdout with `--json`; nothing when quiet.
    pub fn emit(&self, summary: &Summary) {
        if self.json {
            println!("{}", serde_json::to_string(summary).expect("summary serialises"));
        } else if !self.quiet {
            print!("{}", summary.render_table());
        }
    }
}

/// The end-of-stage summary: ordered counts, rejects by reason, and free-form facts (digest, paths).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub stage: String,
    pub counts: Vec<(String, u64)>,
    pub rejects: BTreeMap<String, u64>,
    pub facts: Vec<(String, String)>,
    pub seconds: f64,
    #[serde(skip)]
    started: Option<Instant>,
}

impl Summary {
    pub fn start(stage: &str) -> Self {
        Self {
            stage: stage.to_string(),
            counts: Vec::new(),
            rejects: BTreeMap::new(),
            facts: Vec::new(),
            seconds: 0.0,
            started: Some(Instant::now()),
        }
    }
    pub fn count(&mut self, what: &str, n: u64) -> &mut Self {
        self.counts.push((what.to_string(), n));
        self
    }
    pub fn reject(&mut self, reason: &str) {
        self.reject_n(reason, 1);
    }
    /// `n` rejections for `reason`.
    pub fn reject_n(&mut self, reason: &str, n: u64) {
        *self.rejects.entry(reason.to_string()).or_default() += n;
    }
    pub fn fact(&mut self, what: &str, value: impl ToString) -> &mut Self {
        self.facts.push((what.to_string(), value.to_string()));
        self
    }
    /// Stops the clock; call once the stage's outputs are published.
    pub fn finish(mut self) -> Self {
        if let Some(t) = self.started.take() {
            self.seconds = t.elapsed().as_secs_f64();
        }
        self
    }

    pub fn render_table(&self) -> String {
        let mut rows: Vec<(String, String)> = self.counts.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        for (reason, n) in &self.rejects {
            rows.push((format!("  rejected: {reason}"), n.to_string()));
        }
        rows.extend(self.facts.iter().cloned());
        rows.push(("time".into(), format!("{:.2} s", self.seconds)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("── {} ──\n", self.stage);
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_counts_rejects_and_facts() {
        let mut s = Summary::start("ingest");
        s.count("files", 3);
        s.reject("truncated");
        s.reject("truncated");
        s.fact("digest", "abc");
        let t = s.finish().render_table();
        assert!(t.contains("files") && t.contains("rejected: truncated  2") && t.contains("digest"), "{t}");
    }

    #[test]
    fn json_has_stage_and_rejects() {
        let mut s = Summary::start("dedup");
        s.reject("exact_bytes");
        let v: serde_json::Value = serde_json::to_value(s.finish()).unwrap();
        assert_eq!(v["stage"], "dedup");
        assert_eq!(v["rejects"]["exact_bytes"], 1);
    }
}
