//! The results as Markdown: printed as they come, and written into
//! `BENCHMARKS.md` between the `results` markers (the prose around them,
//! the analysis, is kept).

use std::path::Path;

const START: &str = "<!-- results:start (written by `make bench`; edit outside the markers) -->";
const END: &str = "<!-- results:end -->";

#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
}

impl Report {
    pub fn line(&mut self, text: &str) {
        println!("{text}");
        self.lines.push(text.to_owned());
    }

    /// Replaces the results block of `file` (appends one if it has none).
    pub fn write_into(&self, file: &Path) -> std::io::Result<()> {
        let old = std::fs::read_to_string(file).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
        let block = format!("{START}\n{}\n{END}", self.lines.join("\n"));
        let new = match (old.find(START), old.find(END)) {
            (Some(a), Some(b)) if a < b => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
            _ => format!("{}\n{block}\n", old.trim_end()),
        };
        std::fs::write(file, new)
    }
}
