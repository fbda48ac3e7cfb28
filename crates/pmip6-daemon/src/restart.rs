//! The durable Restart Counter of RFC 5847 §5.2: incremented at every start and kept in
//! non-volatile storage, so that a peer's Heartbeat tells it that this node lost its state.
//!
//! The counter lives in a small text file in the daemon's state directory, written atomically
//! (a temporary file, fsync, rename) before the daemon sends anything.

use std::io::{self, Write as _};
use std::path::Path;

/// Reads the counter in `path` (0 when the file does not exist yet), stores the next value and
/// returns it. A file that does not hold a number is an error: the operator decides, rather
/// than the daemon silently reusing a value a peer may have heard.
pub fn next_restart_counter(path: &Path) -> io::Result<u32> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u32>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a restart counter: {:?}", path.display(), text.trim()),
            )
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    // RFC 5847 §5.2: a 32-bit counter; it wraps.
    let next = previous.wrapping_add(1);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{next}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_grows_across_starts_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("pmip6-restart-{}", std::process::id()));
        let path = dir.join("state").join("lma-restart-counter");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(next_restart_counter(&path).ok(), Some(1));
        assert_eq!(next_restart_counter(&path).ok(), Some(2));
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("2\n"));
        std::fs::write(&path, format!("{}\n", u32::MAX)).expect("write");
        assert_eq!(next_restart_counter(&path).ok(), Some(0), "wraps");
        std::fs::write(&path, "not a number").expect("write");
        let e = next_restart_counter(&path);
        assert!(e.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::InvalidData), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
