//! Wiping a secret from the process's initial environment block.
//!
//! `std::env::remove_var` takes a variable out of the live environment (what `getenv` and child
//! processes see), but on Linux the strings the kernel placed on the stack at `execve` stay
//! where they were, and `/proc/<pid>/environ` — readable by the same user and by root, copied
//! by crash reporters and support bundles — keeps showing `CUSTOS_PASSPHRASE=…` for the life of
//! the process. [`wipe_initial`] overwrites those bytes with zeros, through `/proc/self/mem` (the
//! process writing its own memory, no `unsafe`): first it locates the block (`env_start` and
//! `env_end`, fields 50 and 51 of `/proc/self/stat`), reads it back through `/proc/self/environ`,
//! and zeroes every `NAME=…` entry. Call it after `remove_var`, so nothing points at those bytes
//! any more, and before other threads start.
//!
//! Elsewhere than Linux there is no such block to wipe: it does nothing.

/// Zeroes every `name=…` entry of the initial environment block; returns how many it wiped.
#[cfg(target_os = "linux")]
pub fn wipe_initial(name: &str) -> std::io::Result<usize> {
    use std::io::{Error, ErrorKind, Seek, SeekFrom, Write};

    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "unexpected /proc/self/stat"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // `after_comm` starts at field 3 (state); env_start is field 50, env_end field 51.
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidData,
                    "no env_start/env_end in /proc/self/stat",
                )
            })
    };
    let (start, end) = (field(50)?, field(51)?);
    let block = std::fs::read("/proc/self/environ")?;
    if block.len() as u64 > end.saturating_sub(start) {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "/proc/self/environ is larger than the block /proc/self/stat names",
        ));
    }
    let prefix = format!("{name}=");
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    let mut wiped = 0;
    let mut offset = 0usize;
    for entry in block.split(|b| *b == 0) {
        if entry.starts_with(prefix.as_bytes()) {
            mem.seek(SeekFrom::Start(start + offset as u64))?;
            mem.write_all(&vec![0u8; entry.len()])?;
            wiped += 1;
        }
        offset += entry.len() + 1;
    }
    Ok(wiped)
}

/// Nothing to wipe outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn wipe_initial(_name: &str) -> std::io::Result<usize> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_variable_absent_from_the_initial_block_wipes_nothing() {
        // Set at run time, it lives on the heap, not in the block the kernel shows.
        assert_eq!(wipe_initial("CUSTOS_TEST_NEVER_SET_BY_EXEC").unwrap(), 0);
        let block = std::fs::read("/proc/self/environ").unwrap();
        assert!(!block.is_empty());
    }
}
