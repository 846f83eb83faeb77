//! `file:PATH`: appended to in `write`s of whole lines, nothing held back
//! between them, so a crash leaves only whole lines; opened again at the same
//! path on request (SIGHUP after logrotate moved it).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

/// The writing end, owned by the output's writer thread.
pub struct AppendFile {
    file: File,
    /// A file opened by [`Reopener::reopen`], taken before the next write.
    replacement: Arc<Mutex<Option<File>>>,
}

/// Opens the file again at its path, for the writer to switch to.
pub struct Reopener {
    path: PathBuf,
    replacement: Arc<Mutex<Option<File>>>,
}

pub fn open(path: &Path) -> io::Result<(AppendFile, Reopener)> {
    let replacement = Arc::new(Mutex::new(None));
    let file = AppendFile {
        file: open_append(path)?,
        replacement: Arc::clone(&replacement),
    };
    let reopener = Reopener {
        path: path.to_owned(),
        replacement,
    };
    Ok((file, reopener))
}

impl AppendFile {
    /// `lines` are whole lines, each ending in a newline; appended in one
    /// `write` (unless the kernel takes them in parts).
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        let replacement = self
            .replacement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(file) = replacement {
            self.file = file;
        }
        self.file.write_all(lines)
    }
}

impl Reopener {
    /// Opened here, so that an error reaches the caller at once; events
    /// written from now on go to the new file.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        *self
            .replacement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(())
    }
}

/// Events may carry addresses and hosts: readable by the owner and group only.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_whole_lines_to_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let (mut file, _) = open(&path).unwrap();
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
        let (mut file, reopener) = open(&path).unwrap();
        file.write_lines(b"{\"n\":1}\n").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        file.write_lines(b"{\"n\":2}\n").unwrap();
        reopener.reopen().unwrap();
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
        let (mut file, reopener) = open(&path).unwrap();
        std::fs::rename(dir.path().join("logs"), dir.path().join("old")).unwrap();
        let error = reopener.reopen().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        file.write_lines(b"{\"n\":1}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("old").join("events.json")).unwrap(),
            "{\"n\":1}\n"
        );
    }
}
