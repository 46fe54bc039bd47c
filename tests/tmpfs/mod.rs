//! A real tmpfs for tests of a full disk: mounted by the test (the tests run as root, as CI
//! does), filled to ENOSPC with an ordinary file, unmounted on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

const KIB: usize = 1024;

/// A tmpfs of `bytes` mounted on a fresh directory for the length of a test (unmounted on drop).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(bytes: usize) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("custos-test-state")
            .arg(dir.path())
            .output()
            .expect("the mount command runs");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs for the state disk failed (the tests run as root, as \
             CI does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem refuses (ENOSPC); returns it.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 64 * KIB];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        drop(file);
        assert!(
            fs2::available_space(self.path()).unwrap() < 64 * KIB as u64,
            "the tmpfs is full"
        );
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .output()
            .is_ok_and(|out| out.status.success());
        if !unmounted {
            // A thread of a database instance the test dropped still holds a file there: detach
            // now, the kernel frees the filesystem when the file is closed.
            let _ = Command::new("umount").arg("-l").arg(self.path()).output();
        }
    }
}
