//! A progress bar on stderr for `auditor replay` of large inputs, when
//! stderr is a terminal; nothing otherwise.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs smaller than this, in all, replay without a bar.
pub const PROGRESS_MIN_BYTES: u64 = 32 * 1024 * 1024;

/// Bytes read of the whole input: the files done and the one being read.
pub struct ReplayProgress {
    bar: Option<ProgressBar>,
    files_done_bytes: u64,
}

impl ReplayProgress {
    /// A bar for reading `files` on stderr, if they are large and stderr is
    /// a terminal.
    pub fn for_files(files: &[PathBuf]) -> ReplayProgress {
        let total = files
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum();
        let show = total >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal();
        ReplayProgress {
            bar: show.then(|| bar(total)),
            files_done_bytes: 0,
        }
    }

    /// `bytes_read` of the file being read now.
    pub fn reading(&self, bytes_read: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.files_done_bytes + bytes_read);
        }
    }

    /// The file being read ended after `bytes_read`.
    pub fn file_done(&mut self, bytes_read: u64) {
        self.files_done_bytes += bytes_read;
        self.reading(0);
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "replaying [{bar:40}] {binary_bytes}/{binary_total_bytes} ({eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    // Redraws also when segments come slowly, e.g. from a slow disk.
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
