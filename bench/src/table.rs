//! The result table: one row per measured figure, rendered as Markdown.

use std::fmt::Write;

/// Whether a figure met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the target.
    Met,
    /// Outside the target.
    Missed,
    /// Informational: no target applies.
    Info,
    /// The measurement could not be taken.
    Failed,
}

impl Verdict {
    /// `Met` when `value <= limit`, else `Missed` (NaN counts as missed).
    pub fn at_most(value: f64, limit: f64) -> Self {
        if value <= limit {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**MISSED**",
            Verdict::Info => "",
            Verdict::Failed => "**FAILED**",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Issue #7 item number and short name, e.g. `2. plan N=50`.
    pub item: String,
    /// What was measured (ours).
    pub ours: String,
    /// The reference it is compared to (null provider, raw commands, ...).
    pub reference: String,
    /// The figure compared with the target (a ratio or a size).
    pub value: String,
    /// The target, as written in the issue.
    pub target: String,
    /// Met / missed.
    pub verdict: Verdict,
    /// What exactly was run.
    pub note: String,
}

impl Row {
    /// A row for a measurement that could not be taken, saying why.
    pub fn failed(item: &str, target: &str, why: &str) -> Self {
        Row {
            item: item.into(),
            ours: "-".into(),
            reference: "-".into(),
            value: "-".into(),
            target: target.into(),
            verdict: Verdict::Failed,
            note: why.lines().next().unwrap_or("").chars().take(200).collect(),
        }
    }
}

/// The Markdown table of `rows`, with a header line.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| item | ours | reference | value | target | verdict | what ran |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.item),
            cell(&r.ours),
            cell(&r.reference),
            cell(&r.value),
            cell(&r.target),
            r.verdict.label(),
            cell(&r.note)
        );
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_escapes_pipes_and_marks_missed_targets() {
        let row = Row {
            item: "1. cold".into(),
            ours: "a|b".into(),
            reference: "r".into(),
            value: "0.7".into(),
            target: "<= 0.5".into(),
            verdict: Verdict::at_most(0.7, 0.5),
            note: "n".into(),
        };
        let text = render(&[row]);
        assert!(text.contains("a\\|b"), "{text}");
        assert!(text.contains("**MISSED**"), "{text}");
    }
}
