//! `file:PATH`: appended to in `write`s of whole lines, nothing held back
//! between them, so a crash leaves only whole lines; opened again at the same
//! path on request (SIGHUP after logrotate moved it), by the output's writer
//! thread, which owns the file.

use std::{
    fs::{File, OpenOptions},
    io::{self, Seek, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// The file of one output, written and reopened by its writer thread.
pub struct AppendFile {
    path: PathBuf,
    file: File,
    /// A failed write left part of a line at the end of the file that could
    /// not be taken back: the next write first ends it with a newline.
    ends_in_cut_line: bool,
}

/// A write of lines that failed, perhaps after some of them were appended.
#[derive(Debug)]
pub struct LinesNotWritten {
    /// How many lines were appended whole before the failure.
    pub whole_lines: usize,
    pub error: io::Error,
}

impl AppendFile {
    pub fn open(path: &Path) -> io::Result<AppendFile> {
        Ok(AppendFile {
            path: path.to_owned(),
            file: open_append(path)?,
            ends_in_cut_line: false,
        })
    }

    /// Opens the file at the path again; lines written from now on go to
    /// it. On error the old file is kept.
    pub fn reopen(&mut self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        if self.ends_in_cut_line {
            // The newline is owed to the file holding the cut line.
            self.ends_in_cut_line = is_same_file(&self.file, &file)?;
        }
        self.file = file;
        Ok(())
    }

    /// `lines` are whole lines, each ending in a newline; appended in one
    /// `write` (unless the kernel takes them in parts). When the write fails
    /// midway (a full disk), the line it cut is taken back, so the file
    /// still ends with a whole line.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<(), LinesNotWritten> {
        if self.ends_in_cut_line {
            self.file
                .write_all(b"\n")
                .map_err(|error| LinesNotWritten {
                    whole_lines: 0,
                    error,
                })?;
            self.ends_in_cut_line = false;
        }
        let mut written = 0;
        while written < lines.len() {
            match self.file.write(&lines[written..]) {
                Ok(0) => {
                    return Err(self.cut_short(&lines[..written], io::ErrorKind::WriteZero.into()))
                }
                Ok(bytes) => written += bytes,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.cut_short(&lines[..written], error)),
            }
        }
        Ok(())
    }

    /// After a write failed with `appended` at the end of the file: takes
    /// back the part of a line at its end, or else owes the file a newline.
    fn cut_short(&mut self, appended: &[u8], error: io::Error) -> LinesNotWritten {
        let whole = appended
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |last_newline| last_newline + 1);
        let cut = (appended.len() - whole) as u64;
        if cut > 0 {
            if let Err(truncate_error) = self.take_back(cut) {
                // An append-only file (chattr +a), say.
                tracing::warn!(path = %self.path.display(), error = %truncate_error, "a failed write left part of a line that cannot be taken back; a newline will end it before the next line");
                self.ends_in_cut_line = true;
            }
        }
        LinesNotWritten {
            whole_lines: memchr::memchr_iter(b'\n', &appended[..whole]).count(),
            error,
        }
    }

    /// Cuts the last `bytes` off the file, which ends where the last write
    /// ended: the daemon is the file's only writer.
    fn take_back(&mut self, bytes: u64) -> io::Result<()> {
        let end = self.file.stream_position()?;
        let length = end
            .checked_sub(bytes)
            .ok_or_else(|| io::Error::other("the file is shorter than what was just written"))?;
        self.file.set_len(length)
    }
}

/// Events may carry addresses and hosts: readable by the owner and group
/// only. Anything but a regular file is refused: without O_NONBLOCK, opening
/// a FIFO would wait for a reader, for ever.
fn open_append(path: &Path) -> io::Result<File> {
    let not_regular = || io::Error::other("not a regular file");
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        // Without effect on a regular file's writes.
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            // A FIFO without a reader, a socket or a device with no driver.
            Some(nix::libc::ENXIO) => not_regular(),
            _ => error,
        })?;
    match file.metadata()?.is_file() {
        true => Ok(file),
        false => Err(not_regular()),
    }
}

fn is_same_file(a: &File, b: &File) -> io::Result<bool> {
    let (a, b) = (a.metadata()?, b.metadata()?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

#[cfg(test)]
mod tests {
    use std::{process::Command, sync::mpsc, thread, time::Duration};

    use super::*;

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    }

    #[test]
    fn appends_whole_lines_to_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let mut file = AppendFile::open(&path).unwrap();
        file.write_lines(b"{\"n\":1}\n").unwrap();
        file.write_lines(b"{\"n\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"earlier\":true}\n{\"n\":1}\n{\"n\":2}\n",
            "written through, nothing held back"
        );
    }

    #[test]
    fn after_a_rename_and_reopen_new_lines_go_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let rotated = dir.path().join("events.json.1");
        let mut file = AppendFile::open(&path).unwrap();
        file.write_lines(b"{\"n\":1}\n").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        file.write_lines(b"{\"n\":2}\n").unwrap();
        file.reopen().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "",
            "created at once"
        );
        file.write_lines(b"{\"n\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":3}\n");
    }

    #[test]
    fn a_reopen_that_fails_names_the_error_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("events.json");
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let mut file = AppendFile::open(&path).unwrap();
        std::fs::rename(dir.path().join("logs"), dir.path().join("old")).unwrap();
        let error = file.reopen().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        file.write_lines(b"{\"n\":1}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("old").join("events.json")).unwrap(),
            "{\"n\":1}\n"
        );
    }

    #[test]
    fn a_fifo_is_refused_whether_or_not_it_has_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("events.json");
        mkfifo(&fifo);
        let (opened, refused) = mpsc::channel();
        let opening = fifo.clone();
        thread::spawn(move || opened.send(AppendFile::open(&opening).err()));
        let error = refused
            .recv_timeout(Duration::from_secs(5))
            .expect("the open returned, without a reader")
            .expect("refused");
        assert_eq!(error.to_string(), "not a regular file");
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let error = AppendFile::open(&fifo).err().expect("refused");
        assert_eq!(error.to_string(), "not a regular file");
    }
}
