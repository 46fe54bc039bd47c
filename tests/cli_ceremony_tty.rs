//! The terminal flows, on a real pseudo-terminal (util-linux `script`): `custos init --shares`
//! shows one share at a time — custodian called, share shown, copy typed back and checked (a
//! mistake named by group), screen and scrollback cleared before the next custodian — and an
//! offline command prompts custodians for their shares one after the other, naming a refused one.
//!
//! The driver waits for each prompt to appear before it types (never for a fixed time); a
//! generous overall limit only turns a hang into a failure with the screen so far.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_custos");
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const CLEAR: &str = "\x1b[2J\x1b[3J\x1b[H";
const LIMIT: Duration = Duration::from_secs(120);

/// A command on a pseudo-terminal: what it printed so far, and its keyboard.
struct Terminal {
    child: Child,
    keyboard: ChildStdin,
    screen: Receiver<Vec<u8>>,
    seen: String,
    read_to: usize,
}

impl Terminal {
    fn start(dir: &Path, args: &[&str]) -> Terminal {
        let command = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
            .current_dir(dir)
            .env_remove("CUSTOS_PASSPHRASE")
            .env_remove("CUSTOS_SHARE_FILES")
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux script (see .ci/install-tools)");
        let keyboard = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            keyboard,
            screen: rx,
            seen: String::new(),
            read_to: 0,
        }
    }

    /// Waits until `needle` appears after what was already consumed; returns the text up to and
    /// including it.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(at) = self.seen[self.read_to..].find(needle) {
                let end = self.read_to + at + needle.len();
                let text = self.seen[self.read_to..end].to_owned();
                self.read_to = end;
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!(
                    "waited for {needle:?}; the terminal shows:\n{}",
                    &self.seen[self.read_to..]
                ),
            }
        }
    }

    /// The rest of the current line.
    fn line(&mut self) -> String {
        self.expect("\n").trim_end().to_owned()
    }

    fn type_line(&mut self, text: &str) {
        self.keyboard.write_all(text.as_bytes()).unwrap();
        self.keyboard.write_all(b"\r").unwrap();
        self.keyboard.flush().unwrap();
    }

    fn finish(mut self) -> (bool, String) {
        drop(self.keyboard);
        let status = self.child.wait().unwrap();
        while let Ok(bytes) = self.screen.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        (status.success(), self.seen)
    }
}

#[test]
fn shares_are_shown_one_custodian_at_a_time_and_prompted_for_one_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("mnemonic"), ABANDON).unwrap();
    let mut t = Terminal::start(
        dir,
        &[
            "init",
            "--store",
            "store",
            "--shares",
            "2/3",
            "--import-mnemonic-file",
            "mnemonic",
            "--operator",
            "alice",
        ],
    );
    let mut shares = Vec::new();
    for index in 1..=3 {
        t.expect(&format!("Share {index} of 3: for custodian {index} only"));
        let before = t.expect(&format!("Custodian {index}, press Enter"));
        assert!(
            !before.contains("cshare1"),
            "no share before the custodian is called"
        );
        t.type_line("");
        let shown = t.expect("as one line: ");
        assert!(
            shown.contains(CLEAR),
            "the screen is cleared before the share is shown"
        );
        assert!(
            shown.contains(&format!("Custos key share {index} of 3")),
            "{shown}"
        );
        assert!(shown.contains(" 1. "), "numbered groups: {shown}");
        let share = t.line();
        assert!(share.starts_with("cshare1 "), "{share}");
        t.expect("type it back to check your copy");
        if index == 1 {
            // A copy with one character wrong in group 3 is named, and the custodian tries again.
            let mut groups: Vec<String> = share.split(' ').map(str::to_owned).collect();
            let c = if groups[3].starts_with('q') { "p" } else { "q" };
            groups[3].replace_range(0..1, c);
            t.type_line(&groups.join(" "));
            let said = t.expect("type it back to check your copy");
            assert!(said.contains("your copy differs"), "{said}");
            assert!(said.contains("group 3 looks mistyped"), "{said}");
            t.type_line(&share);
            t.expect("your copy is correct");
            t.type_line("");
        } else {
            t.type_line("");
        }
        // Cleared before the next custodian comes.
        let after = t.expect(CLEAR);
        assert!(!after.contains("cshare1"), "{after}");
        shares.push(share);
    }
    t.expect("All 3 shares handed out");
    let (ok, screen) = t.finish();
    assert!(ok, "{screen}");
    assert!(
        screen.contains("unsealed by 2 of 3 Shamir shares"),
        "{screen}"
    );
    let distinct: std::collections::BTreeSet<&String> = shares.iter().collect();
    assert_eq!(distinct.len(), 3);

    // The shares shown are the store's: custodians type them at the prompts, one by one.
    let mut t = Terminal::start(dir, &["wallet", "list", "--store", "store"]);
    t.expect("is unsealed by 2 of 3 Shamir shares");
    t.expect("Custodian 1 of 2: type your share");
    t.type_line(&shares[2]);
    let said = t.expect("Custodian 2 of 2: type your share");
    assert!(said.contains("accepted share 3"), "{said}");
    t.type_line(&shares[2]);
    let said = t.expect("Custodian 2 of 2: type your share");
    assert!(
        said.contains("refused (entry 2): share 3 was already given"),
        "{said}"
    );
    t.type_line(&shares[0].to_uppercase().replace(' ', "-"));
    let said = t.expect("NAME");
    assert!(said.contains("accepted share 1"), "{said}");
    let (ok, screen) = t.finish();
    assert!(ok, "{screen}");
}
