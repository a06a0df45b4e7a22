//! The results as Markdown: printed as they come, and written into
//! `BENCHMARKS.md` between the `results` markers (the prose around them,
//! the analysis, is kept).

use std::path::Path;

const START: &str = "<!-- results:start (written by `make bench`; edit outside the markers) -->";
const END: &str = "<!-- results:end -->";
/// The block of a run on PostgreSQL (`make bench-postgres`).
const PG_START: &str = "<!-- results-postgres:start (written by `make bench-postgres`; edit outside the markers) -->";
const PG_END: &str = "<!-- results-postgres:end -->";

#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
    postgres: bool,
}

impl Report {
    pub fn line(&mut self, text: &str) {
        println!("{text}");
        self.lines.push(text.to_owned());
    }

    /// A report of a run on PostgreSQL: written into a block of its own.
    pub fn postgres() -> Self {
        Self { lines: Vec::new(), postgres: true }
    }

    /// Replaces the results block of `file` (appends one if it has none).
    pub fn write_into(&self, file: &Path) -> std::io::Result<()> {
        let (start, end) = if self.postgres { (PG_START, PG_END) } else { (START, END) };
        let old = std::fs::read_to_string(file).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
        let block = format!("{start}\n{}\n{end}", self.lines.join("\n"));
        // The block's own end: the first end marker after its start.
        let found = old.find(start).and_then(|a| Some((a, a + old[a..].find(end)?)));
        let new = match found {
            Some((a, b)) => format!("{}{block}{}", &old[..a], &old[b + end.len()..]),
            None => format!("{}\n{block}\n", old.trim_end()),
        };
        std::fs::write(file, new)
    }
}
